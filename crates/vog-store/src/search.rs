//! Searching the store: tantivy's query syntax plus convenience filters, sorting by any score,
//! and counts per class, split, status, decision and flag over the matched set.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use tantivy::collector::{Collector, Count, SegmentCollector, TopDocs};
use tantivy::query::{Query, QueryParser, QueryParserError};
use tantivy::schema::document::Document as _;
use tantivy::{DocAddress, DocId, Score, Searcher, SegmentOrdinal, SegmentReader, TantivyDocument};

use crate::schema::FIELD_NAMES;
use crate::{Error, Result, Store};

/// The most hits one search returns ([`SearchRequest::limit`]); exports are not bound by it.
pub const MAX_LIMIT: usize = 10_000;
/// The most hits a search may skip ([`SearchRequest::offset`]): the index keeps `offset + limit`
/// candidates while it searches, so deep pages cost memory. Narrow the search, or export.
pub const MAX_OFFSET: usize = 100_000;
/// The longest query text, in bytes (the free query and each `where` clause alike).
pub const MAX_QUERY_BYTES: usize = 4096;
/// The deepest nesting of parentheses in a query (the parser recurses once per level).
pub const MAX_QUERY_DEPTH: usize = 32;

/// Checks a query's size and nesting before it reaches the parser: a query longer than
/// [`MAX_QUERY_BYTES`] or nested deeper than [`MAX_QUERY_DEPTH`] is refused with an error naming
/// the limit. Parentheses inside quoted phrases do not count.
pub fn check_query(query: &str) -> Result<()> {
    let refuse = |message: String| {
        Err(Error::Query {
            query: shorten(query),
            message,
        })
    };
    if query.len() > MAX_QUERY_BYTES {
        return refuse(format!(
            "the query is {} bytes long; the limit is {MAX_QUERY_BYTES}",
            query.len()
        ));
    }
    let (mut depth, mut deepest, mut quoted, mut escaped) = (0usize, 0usize, false, false);
    for c in query.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            '(' if !quoted => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ')' if !quoted => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if deepest > MAX_QUERY_DEPTH {
        return refuse(format!(
            "parentheses are nested {deepest} deep; the limit is {MAX_QUERY_DEPTH}"
        ));
    }
    Ok(())
}

/// A query for an error message: its first 200 characters.
fn shorten(query: &str) -> String {
    match query.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &query[..i]),
        None => query.to_string(),
    }
}

/// A search: a query in tantivy's syntax, filters that are added to it, sorting and paging.
#[derive(Debug, Clone, Default)]
pub struct SearchRequest {
    /// Free query (`class:3 AND meta.camera:b`, `notes:blurry`, `scores.vog_late_norm:[2 TO *]`).
    pub query: Option<String>,
    /// Only this run.
    pub run: Option<String>,
    /// Only this class (the class used for scoring).
    pub class: Option<u64>,
    /// Minimum `score`.
    pub min_score: Option<f64>,
    /// Maximum `score`.
    pub max_score: Option<f64>,
    /// Only this split.
    pub split: Option<String>,
    /// Extra clauses, each in query syntax (`meta.camera:b`), all required.
    pub wheres: Vec<String>,
    /// `unreviewed` or `reviewed`.
    pub status: Option<String>,
    /// Only this latest decision.
    pub decision: Option<String>,
    /// Only flagged (or only unflagged) examples.
    pub flagged: Option<bool>,
    /// Sort field: `score` (default), any numeric field, or a score path `scores.vog_late_norm`.
    pub sort: Option<String>,
    /// Ascending instead of descending.
    pub ascending: bool,
    /// Hits to return.
    pub limit: usize,
    /// Hits to skip.
    pub offset: usize,
}

/// Counts over the matched set.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Counts {
    /// Per class.
    pub class: BTreeMap<String, u64>,
    /// Per split.
    pub split: BTreeMap<String, u64>,
    /// Per review status.
    pub status: BTreeMap<String, u64>,
    /// Per latest decision.
    pub decision: BTreeMap<String, u64>,
    /// Flagged examples.
    pub flagged: u64,
}

/// The result of a search.
#[derive(Debug, Clone, Serialize)]
pub struct SearchResults {
    /// The query actually run.
    pub query: String,
    /// Documents matched in all.
    pub total: usize,
    /// The requested page, as documents (field → value).
    pub hits: Vec<Value>,
    /// Counts over everything matched.
    pub counts: Counts,
}

fn quote(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

impl SearchRequest {
    /// The full query in tantivy syntax: the free query and every filter, joined by AND.
    pub fn query_string(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        if let Some(q) = self.query.as_deref().filter(|q| !q.trim().is_empty()) {
            parts.push(format!("({q})"));
        }
        if let Some(r) = &self.run {
            parts.push(format!("run:{}", quote(r)));
        }
        if let Some(c) = self.class {
            parts.push(format!("class:{c}"));
        }
        match (self.min_score, self.max_score) {
            (None, None) => {}
            (lo, hi) => parts.push(format!(
                "score:[{} TO {}]",
                lo.map_or("*".into(), |v| v.to_string()),
                hi.map_or("*".into(), |v| v.to_string())
            )),
        }
        if let Some(s) = &self.split {
            parts.push(format!("split:{}", quote(s)));
        }
        for w in &self.wheres {
            parts.push(format!("({w})"));
        }
        if let Some(s) = &self.status {
            parts.push(format!("status:{}", quote(s)));
        }
        if let Some(d) = &self.decision {
            parts.push(format!("decision:{}", quote(d)));
        }
        if let Some(f) = self.flagged {
            parts.push(format!("flagged:{f}"));
        }
        if parts.is_empty() {
            "*".into()
        } else {
            parts.join(" AND ")
        }
    }
}

/// Values of one numeric fast column, whatever its stored type.
enum SortColumn {
    F64(tantivy::columnar::Column<f64>),
    U64(tantivy::columnar::Column<u64>),
    I64(tantivy::columnar::Column<i64>),
    Missing,
}

impl SortColumn {
    fn open(reader: &SegmentReader, name: &str) -> Self {
        let ff = reader.fast_fields();
        if let Ok(Some(c)) = ff.column_opt::<f64>(name) {
            return SortColumn::F64(c);
        }
        if let Ok(Some(c)) = ff.column_opt::<u64>(name) {
            return SortColumn::U64(c);
        }
        if let Ok(Some(c)) = ff.column_opt::<i64>(name) {
            return SortColumn::I64(c);
        }
        SortColumn::Missing
    }

    fn get(&self, doc: DocId) -> Option<f64> {
        match self {
            SortColumn::F64(c) => c.first(doc),
            SortColumn::U64(c) => c.first(doc).map(|v| v as f64),
            SortColumn::I64(c) => c.first(doc).map(|v| v as f64),
            SortColumn::Missing => None,
        }
    }
}

/// Counts per class, split, status and decision, from fast fields.
struct CountCollector;

struct SegmentCounts {
    class: Option<tantivy::columnar::Column<u64>>,
    strs: Vec<Option<tantivy::columnar::StrColumn>>,
    flagged: Option<tantivy::columnar::Column<bool>>,
    class_counts: BTreeMap<u64, u64>,
    str_counts: Vec<BTreeMap<u64, u64>>,
    no_class: u64,
    flagged_count: u64,
}

const STR_FACETS: [&str; 3] = ["split", "status", "decision"];

impl Collector for CountCollector {
    type Fruit = Counts;
    type Child = SegmentCounts;

    fn for_segment(
        &self,
        _: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<SegmentCounts> {
        let ff = reader.fast_fields();
        Ok(SegmentCounts {
            class: ff.column_opt::<u64>("class")?,
            strs: STR_FACETS
                .iter()
                .map(|f| ff.str(f).ok().flatten())
                .collect(),
            flagged: ff.column_opt::<bool>("flagged")?,
            class_counts: BTreeMap::new(),
            str_counts: vec![BTreeMap::new(); STR_FACETS.len()],
            no_class: 0,
            flagged_count: 0,
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Counts>) -> tantivy::Result<Counts> {
        let mut out = Counts::default();
        for f in fruits {
            for (m, src) in [
                (&mut out.class, f.class),
                (&mut out.split, f.split),
                (&mut out.status, f.status),
                (&mut out.decision, f.decision),
            ] {
                for (k, v) in src {
                    *m.entry(k).or_default() += v;
                }
            }
            out.flagged += f.flagged;
        }
        Ok(out)
    }
}

impl SegmentCollector for SegmentCounts {
    type Fruit = Counts;

    fn collect(&mut self, doc: DocId, _: Score) {
        match self.class.as_ref().and_then(|c| c.first(doc)) {
            Some(c) => *self.class_counts.entry(c).or_default() += 1,
            None => self.no_class += 1,
        }
        for (col, counts) in self.strs.iter().zip(&mut self.str_counts) {
            if let Some(col) = col {
                for ord in col.term_ords(doc) {
                    *counts.entry(ord).or_default() += 1;
                }
            }
        }
        if self
            .flagged
            .as_ref()
            .and_then(|c| c.first(doc))
            .unwrap_or(false)
        {
            self.flagged_count += 1;
        }
    }

    fn harvest(self) -> Counts {
        let mut out = Counts {
            flagged: self.flagged_count,
            ..Default::default()
        };
        for (c, n) in self.class_counts {
            out.class.insert(c.to_string(), n);
        }
        if self.no_class > 0 {
            out.class.insert("none".into(), self.no_class);
        }
        let maps = [&mut out.split, &mut out.status, &mut out.decision];
        for ((col, counts), map) in self.strs.iter().zip(self.str_counts).zip(maps) {
            let Some(col) = col else { continue };
            let mut s = String::new();
            for (ord, n) in counts {
                s.clear();
                if col.ord_to_str(ord, &mut s).unwrap_or(false) {
                    map.insert(
                        if s.is_empty() {
                            "none".into()
                        } else {
                            s.clone()
                        },
                        n,
                    );
                }
            }
        }
        out
    }
}

/// Fields a search may sort by, besides score paths (`scores.…`) and metadata paths (`meta.…`).
const SORTABLE: &[&str] = &[
    "score",
    "vog",
    "rank",
    "percentile",
    "class_rank",
    "class_percentile",
    "row",
    "class",
    "true_label",
    "predicted",
    "new_label",
];

/// A checked search, ready to run against one searcher.
pub(crate) struct Prepared {
    pub query_string: String,
    pub query: Box<dyn Query>,
    sort: String,
    ascending: bool,
}

impl Prepared {
    /// The addresses of the `offset..offset + limit` best matches in sort order, with the total
    /// count and the facet counts. Memory is bounded by `offset + limit` and the matched count.
    pub fn run(
        &self,
        searcher: &Searcher,
        limit: usize,
        offset: usize,
    ) -> Result<(usize, Vec<DocAddress>, Counts)> {
        // The collector reserves room for `offset + limit` candidates: never more than there are
        // documents.
        let documents = usize::try_from(searcher.num_docs()).unwrap_or(usize::MAX);
        let limit = limit.min(documents.saturating_sub(offset)).max(1);
        let sort = self.sort.clone();
        let ascending = self.ascending;
        let top = TopDocs::with_limit(limit).and_offset(offset).tweak_score(
            move |reader: &SegmentReader| {
                let col = SortColumn::open(reader, &sort);
                move |doc: DocId, _: Score| {
                    let v = col.get(doc);
                    // Missing values sort last either way.
                    match (v, ascending) {
                        (Some(v), false) => v,
                        (Some(v), true) => -v,
                        (None, _) => f64::NEG_INFINITY,
                    }
                }
            },
        );
        let (total, hits, counts) = searcher.search(&self.query, &(Count, top, CountCollector))?;
        Ok((
            total,
            hits.into_iter()
                .map(|(_, a): (f64, DocAddress)| a)
                .collect(),
            counts,
        ))
    }
}

impl Store {
    /// Parses a query in tantivy syntax; errors give the position, and unknown fields list the
    /// known ones. The query's size and nesting are checked first ([`check_query`]).
    pub fn parse_query(&self, query: &str) -> Result<Box<dyn Query>> {
        check_query(query)?;
        self.parse_checked(query)
    }

    /// Parses a query whose parts were checked by [`check_query`] (a request's whole query: the
    /// checked parts, each wrapped in one pair of parentheses).
    fn parse_checked(&self, query: &str) -> Result<Box<dyn Query>> {
        let mut parser =
            QueryParser::for_index(&self.index, vec![self.fields.notes, self.fields.id]);
        parser.set_conjunction_by_default();
        parser.parse_query(query).map_err(|e| {
            let message = match e {
                QueryParserError::FieldDoesNotExist(f) => {
                    format!(
                        "unknown field `{f}`; fields are: {}",
                        FIELD_NAMES.join(", ")
                    )
                }
                QueryParserError::SyntaxError(_) => {
                    let (_, errors) = parser.parse_query_lenient(query);
                    let first = errors.into_iter().next().map(|e| e.to_string());
                    first.unwrap_or_else(|| "syntax error".into())
                }
                other => other.to_string(),
            };
            Error::Query {
                query: shorten(query),
                message,
            }
        })
    }

    /// Checks a request's text and sort field and parses its query (the user's own parts first,
    /// so that error positions refer to what they typed).
    pub(crate) fn prepare(&self, req: &SearchRequest) -> Result<Prepared> {
        if req.offset > MAX_OFFSET {
            return Err(Error::Input(format!(
                "offset {} is over the maximum of {MAX_OFFSET} (narrow the search, or export the set)",
                req.offset
            )));
        }
        for part in req.query.iter().chain(&req.wheres) {
            self.parse_query(part)?;
        }
        for text in [&req.run, &req.split, &req.status, &req.decision]
            .into_iter()
            .flatten()
        {
            check_query(text)?;
        }
        let query_string = req.query_string();
        let query = self.parse_checked(&query_string)?;
        let sort = req.sort.clone().unwrap_or_else(|| "score".into());
        if !(SORTABLE.contains(&sort.as_str())
            || sort.starts_with("scores.")
            || sort.starts_with("meta."))
        {
            return Err(Error::Input(format!(
                "cannot sort by `{}`; use one of {}, or a score path such as scores.vog_late_norm",
                shorten(&sort),
                SORTABLE.join(", ")
            )));
        }
        Ok(Prepared {
            query_string,
            query,
            sort,
            ascending: req.ascending,
        })
    }

    /// Checks a request as [`Store::search`] and [`Store::export`] would (query size, nesting and
    /// syntax, sort field, offset) without running it; the limit is not checked.
    pub fn check_request(&self, req: &SearchRequest) -> Result<()> {
        self.prepare(req).map(|_| ())
    }

    /// A searcher over the latest commit, with the index brought up to date with decisions.
    pub(crate) fn fresh_searcher(&self) -> Result<Searcher> {
        self.sync_index(std::time::Duration::from_millis(200))?;
        self.refresh()?;
        Ok(self.reader.searcher())
    }

    /// Runs a search. `limit` must be at most [`MAX_LIMIT`] and `offset` at most [`MAX_OFFSET`].
    pub fn search(&self, req: &SearchRequest) -> Result<SearchResults> {
        if req.limit > MAX_LIMIT {
            return Err(Error::Input(format!(
                "limit {} is over the maximum of {MAX_LIMIT} hits per search (page with offset, \
                 or export the set)",
                req.limit
            )));
        }
        let prepared = self.prepare(req)?;
        let searcher = self.fresh_searcher()?;
        let (total, addresses, counts) = prepared.run(&searcher, req.limit, req.offset)?;
        let hits = addresses
            .into_iter()
            .map(|addr| self.stored(&searcher, addr))
            .collect::<Result<Vec<_>>>()?;
        Ok(SearchResults {
            query: prepared.query_string,
            total,
            hits,
            counts,
        })
    }

    /// One stored document as JSON, single values unwrapped.
    pub(crate) fn stored(&self, searcher: &Searcher, addr: DocAddress) -> Result<Value> {
        let doc: TantivyDocument = searcher.doc(addr)?;
        Ok(flatten(
            serde_json::from_str(&doc.to_json(&self.index.schema())).unwrap_or(Value::Null),
        ))
    }

    /// Keys of every document matching `req`, in its sort order (`req.limit` and `offset` are
    /// ignored).
    pub fn matching_keys(&self, req: &SearchRequest) -> Result<Vec<String>> {
        let prepared = self.prepare(req)?;
        let searcher = self.fresh_searcher()?;
        let (_, addresses, _) = prepared.run(&searcher, usize::MAX, 0)?;
        addresses
            .into_iter()
            .map(|addr| {
                let doc = self.stored(&searcher, addr)?;
                Ok(doc["key"].as_str().unwrap_or_default().to_string())
            })
            .collect()
    }

    /// The stored document of one key.
    pub(crate) fn document(&self, key: &str) -> Result<Option<Value>> {
        let searcher = self.reader.searcher();
        let term = tantivy::Term::from_field_text(self.fields.key, key);
        let q = tantivy::query::TermQuery::new(term, tantivy::schema::IndexRecordOption::Basic);
        let hits = searcher.search(&q, &TopDocs::with_limit(1).order_by_score())?;
        match hits.first() {
            None => Ok(None),
            Some((_, addr)) => Ok(Some(self.stored(&searcher, *addr)?)),
        }
    }
}

/// tantivy returns every field as an array; single values are unwrapped.
pub(crate) fn flatten(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| match v {
                    Value::Array(mut a) if a.len() == 1 => (k, a.pop().expect("one")),
                    other => (k, other),
                })
                .collect(),
        ),
        other => other,
    }
}

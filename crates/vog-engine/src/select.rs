//! What is decided once every example is scored, in one streaming pass over the scores: which
//! examples the `[flag]` policy flags and which keep their maps. Memory is bounded by what is
//! selected (the flagged examples' rows and the kept maps' rows), not by the dataset.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};

use vog_core::ClassStats;

use crate::config::FlagConfig;
use crate::results::ExampleScore;
use crate::Result;

/// Running totals of the scored examples: what normalization, selection and the results' columns
/// need, a few numbers per class rather than per example.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tally {
    /// Per window: class moments of the raw VoG (examples with a class only).
    pub stats: Vec<ClassStats>,
    /// Examples per class used (`None`: no class).
    pub by_class: BTreeMap<Option<u32>, usize>,
    /// Metadata keys seen.
    pub meta_keys: BTreeSet<String>,
    /// Examples seen.
    pub count: usize,
}

impl Tally {
    /// Adds one example (in dataset order, so sums are reproducible).
    pub fn observe(&mut self, e: &ExampleScore) {
        if self.stats.len() < e.vog.len() {
            self.stats.resize(e.vog.len(), ClassStats::default());
        }
        if let Some(c) = e.label_used {
            for (s, &v) in self.stats.iter_mut().zip(&e.vog) {
                s.push(c, v);
            }
        }
        *self.by_class.entry(e.label_used).or_default() += 1;
        for k in e.meta.keys() {
            if !self.meta_keys.contains(k) {
                self.meta_keys.insert(k.clone());
            }
        }
        self.count += 1;
    }
}

/// The ranking score of an example in window `w`: class-normalized VoG, raw VoG without a class.
pub(crate) fn rank_score(e: &ExampleScore, w: usize, stats: &[ClassStats]) -> f64 {
    match (e.label_used, stats.get(w)) {
        (Some(c), Some(s)) => s.normalize(c, e.vog[w]),
        _ => e.vog[w],
    }
}

/// The ranking score of a finished example (its `vog_norm` filled in) in window `w`: the same
/// number [`rank_score`] computes from the raw score and the class statistics.
pub(crate) fn finished_score(e: &ExampleScore, w: usize) -> f64 {
    e.vog_norm.get(w).copied().flatten().unwrap_or(e.vog[w])
}

/// One example's place in a ranking: higher score first, then lower row.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ranked {
    pub score: f64,
    pub row: usize,
    pub label: Option<u32>,
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then(other.row.cmp(&self.row))
    }
}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Ranked {}

/// Keeps the `cap` highest-ranked items offered.
#[derive(Debug)]
pub(crate) struct Best {
    cap: usize,
    heap: BinaryHeap<Reverse<Ranked>>,
}

impl Best {
    pub fn new(cap: usize) -> Self {
        Best {
            cap,
            heap: BinaryHeap::new(),
        }
    }
    pub fn offer(&mut self, r: Ranked) {
        if self.cap == 0 {
            return;
        }
        if self.heap.len() < self.cap {
            self.heap.push(Reverse(r));
        } else if self.heap.peek().is_some_and(|w| r > w.0) {
            self.heap.pop();
            self.heap.push(Reverse(r));
        }
    }
    /// Highest first.
    pub fn into_sorted(self) -> Vec<Ranked> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|r| r.0)
            .collect()
    }
}

/// Keeps the `cap` lowest-ranked items offered.
#[derive(Debug)]
struct Worst {
    cap: usize,
    heap: BinaryHeap<Ranked>,
}

impl Worst {
    fn new(cap: usize) -> Self {
        Worst {
            cap,
            heap: BinaryHeap::new(),
        }
    }
    fn offer(&mut self, r: Ranked) {
        if self.cap == 0 {
            return;
        }
        if self.heap.len() < self.cap {
            self.heap.push(r);
        } else if self.heap.peek().is_some_and(|b| r < *b) {
            self.heap.pop();
            self.heap.push(r);
        }
    }
    /// Highest first.
    fn into_sorted(self) -> Vec<Ranked> {
        let mut v = self.heap.into_sorted_vec();
        v.reverse();
        v
    }
}

/// How flags are decided per example.
#[derive(Debug, Clone)]
enum Rule {
    Nothing,
    Threshold { window: usize, at: f64 },
    Rows(HashSet<usize>),
}

/// The flags and kept maps of a run.
#[derive(Debug, Clone)]
pub(crate) struct Selection {
    rule: Rule,
    /// Examples flagged.
    pub flagged: usize,
    /// Rows that keep maps, ascending.
    pub map_rows: Vec<usize>,
    /// The class used of each row in `map_rows`.
    pub map_labels: HashMap<usize, Option<u32>>,
}

impl Selection {
    /// No flags, no maps.
    pub fn none() -> Self {
        Selection {
            rule: Rule::Nothing,
            flagged: 0,
            map_rows: Vec::new(),
            map_labels: HashMap::new(),
        }
    }

    /// Sets `flagged` and `has_map` of an example whose `vog_norm` is filled in.
    pub fn mark(&self, e: &mut ExampleScore) {
        e.flagged = match &self.rule {
            Rule::Nothing => false,
            Rule::Threshold { window, at } => finished_score(e, *window) >= *at,
            Rule::Rows(rows) => rows.contains(&e.row),
        };
        e.has_map = self.map_rows.binary_search(&e.row).is_ok();
    }
}

/// Whether `flag` asks for anything a selection pass decides.
pub(crate) fn needed(flag: &FlagConfig) -> bool {
    flag.threshold.is_some() || flag.top_percent.is_some() || flag.extremes_per_class > 0
}

/// Applies the `[flag]` policy over `rows` (every example, raw scores, any order): the top X% of
/// each class or everything at or above a threshold in window `flag_window` (none without one),
/// then the rows that keep maps: flagged examples highest first within `max_maps` and the byte
/// budget (`per_map_bytes` each), then each class's `extremes_per_class` highest and lowest.
pub(crate) fn select<I, E>(
    flag: &FlagConfig,
    flag_window: Option<usize>,
    stats: &[ClassStats],
    by_class: &BTreeMap<Option<u32>, usize>,
    per_map_bytes: u64,
    rows: I,
) -> Result<Selection>
where
    I: Iterator<Item = Result<E>>,
    E: std::borrow::Borrow<ExampleScore>,
{
    let by_bytes = (flag.max_map_bytes / per_map_bytes.max(1)) as usize;
    let cap = flag.max_maps.min(by_bytes);
    let k = flag.extremes_per_class;
    let rank_window = flag_window.unwrap_or(0);
    let threshold = flag_window.and(flag.threshold);
    let percent = flag_window
        .and(flag.top_percent)
        .filter(|_| threshold.is_none());
    let mut top_flagged = Best::new(cap);
    let mut flagged = 0usize;
    let mut per_class: BTreeMap<Option<u32>, Best> = BTreeMap::new();
    let mut high: BTreeMap<Option<u32>, Best> = BTreeMap::new();
    let mut low: BTreeMap<Option<u32>, Worst> = BTreeMap::new();
    for e in rows {
        let e = e?;
        let e = e.borrow();
        let r = Ranked {
            score: rank_score(e, rank_window, stats),
            row: e.row,
            label: e.label_used,
        };
        if let Some(t) = threshold {
            if r.score >= t {
                flagged += 1;
                top_flagged.offer(r);
            }
        } else if let Some(p) = percent {
            per_class
                .entry(r.label)
                .or_insert_with(|| {
                    let n = by_class.get(&r.label).copied().unwrap_or(0);
                    Best::new(((p / 100.0) * n as f64).ceil() as usize)
                })
                .offer(r);
        }
        if k > 0 {
            high.entry(r.label).or_insert_with(|| Best::new(k)).offer(r);
            low.entry(r.label).or_insert_with(|| Worst::new(k)).offer(r);
        }
    }
    let rule = match (threshold, percent) {
        (Some(at), _) => Rule::Threshold {
            window: rank_window,
            at,
        },
        (None, Some(_)) => {
            let mut all: Vec<Ranked> = per_class
                .into_values()
                .flat_map(Best::into_sorted)
                .collect();
            flagged = all.len();
            let rows = all.iter().map(|r| r.row).collect();
            all.sort_by(|a, b| b.cmp(a));
            all.into_iter().take(cap).for_each(|r| top_flagged.offer(r));
            Rule::Rows(rows)
        }
        (None, None) => Rule::Nothing,
    };
    let mut map_labels: HashMap<usize, Option<u32>> = HashMap::new();
    let mut map_rows = Vec::new();
    for r in top_flagged.into_sorted() {
        map_labels.insert(r.row, r.label);
        map_rows.push(r.row);
    }
    for (class, h) in high {
        let l = low
            .remove(&class)
            .map(Worst::into_sorted)
            .unwrap_or_default();
        for r in h.into_sorted().into_iter().chain(l) {
            if map_rows.len() >= by_bytes {
                break;
            }
            if map_labels.insert(r.row, r.label).is_none() {
                map_rows.push(r.row);
            }
        }
    }
    map_rows.sort_unstable();
    Ok(Selection {
        rule,
        flagged,
        map_rows,
        map_labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(row: usize, class: u32, vog: f64) -> ExampleScore {
        ExampleScore {
            row,
            id: row.to_string(),
            true_label: Some(class),
            label_used: Some(class),
            predicted: Some(class),
            vog: vec![vog],
            vog_norm: Vec::new(),
            extra: Vec::new(),
            meta: Default::default(),
            flagged: false,
            has_map: false,
            trajectory: Vec::new(),
        }
    }

    /// The selection against a plain sort of every example (what the engine did before it
    /// streamed), over random scores with ties.
    #[test]
    fn heaps_select_what_a_full_sort_selects() {
        let mut r = vog_core::Lcg::new(11);
        let mut next = || (r.next_u64() >> 33) as usize;
        for round in 0..40 {
            let n = 1 + next() % 300;
            let examples: Vec<ExampleScore> = (0..n)
                .map(|r| ex(r, (next() % 4) as u32, (next() % 17) as f64))
                .collect();
            let mut tally = Tally::default();
            examples.iter().for_each(|e| tally.observe(e));
            let flag = FlagConfig {
                top_percent: (round % 2 == 0).then_some(1.0 + (next() % 30) as f64),
                threshold: (round % 2 == 1).then_some(0.5),
                max_maps: next() % 20,
                max_map_bytes: 8 * (5 + next() % 40) as u64,
                extremes_per_class: next() % 4,
                ..Default::default()
            };
            let sel = select(
                &flag,
                Some(0),
                &tally.stats,
                &tally.by_class,
                8,
                examples.iter().map(Ok),
            )
            .unwrap();

            // Reference: sort everything.
            let score = |e: &ExampleScore| rank_score(e, 0, &tally.stats);
            let desc = |a: &&ExampleScore, b: &&ExampleScore| {
                score(b).total_cmp(&score(a)).then(a.row.cmp(&b.row))
            };
            let mut flagged: HashSet<usize> = HashSet::new();
            let mut classes: BTreeMap<u32, Vec<&ExampleScore>> = BTreeMap::new();
            for e in &examples {
                classes.entry(e.label_used.unwrap()).or_default().push(e);
            }
            for members in classes.values_mut() {
                members.sort_by(desc);
                if let Some(p) = flag.top_percent {
                    let take = ((p / 100.0) * members.len() as f64).ceil() as usize;
                    flagged.extend(members.iter().take(take).map(|e| e.row));
                }
            }
            if let Some(t) = flag.threshold {
                flagged.extend(examples.iter().filter(|e| score(e) >= t).map(|e| e.row));
            }
            let by_bytes = (flag.max_map_bytes / 8) as usize;
            let mut f: Vec<&ExampleScore> = examples
                .iter()
                .filter(|e| flagged.contains(&e.row))
                .collect();
            f.sort_by(desc);
            let mut rows: Vec<usize> = f
                .iter()
                .take(flag.max_maps.min(by_bytes))
                .map(|e| e.row)
                .collect();
            let k = flag.extremes_per_class;
            for members in classes.values() {
                let lo = members.len().saturating_sub(k);
                for e in members.iter().take(k).chain(&members[lo..]) {
                    if rows.len() >= by_bytes {
                        break;
                    }
                    if !rows.contains(&e.row) {
                        rows.push(e.row);
                    }
                }
            }
            rows.sort_unstable();
            assert_eq!(sel.map_rows, rows, "round {round}");
            assert_eq!(sel.flagged, flagged.len(), "round {round}");
            for e in &examples {
                let mut e = e.clone();
                e.vog_norm = vec![Some(score(&e))];
                sel.mark(&mut e);
                assert_eq!(e.flagged, flagged.contains(&e.row), "round {round}");
                assert_eq!(e.has_map, rows.contains(&e.row));
            }
        }
    }
}

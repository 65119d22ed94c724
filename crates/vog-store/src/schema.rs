//! The index schema: one document per example per run.

use tantivy::schema::{
    Field, JsonObjectOptions, Schema, TextFieldIndexing, FAST, INDEXED, STORED, STRING, TEXT,
};

/// Handles of every field, built once.
#[derive(Debug, Clone)]
pub struct Fields {
    /// `run/id`, unique.
    pub key: Field,
    /// Run name.
    pub run: Field,
    /// Dataset name.
    pub dataset: Field,
    /// Split name.
    pub split: Field,
    /// Example id.
    pub id: Field,
    /// Row in the dataset.
    pub row: Field,
    /// Class used for scoring (`label_used`).
    pub class: Field,
    /// True label.
    pub true_label: Field,
    /// Prediction of the last checkpoint.
    pub predicted: Field,
    /// Name of `class`.
    pub class_name: Field,
    /// Name of `true_label`.
    pub true_name: Field,
    /// Name of `predicted`.
    pub predicted_name: Field,
    /// The run's ranking score: class-normalized VoG of its score window (raw VoG without labels).
    pub score: Field,
    /// Raw VoG of the score window.
    pub vog: Field,
    /// Rank by `score` in the run (1 = hardest).
    pub rank: Field,
    /// Percentile by `score` in the run (100 = hardest).
    pub percentile: Field,
    /// Rank within the class.
    pub class_rank: Field,
    /// Percentile within the class.
    pub class_percentile: Field,
    /// Flagged by the run's policy.
    pub flagged: Field,
    /// Every score of the example: `vog_<window>`, `vog_<window>_norm`, reducer columns.
    pub scores: Field,
    /// Metadata, searchable by path (`meta.camera:b`, `meta.iso:[100 TO 400]`).
    pub meta: Field,
    /// Review notes, full text.
    pub notes: Field,
    /// `unreviewed` or `reviewed`.
    pub status: Field,
    /// The latest decision.
    pub decision: Field,
    /// Label given with the latest decision.
    pub new_label: Field,
    /// Who made the latest decision.
    pub reviewer: Field,
    /// Whether VoG map and gradient were kept.
    pub has_map: Field,
    /// Stored, not indexed: per-checkpoint `predicted` classes and `margin`s.
    pub checkpoints: Field,
}

/// Field names a query may use, for error messages.
pub const FIELD_NAMES: &[&str] = &[
    "key",
    "run",
    "dataset",
    "split",
    "id",
    "row",
    "class",
    "true_label",
    "predicted",
    "class_name",
    "true_name",
    "predicted_name",
    "score",
    "vog",
    "rank",
    "percentile",
    "class_rank",
    "class_percentile",
    "flagged",
    "scores.*",
    "meta.*",
    "notes",
    "status",
    "decision",
    "new_label",
    "reviewer",
    "has_map",
];

/// Builds the schema and its field handles.
pub fn build() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let keyword = STRING | STORED | FAST;
    let num = INDEXED | STORED | FAST;
    let json = |tokenizer: &str| {
        JsonObjectOptions::default()
            .set_stored()
            .set_fast("raw")
            .set_indexing_options(TextFieldIndexing::default().set_tokenizer(tokenizer))
    };
    let fields = Fields {
        key: b.add_text_field("key", STRING | STORED),
        run: b.add_text_field("run", keyword.clone()),
        dataset: b.add_text_field("dataset", keyword.clone()),
        split: b.add_text_field("split", keyword.clone()),
        id: b.add_text_field("id", STRING | STORED),
        row: b.add_u64_field("row", num.clone()),
        class: b.add_u64_field("class", num.clone()),
        true_label: b.add_u64_field("true_label", num.clone()),
        predicted: b.add_u64_field("predicted", num.clone()),
        class_name: b.add_text_field("class_name", keyword.clone()),
        true_name: b.add_text_field("true_name", keyword.clone()),
        predicted_name: b.add_text_field("predicted_name", keyword.clone()),
        score: b.add_f64_field("score", num.clone()),
        vog: b.add_f64_field("vog", num.clone()),
        rank: b.add_u64_field("rank", num.clone()),
        percentile: b.add_f64_field("percentile", num.clone()),
        class_rank: b.add_u64_field("class_rank", num.clone()),
        class_percentile: b.add_f64_field("class_percentile", num.clone()),
        flagged: b.add_bool_field("flagged", num.clone()),
        scores: b.add_json_field("scores", json("raw")),
        meta: b.add_json_field("meta", json("default")),
        notes: b.add_text_field("notes", TEXT | STORED),
        status: b.add_text_field("status", keyword.clone()),
        decision: b.add_text_field("decision", keyword.clone()),
        new_label: b.add_u64_field("new_label", num.clone()),
        reviewer: b.add_text_field("reviewer", keyword),
        has_map: b.add_bool_field("has_map", num),
        checkpoints: b.add_json_field("checkpoints", JsonObjectOptions::default().set_stored()),
    };
    (b.build(), fields)
}

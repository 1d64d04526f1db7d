//! Datasets: reading rows (JSONL/CSV), labels, the train/validation split, tokenization and
//! batching. Everything that can be wrong with the data fails here, before training starts.

pub mod batch;
pub mod labels;
pub mod reader;
pub mod tokenize;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use batch::{Batch, Batcher};
pub use labels::LabelSet;
pub use reader::{RawRow, read_rows};
pub use tokenize::{Encoded, TextTokenizer};

use crate::error::{Error, Result};
use crate::rng::TrainRng;

/// File format of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Jsonl,
    Csv,
}

/// Where the data comes from and how to read it (part of the job config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DataConfig {
    /// Training file (.jsonl/.json lines or .csv).
    pub train_file: PathBuf,
    /// Separate validation file; without one, `validationSplit` of the training rows is held out.
    #[serde(default)]
    pub validation_file: Option<PathBuf>,
    /// Format; inferred from the extension when absent (`.csv` → CSV, else JSONL).
    #[serde(default)]
    pub format: Option<Format>,
    #[serde(default = "default_text")]
    pub text_field: String,
    /// Optional second text (sentence-pair tasks).
    #[serde(default)]
    pub text_pair_field: Option<String>,
    #[serde(default = "default_label")]
    pub label_field: String,
    /// Fixed label list (order = class ids); discovered and sorted when absent.
    #[serde(default)]
    pub labels: Option<Vec<String>>,
    /// Fraction held out for validation when there is no validation file.
    #[serde(default = "default_split")]
    pub validation_split: f64,
    /// Tokens per sequence after truncation.
    #[serde(default = "default_max_length")]
    pub max_length: usize,
    /// Skip and count malformed rows instead of failing.
    #[serde(default)]
    pub skip_bad_rows: bool,
}

fn default_text() -> String {
    "text".into()
}
fn default_label() -> String {
    "label".into()
}
fn default_split() -> f64 {
    0.1
}
fn default_max_length() -> usize {
    128
}

impl DataConfig {
    /// A config reading `train_file` with all defaults.
    pub fn new(train_file: impl Into<PathBuf>) -> Self {
        Self {
            train_file: train_file.into(),
            validation_file: None,
            format: None,
            text_field: default_text(),
            text_pair_field: None,
            label_field: default_label(),
            labels: None,
            validation_split: default_split(),
            max_length: default_max_length(),
            skip_bad_rows: false,
        }
    }

    fn format_of(&self, path: &Path) -> Format {
        self.format
            .unwrap_or_else(|| match path.extension().and_then(|e| e.to_str()) {
                Some(e) if e.eq_ignore_ascii_case("csv") => Format::Csv,
                _ => Format::Jsonl,
            })
    }
}

/// One labelled example before tokenization.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub text: String,
    pub text_pair: Option<String>,
    pub label: u32,
}

/// The labelled train and validation sets.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub labels: LabelSet,
    pub train: Vec<Example>,
    pub validation: Vec<Example>,
    /// Rows skipped as malformed (only with `skipBadRows`).
    pub skipped: usize,
    /// sha256 over the input files, for provenance.
    pub digest: String,
}

/// Reads, labels and splits the data; fails on empty data, a single class or an unknown label.
pub fn load_dataset(cfg: &DataConfig, seed: u64) -> Result<Dataset> {
    let mut hasher = Sha256::new();
    let (train_rows, mut skipped) =
        read_rows(&cfg.train_file, cfg.format_of(&cfg.train_file), cfg)?;
    hasher.update(crate::error::read_file(&cfg.train_file)?);
    let val_rows = match &cfg.validation_file {
        Some(path) => {
            let (rows, s) = read_rows(path, cfg.format_of(path), cfg)?;
            skipped += s;
            hasher.update(crate::error::read_file(path)?);
            Some((path.clone(), rows))
        }
        None => None,
    };
    if train_rows.is_empty() {
        return Err(Error::Data(format!(
            "{}: no usable rows",
            cfg.train_file.display()
        )));
    }
    let labels = match &cfg.labels {
        Some(l) => LabelSet::new(l.clone())?,
        None => LabelSet::discover(
            train_rows
                .iter()
                .chain(val_rows.iter().flat_map(|(_, r)| r.iter()))
                .map(|r| r.label.as_str()),
        )?,
    };
    let to_examples = |path: &Path, rows: Vec<RawRow>| -> Result<Vec<Example>> {
        rows.into_iter()
            .map(|r| {
                let label = labels.id(&r.label).ok_or_else(|| {
                    Error::Data(format!(
                        "{}:{}: unknown label `{}` (known: {})",
                        path.display(),
                        r.line,
                        r.label,
                        labels.names().join(", ")
                    ))
                })?;
                Ok(Example {
                    text: r.text,
                    text_pair: r.text_pair,
                    label,
                })
            })
            .collect()
    };
    let mut train = to_examples(&cfg.train_file, train_rows)?;
    let validation = match val_rows {
        Some((path, rows)) => to_examples(&path, rows)?,
        None => {
            if !(0.0..1.0).contains(&cfg.validation_split) {
                return Err(Error::Config(format!(
                    "validationSplit must be in [0, 1), got {}",
                    cfg.validation_split
                )));
            }
            let mut rng = TrainRng::new(seed, 2);
            rng.shuffle(&mut train);
            let n_val = (train.len() as f64 * cfg.validation_split).round() as usize;
            train.split_off(train.len() - n_val)
        }
    };
    if train.is_empty() {
        return Err(Error::Data("no training rows left after the split".into()));
    }
    let mut seen = std::collections::BTreeSet::new();
    seen.extend(train.iter().map(|e| e.label));
    if seen.len() < 2 {
        return Err(Error::Data(format!(
            "training data has a single class ({}); need at least two",
            labels.names()[train[0].label as usize]
        )));
    }
    let digest = format!("sha256:{:x}", hasher.finalize());
    Ok(Dataset {
        labels,
        train,
        validation,
        skipped,
        digest,
    })
}

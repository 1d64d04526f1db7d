//! Export: a folder `transformers.AutoModelForSequenceClassification.from_pretrained(dir)` and
//! `AutoTokenizer.from_pretrained(dir)` load, plus `manifest.json` with every file's sha256 and
//! the provenance of the model.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::digest::{fsync, sha256_file};
use crate::error::{Error, Result};
use crate::model::ModelConfig;
use crate::train::metrics::EvalMetrics;

/// Tokenizer files copied from the base model when present.
pub const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "sentencepiece.bpe.model",
    "spiece.model",
    "added_tokens.json",
];

/// Where a model came from and how it was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Provenance {
    /// Hub id or local path of the base model.
    pub base_model: String,
    /// The revision asked for and the commit it resolved to (None for local folders).
    pub revision: Option<String>,
    pub resolved_revision: Option<String>,
    /// sha256 over the dataset files.
    pub dataset_digest: String,
    /// The job's training hyper-parameters, as configured.
    pub hyperparameters: serde_json::Value,
    pub trainer_version: String,
}

/// `manifest.json` of an export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// File name → hex sha256, for every other file in the folder.
    pub files: BTreeMap<String, String>,
    pub provenance: Provenance,
    pub labels: Vec<String>,
    pub step: u64,
    pub metrics: Option<EvalMetrics>,
}

/// Writes `config.json` for the classifier: the base config plus architecture and labels.
fn write_config(base_dir: &Path, cfg: &ModelConfig, labels: &[String], out: &Path) -> Result<()> {
    let mut value: serde_json::Value = crate::error::read_json(&base_dir.join("config.json"))?;
    let obj = value
        .as_object_mut()
        .ok_or_else(|| Error::Model("base config.json is not an object".into()))?;
    let xlm = cfg.model_type == "xlm-roberta";
    obj.insert(
        "architectures".into(),
        serde_json::json!([cfg.family.architecture(xlm)]),
    );
    let id2label: serde_json::Map<String, serde_json::Value> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (i.to_string(), serde_json::Value::from(l.clone())))
        .collect();
    let label2id: serde_json::Map<String, serde_json::Value> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.clone(), serde_json::Value::from(i)))
        .collect();
    obj.insert("id2label".into(), id2label.into());
    obj.insert("label2id".into(), label2id.into());
    obj.insert("problem_type".into(), "single_label_classification".into());
    obj.insert("torch_dtype".into(), "float32".into());
    let path = out.join("config.json");
    let json = serde_json::to_vec_pretty(&value).map_err(|source| Error::Json {
        path: path.clone(),
        source,
    })?;
    std::fs::write(&path, json).map_err(|e| Error::io(&path, e))
}

/// Everything an export needs.
#[derive(Debug)]
pub struct ExportInput<'a> {
    pub weights: &'a HashMap<String, Tensor>,
    pub config: &'a ModelConfig,
    pub labels: &'a [String],
    pub base_dir: &'a Path,
    pub provenance: &'a Provenance,
    pub step: u64,
    pub metrics: Option<EvalMetrics>,
}

/// Writes the export into `out` atomically (temp folder + rename, replacing an old export).
pub fn export(input: &ExportInput<'_>, out: &Path) -> Result<PathBuf> {
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let name = out
        .file_name()
        .ok_or_else(|| Error::Config(format!("bad export path {}", out.display())))?
        .to_string_lossy()
        .into_owned();
    let tmp = parent.join(format!(".tmp-{name}-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let contiguous: HashMap<String, Tensor> = input
        .weights
        .iter()
        .map(|(k, t)| Ok((k.clone(), t.detach().contiguous()?)))
        .collect::<Result<_>>()?;
    candle_core::safetensors::save(&contiguous, tmp.join("model.safetensors"))?;
    write_config(input.base_dir, input.config, input.labels, &tmp)?;
    for f in TOKENIZER_FILES {
        let src = input.base_dir.join(f);
        if src.is_file() {
            let dst = tmp.join(f);
            std::fs::copy(&src, &dst).map_err(|e| Error::io(&src, e))?;
        }
    }
    let mut files = BTreeMap::new();
    let entries = std::fs::read_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
    for e in entries {
        let e = e.map_err(|e| Error::io(&tmp, e))?;
        let p = e.path();
        fsync(&p)?;
        files.insert(
            e.file_name().to_string_lossy().into_owned(),
            sha256_file(&p)?,
        );
    }
    let manifest = Manifest {
        files,
        provenance: input.provenance.clone(),
        labels: input.labels.to_vec(),
        step: input.step,
        metrics: input.metrics,
    };
    let mpath = tmp.join("manifest.json");
    let json = serde_json::to_vec_pretty(&manifest).map_err(|source| Error::Json {
        path: mpath.clone(),
        source,
    })?;
    std::fs::write(&mpath, json).map_err(|e| Error::io(&mpath, e))?;
    fsync(&mpath)?;
    if out.exists() {
        std::fs::remove_dir_all(out).map_err(|e| Error::io(out, e))?;
    }
    std::fs::rename(&tmp, out).map_err(|e| Error::io(out, e))?;
    Ok(out.to_path_buf())
}

/// Exports a checkpoint folder (a `step-*` folder, or a checkpoint root: the newest valid one).
pub fn export_checkpoint(checkpoint: &Path, out: &Path) -> Result<PathBuf> {
    let device = candle_core::Device::Cpu;
    let loaded = if checkpoint.join("state.json").is_file() {
        crate::checkpoint::load(checkpoint, &device)?
    } else {
        crate::checkpoint::latest_valid(checkpoint, &device)?.ok_or_else(|| {
            Error::Model(format!(
                "no valid checkpoint under {}",
                checkpoint.display()
            ))
        })?
    };
    let st = &loaded.state;
    let config = ModelConfig::from_file(&st.model_dir.join("config.json"))?;
    export(
        &ExportInput {
            weights: &loaded.weights,
            config: &config,
            labels: &st.labels,
            base_dir: &st.model_dir,
            provenance: &st.provenance,
            step: st.step,
            metrics: None,
        },
        out,
    )
}

//! Export: a folder `transformers.AutoModelForSequenceClassification.from_pretrained(dir)` and
//! `AutoTokenizer.from_pretrained(dir)` load, plus `manifest.json` with every file's sha256 and
//! size and the provenance of the model. The done event's `model` ([`ExportedModel`]) is built
//! from that manifest, so what the operator publishes is what the folder holds.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::digest::{FileDigest, file_digest, fsync, sha256_hex};
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
    /// sha256 over the dataset files, `sha256:<hex>`.
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
    /// File name → size in bytes, for the same files (absent from manifests written before
    /// sizes were recorded).
    #[serde(default)]
    pub size_bytes: BTreeMap<String, u64>,
    pub provenance: Provenance,
    pub labels: Vec<String>,
    pub step: u64,
    pub metrics: Option<EvalMetrics>,
}

/// What [`export`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Exported {
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// `manifest.json` itself, which cannot list its own digest.
    pub manifest_file: FileDigest,
}

impl Exported {
    /// Every file of the folder, `manifest.json` included, sorted by name.
    pub fn files(&self) -> Vec<FileDigest> {
        let m = &self.manifest;
        let mut files: Vec<FileDigest> = m
            .files
            .iter()
            .map(|(name, sha256)| FileDigest {
                path: name.clone(),
                sha256: sha256.clone(),
                size_bytes: m.size_bytes.get(name).copied().unwrap_or_default(),
            })
            .chain([self.manifest_file.clone()])
            .collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        files
    }

    /// The done event's `model`: the files and the provenance a publisher records.
    pub fn model(&self) -> ExportedModel {
        let p = &self.manifest.provenance;
        ExportedModel {
            files: self.files(),
            dataset_digest: p
                .dataset_digest
                .strip_prefix("sha256:")
                .unwrap_or(&p.dataset_digest)
                .to_string(),
            base_model: p.base_model.clone(),
            revision: p.revision.clone(),
            resolved_revision: p.resolved_revision.clone(),
            labels: self.manifest.labels.clone(),
        }
    }
}

/// The done event's `model` (trainer/README.md, Progress format): taken from the export's
/// manifest so the operator never recomputes, or guesses, what the trainer wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportedModel {
    /// Every file of the export folder, `manifest.json` included.
    pub files: Vec<FileDigest>,
    /// Hex sha256 over the dataset files (the manifest's `datasetDigest` without `sha256:`).
    pub dataset_digest: String,
    pub base_model: String,
    /// The revision asked for and the commit it resolved to (None for a local base folder).
    pub revision: Option<String>,
    pub resolved_revision: Option<String>,
    /// Class names in id order.
    pub labels: Vec<String>,
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
pub fn export(input: &ExportInput<'_>, out: &Path) -> Result<Exported> {
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
    let (mut files, mut size_bytes) = (BTreeMap::new(), BTreeMap::new());
    let entries = std::fs::read_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
    for e in entries {
        let e = e.map_err(|e| Error::io(&tmp, e))?;
        let p = e.path();
        fsync(&p)?;
        let d = file_digest(&p, e.file_name().to_string_lossy().into_owned())?;
        size_bytes.insert(d.path.clone(), d.size_bytes);
        files.insert(d.path, d.sha256);
    }
    let manifest = Manifest {
        files,
        size_bytes,
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
    std::fs::write(&mpath, &json).map_err(|e| Error::io(&mpath, e))?;
    fsync(&mpath)?;
    if out.exists() {
        std::fs::remove_dir_all(out).map_err(|e| Error::io(out, e))?;
    }
    std::fs::rename(&tmp, out).map_err(|e| Error::io(out, e))?;
    Ok(Exported {
        dir: out.to_path_buf(),
        manifest,
        manifest_file: FileDigest {
            path: "manifest.json".into(),
            sha256: sha256_hex(&json),
            size_bytes: json.len() as u64,
        },
    })
}

/// Exports a checkpoint folder (a `step-*` folder, or a checkpoint root: the newest valid one).
pub fn export_checkpoint(checkpoint: &Path, out: &Path) -> Result<Exported> {
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

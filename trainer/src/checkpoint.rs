//! Checkpoints: weights, optimizer moments, step, data position and RNG state, written
//! atomically (temp folder, fsync, rename) so a reader never sees half a checkpoint. Each
//! `state.json` lists the sha256 of the other files; a checkpoint whose files do not match (torn
//! by a crash, truncated disk) is skipped on resume.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::digest::{fsync, sha256_file};
use crate::error::{Error, Result};
use crate::export::Provenance;
use crate::rng::TrainRng;
use crate::train::optimizer::AdamW;

const FORMAT: u32 = 1;
const WEIGHTS: &str = "model.safetensors";
const OPTIMIZER: &str = "optimizer.safetensors";
const STATE: &str = "state.json";

/// Everything besides tensors needed to continue a run exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointState {
    pub format: u32,
    /// Optimizer steps completed.
    pub step: u64,
    /// Epoch in progress and the index of the next batch in its order.
    pub epoch: u64,
    pub batch_in_epoch: usize,
    /// Dropout RNG state.
    pub rng: TrainRng,
    /// f16 loss scale (absent in checkpoints of fp32 runs written before mixed precision).
    #[serde(default)]
    pub loss_scaler: crate::train::LossScaler,
    pub labels: Vec<String>,
    /// Base model folder (config and tokenizer for export).
    pub model_dir: PathBuf,
    pub provenance: Provenance,
    /// sha256 of every other file in the checkpoint.
    pub files: BTreeMap<String, String>,
}

/// A checkpoint as loaded.
#[derive(Debug)]
pub struct Loaded {
    pub path: PathBuf,
    pub state: CheckpointState,
    pub weights: HashMap<String, Tensor>,
    pub optimizer: HashMap<String, Tensor>,
}

fn step_dir_name(step: u64) -> String {
    format!("step-{step:09}")
}

/// Writes a checkpoint under `root` and prunes all but the newest `keep`.
pub fn save(
    root: &Path,
    mut state: CheckpointState,
    weights: &HashMap<String, Tensor>,
    opt: &AdamW,
    names: &[String],
    keep: usize,
) -> Result<PathBuf> {
    std::fs::create_dir_all(root).map_err(|e| Error::io(root, e))?;
    let final_dir = root.join(step_dir_name(state.step));
    let tmp = root.join(format!(
        ".tmp-{}-{}",
        step_dir_name(state.step),
        std::process::id()
    ));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;

    candle_core::safetensors::save(weights, tmp.join(WEIGHTS))?;
    let mut moments = HashMap::new();
    for (name, m) in names.iter().zip(&opt.moments) {
        let n = m.exp_avg.len();
        moments.insert(
            format!("exp_avg.{name}"),
            Tensor::from_slice(&m.exp_avg, n, &Device::Cpu)?,
        );
        moments.insert(
            format!("exp_avg_sq.{name}"),
            Tensor::from_slice(&m.exp_avg_sq, n, &Device::Cpu)?,
        );
    }
    candle_core::safetensors::save(&moments, tmp.join(OPTIMIZER))?;
    state.format = FORMAT;
    state.files.clear();
    for f in [WEIGHTS, OPTIMIZER] {
        let p = tmp.join(f);
        fsync(&p)?;
        state.files.insert(f.to_string(), sha256_file(&p)?);
    }
    let state_path = tmp.join(STATE);
    let json = serde_json::to_vec_pretty(&state).map_err(|source| Error::Json {
        path: state_path.clone(),
        source,
    })?;
    std::fs::write(&state_path, json).map_err(|e| Error::io(&state_path, e))?;
    fsync(&state_path)?;
    fsync(&tmp)?;
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir).map_err(|e| Error::io(&final_dir, e))?;
    }
    std::fs::rename(&tmp, &final_dir).map_err(|e| Error::io(&final_dir, e))?;
    fsync(root)?;
    prune(root, keep)?;
    Ok(final_dir)
}

/// Checkpoint folders under `root`, newest first.
fn list(root: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Ok(Vec::new());
    };
    let mut out: Vec<(u64, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let step = name.strip_prefix("step-")?.parse().ok()?;
            Some((step, e.path()))
        })
        .collect();
    out.sort_by_key(|e| std::cmp::Reverse(e.0));
    Ok(out)
}

fn prune(root: &Path, keep: usize) -> Result<()> {
    for (_, path) in list(root)?.into_iter().skip(keep.max(1)) {
        std::fs::remove_dir_all(&path).map_err(|e| Error::io(&path, e))?;
    }
    Ok(())
}

/// Reads and verifies one checkpoint folder.
pub fn load(dir: &Path, device: &Device) -> Result<Loaded> {
    let state: CheckpointState = crate::error::read_json(&dir.join(STATE))?;
    if state.format != FORMAT {
        return Err(Error::Model(format!(
            "{}: unsupported checkpoint format {}",
            dir.display(),
            state.format
        )));
    }
    for f in [WEIGHTS, OPTIMIZER] {
        let want = state.files.get(f).ok_or_else(|| {
            Error::Model(format!(
                "{}: state.json lists no digest for {f}",
                dir.display()
            ))
        })?;
        let got = sha256_file(&dir.join(f))?;
        if &got != want {
            return Err(Error::Model(format!(
                "{}: {f} digest mismatch",
                dir.display()
            )));
        }
    }
    let weights = candle_core::safetensors::load(dir.join(WEIGHTS), device)?;
    let optimizer = candle_core::safetensors::load(dir.join(OPTIMIZER), &Device::Cpu)?;
    Ok(Loaded {
        path: dir.to_path_buf(),
        state,
        weights,
        optimizer,
    })
}

/// The newest checkpoint under `root` that loads and verifies; broken ones are logged and skipped.
pub fn latest_valid(root: &Path, device: &Device) -> Result<Option<Loaded>> {
    for (_, dir) in list(root)? {
        match load(&dir, device) {
            Ok(l) => return Ok(Some(l)),
            Err(e) => {
                tracing::warn!(checkpoint = %dir.display(), error = %e, "skipping invalid checkpoint")
            }
        }
    }
    Ok(None)
}

/// Restores optimizer moments from a loaded checkpoint.
pub fn restore_optimizer(
    opt: &mut AdamW,
    names: &[String],
    tensors: &HashMap<String, Tensor>,
    step: u64,
) -> Result<()> {
    for (name, m) in names.iter().zip(opt.moments.iter_mut()) {
        let get = |k: String| -> Result<Vec<f32>> {
            let t = tensors
                .get(&k)
                .ok_or_else(|| Error::Model(format!("checkpoint lacks {k}")))?;
            Ok(t.to_vec1::<f32>()?)
        };
        m.exp_avg = get(format!("exp_avg.{name}"))?;
        m.exp_avg_sq = get(format!("exp_avg_sq.{name}"))?;
    }
    opt.step = step;
    opt.reload_from_host();
    Ok(())
}

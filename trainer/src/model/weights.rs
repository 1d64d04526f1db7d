//! Loading parameters from HuggingFace safetensors into a `VarMap`, so every weight is trainable.
//!
//! `VarBuilder::from_mmaped_safetensors` gives frozen tensors and `VarMap::load` fails on a
//! missing head, so we build the variables ourselves: each spec name is looked up in the file
//! (with or without the family prefix, since sentence-transformers checkpoints such as
//! all-MiniLM-L6-v2 have none; old `gamma`/`beta` LayerNorm names are accepted), converted to f32,
//! and anything missing is initialised as transformers would.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;

use super::config::ModelConfig;
use super::params::{Init, ParamSpec, param_specs};
use crate::error::{Error, Result};
use crate::rng::TrainRng;

/// The trainable parameters, by HuggingFace name, in a stable order.
pub struct Params {
    pub varmap: VarMap,
    pub specs: Vec<ParamSpec>,
    /// Names that were initialised fresh because the checkpoint lacked them.
    pub initialised: Vec<String>,
}

impl std::fmt::Debug for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Params")
            .field("params", &self.specs.len())
            .field("initialised", &self.initialised)
            .finish()
    }
}

impl Params {
    /// The variable of each spec, in spec order.
    pub fn vars(&self) -> Result<Vec<Var>> {
        let data = lock(&self.varmap)?;
        self.specs
            .iter()
            .map(|s| {
                data.get(&s.name)
                    .cloned()
                    .ok_or_else(|| Error::Model(format!("parameter {} missing", s.name)))
            })
            .collect()
    }

    /// Name → tensor map sharing storage with the variables (so it tracks gradients).
    pub fn tensors(&self) -> Result<HashMap<String, Tensor>> {
        let data = lock(&self.varmap)?;
        Ok(data
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect())
    }
}

fn lock(varmap: &VarMap) -> Result<std::sync::MutexGuard<'_, HashMap<String, Var>>> {
    varmap
        .data()
        .lock()
        .map_err(|_| Error::Model("parameter map lock poisoned".into()))
}

/// Reads a safetensors file into f32 tensors under normalised names.
pub fn read_safetensors(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    let raw = candle_core::safetensors::load(path, device)
        .map_err(|e| Error::Model(format!("{}: {e}", path.display())))?;
    raw.into_iter()
        .map(|(name, t)| {
            let name = if let Some(stem) = name.strip_suffix(".gamma") {
                format!("{stem}.weight")
            } else if let Some(stem) = name.strip_suffix(".beta") {
                format!("{stem}.bias")
            } else {
                name
            };
            Ok((name, t.to_dtype(DType::F32)?))
        })
        .collect()
}

fn lookup<'a>(source: &'a HashMap<String, Tensor>, name: &str, prefix: &str) -> Option<&'a Tensor> {
    if let Some(t) = source.get(name) {
        return Some(t);
    }
    let bare = name.strip_prefix(prefix)?.strip_prefix('.')?;
    source.get(bare).or_else(|| {
        // XLM-RoBERTa exports sometimes use the `roberta.` prefix; BERT-like bases sometimes
        // carry a `model.` prefix from sentence-transformers wrappers.
        source.get(&format!("model.{bare}"))
    })
}

fn init_tensor(spec: &ParamSpec, rng: &mut TrainRng, device: &Device) -> Result<Tensor> {
    let n: usize = spec.shape.iter().product();
    let data: Vec<f32> = match spec.init {
        Init::Zeros => vec![0.0; n],
        Init::Ones => vec![1.0; n],
        Init::Normal(std) => (0..n).map(|_| rng.normal() * std).collect(),
    };
    Ok(Tensor::from_vec(data, spec.shape.as_slice(), device)?)
}

/// Builds all parameters for `cfg` with `num_labels` outputs from `source` (possibly empty).
///
/// A present tensor of the wrong shape is an error, except for the classifier output layer,
/// which is re-initialised when the label count differs (as transformers'
/// `ignore_mismatched_sizes`).
pub fn build_params(
    cfg: &ModelConfig,
    num_labels: usize,
    source: &HashMap<String, Tensor>,
    rng: &mut TrainRng,
    device: &Device,
) -> Result<Params> {
    let specs = param_specs(cfg, num_labels);
    let varmap = VarMap::new();
    let mut initialised = Vec::new();
    {
        let mut data = lock(&varmap)?;
        for spec in &specs {
            let found = lookup(source, &spec.name, cfg.family.prefix());
            let is_head_out =
                spec.name.starts_with("classifier") && !spec.name.starts_with("classifier.dense");
            let tensor = match found {
                Some(t) if t.dims() == spec.shape.as_slice() => t.to_device(device)?,
                Some(t) if !is_head_out => {
                    return Err(Error::Model(format!(
                        "weight {} has shape {:?}, expected {:?}",
                        spec.name,
                        t.dims(),
                        spec.shape
                    )));
                }
                _ => {
                    initialised.push(spec.name.clone());
                    init_tensor(spec, rng, device)?
                }
            };
            data.insert(spec.name.clone(), Var::from_tensor(&tensor)?);
        }
    }
    Ok(Params {
        varmap,
        specs,
        initialised,
    })
}

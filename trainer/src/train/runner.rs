//! The training loop: resume, step, evaluate, checkpoint, stop on request, export.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::{Device, Tensor};

use super::eval::evaluate;
use super::metrics::EvalMetrics;
use super::optimizer::{AdamW, AdamWConfig, clip_factor, global_norm};
use super::precision::LossScaler;
use super::progress::{Event, Progress};
use super::schedule::LinearSchedule;
use super::shards::Step;
use crate::checkpoint::{self, CheckpointState};
use crate::config::JobConfig;
use crate::data::{Batch, Batcher, TextTokenizer, batch::collate, load_dataset};
use crate::device::device_name;
use crate::error::{Error, Result};
use crate::export::{ExportInput, Provenance, export};
use crate::hub;
use crate::model::{Classifier, Family, ModelConfig};
use crate::rng::TrainRng;

/// Everything `run` needs besides the job config.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub job: JobConfig,
    /// HuggingFace hub cache to resolve the base model in (read only).
    pub cache: PathBuf,
    pub device: Device,
    /// Set by the SIGTERM handler: checkpoint after the current step and stop.
    pub stop: Arc<AtomicBool>,
    /// Behave as if SIGTERM arrived right after this step (tests, drills).
    pub stop_after_step: Option<u64>,
    /// Write every training batch as a JSON line here (for the PyTorch cross-check).
    pub dump_batches: Option<PathBuf>,
    /// Export the model as initialised (step 0, head included) here before training.
    pub export_init: Option<PathBuf>,
}

impl RunOptions {
    /// Options for `job` on the CPU with the environment's cache.
    pub fn new(job: JobConfig) -> Self {
        Self {
            job,
            cache: hub::cache_dir(),
            device: Device::Cpu,
            stop: Arc::new(AtomicBool::new(false)),
            stop_after_step: None,
            dump_batches: None,
            export_init: None,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// All steps done; the export is in `export_dir`.
    Finished {
        step: u64,
        metrics: EvalMetrics,
        export_dir: PathBuf,
        /// Training loss of each optimizer step this process ran.
        losses: Vec<f64>,
    },
    /// Stopped on request after checkpointing.
    Preempted {
        step: u64,
        checkpoint: PathBuf,
        losses: Vec<f64>,
    },
}

/// Longest token sequence the position table allows.
fn position_limit(cfg: &ModelConfig) -> usize {
    match cfg.family {
        Family::Roberta => cfg
            .max_position_embeddings
            .saturating_sub(cfg.pad_token_id as usize + 1),
        _ => cfg.max_position_embeddings,
    }
}

fn dump_batch(out: &mut std::fs::File, path: &std::path::Path, b: &Batch) -> Result<()> {
    let rows =
        |v: &[u32]| -> Vec<Vec<u32>> { v.chunks(b.seq_len.max(1)).map(<[u32]>::to_vec).collect() };
    let line = serde_json::json!({
        "input_ids": rows(&b.input_ids),
        "token_type_ids": rows(&b.token_type_ids),
        "attention_mask": rows(&b.attention_mask),
        "labels": b.labels,
    });
    writeln!(out, "{line}").map_err(|e| Error::io(path, e))
}

/// Runs `f`, adding its wall time to `secs`.
fn timed<T>(secs: &mut f64, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let started = Instant::now();
    let out = f();
    *secs += started.elapsed().as_secs_f64();
    out
}

/// Trains according to `opts`, reporting to `progress`.
pub fn run(opts: &RunOptions, progress: &mut Progress) -> Result<Outcome> {
    let job = &opts.job;
    job.validate()?;
    let t = &job.training;
    // Resolving, tokenizer and weights: the `modelLoadSec` of the start event.
    let mut model_load_sec = 0.0;
    let (resolved, model_cfg) = timed(&mut model_load_sec, || {
        let resolved = hub::resolve(&job.model.id, &job.model.revision, &opts.cache)?;
        let cfg = ModelConfig::from_file(&resolved.dir.join("config.json"))?;
        Ok((resolved, cfg))
    })?;
    let dataset = load_dataset(&job.data, t.seed)?;
    let max_len = job.data.max_length.min(position_limit(&model_cfg));
    let tokenizer = timed(&mut model_load_sec, || {
        TextTokenizer::from_file(
            &resolved.dir.join("tokenizer.json"),
            max_len,
            model_cfg.pad_token_id,
        )
    })?;
    let train_enc = tokenizer.encode_all(&dataset.train)?;
    let val_enc = tokenizer.encode_all(&dataset.validation)?;
    let batcher = Batcher {
        seed: t.seed,
        batch_size: t.batch_size,
    };
    let batches_per_epoch = train_enc.len().div_ceil(t.batch_size);
    let steps_per_epoch = batches_per_epoch.div_ceil(t.gradient_accumulation) as u64;
    let total = t.max_steps.unwrap_or(steps_per_epoch * t.epochs);
    let warmup = t
        .warmup_steps
        .unwrap_or_else(|| (t.warmup_ratio * total as f64).ceil() as u64);
    let schedule = LinearSchedule {
        base_lr: t.learning_rate,
        warmup_steps: warmup,
        total_steps: total,
    };

    let mut init_rng = TrainRng::new(t.seed, 1);
    let labels = dataset.labels.names().to_vec();
    let model = timed(&mut model_load_sec, || {
        Classifier::from_dir(&resolved.dir, labels.len(), &mut init_rng, &opts.device)
    })?;
    let compute = t.precision.compute_dtype();
    let mut scaler = LossScaler::new(t.precision);
    if opts.device.is_cpu() && compute != candle_core::DType::F32 {
        tracing::warn!(precision = ?t.precision, "mixed precision on the CPU is slower than fp32");
    }
    if !model.params.initialised.is_empty() {
        tracing::info!(params = ?model.params.initialised, "initialised fresh (not in the checkpoint)");
    }
    let names: Vec<String> = model.params.specs.iter().map(|s| s.name.clone()).collect();
    let decay: Vec<bool> = model.params.specs.iter().map(|s| s.decay).collect();
    let vars = model.params.vars()?;
    let mut opt = AdamW::new(
        AdamWConfig {
            beta1: t.adam_beta1,
            beta2: t.adam_beta2,
            eps: t.adam_epsilon,
            weight_decay: t.weight_decay,
        },
        vars.clone(),
        &decay,
    );
    let provenance = Provenance {
        base_model: job.model.id.clone(),
        revision: resolved.revision.clone(),
        resolved_revision: resolved.commit.clone(),
        dataset_digest: dataset.digest.clone(),
        hyperparameters: serde_json::to_value(t).unwrap_or_default(),
        trainer_version: env!("CARGO_PKG_VERSION").to_string(),
    };

    let mut rng = TrainRng::new(t.seed, 3);
    let (mut step, mut epoch, mut pos) = (0u64, 0u64, 0usize);
    let ckpt_root = job.checkpoint_dir();
    let mut resumed_from = None;
    if let Some(l) = checkpoint::latest_valid(&ckpt_root, &opts.device)? {
        if l.state.labels != labels {
            return Err(Error::Config(format!(
                "checkpoint {} has labels {:?}, the data has {:?}",
                l.path.display(),
                l.state.labels,
                labels
            )));
        }
        for (name, var) in names.iter().zip(&vars) {
            let w = l
                .weights
                .get(name)
                .ok_or_else(|| Error::Model(format!("checkpoint lacks {name}")))?;
            var.set(w)?;
        }
        checkpoint::restore_optimizer(&mut opt, &names, &l.optimizer, l.state.step)?;
        rng = l.state.rng.clone();
        if l.state.loss_scaler.dynamic == scaler.dynamic {
            scaler = l.state.loss_scaler;
        }
        (step, epoch, pos) = (l.state.step, l.state.epoch, l.state.batch_in_epoch);
        resumed_from = Some(l.path.display().to_string());
    }

    // f32 master weights (detached): what checkpoints and exports hold.
    let master = model.detached()?;
    let export_at = |dir: &std::path::Path, step: u64, metrics: Option<EvalMetrics>| {
        export(
            &ExportInput {
                weights: &master,
                config: &model.config,
                labels: &labels,
                base_dir: &resolved.dir,
                provenance: &provenance,
                step,
                metrics,
            },
            dir,
        )
    };
    if let Some(dir) = &opts.export_init {
        export_at(dir, step, None)?;
    }
    let mut dump = match &opts.dump_batches {
        Some(p) => Some((
            std::fs::File::create(p).map_err(|e| Error::io(p, e))?,
            p.clone(),
        )),
        None => None,
    };
    let save_checkpoint = |step: u64,
                           epoch: u64,
                           pos: usize,
                           rng: &TrainRng,
                           opt: &mut AdamW,
                           loss_scaler: LossScaler| {
        opt.sync_to_host()?;
        checkpoint::save(
            &ckpt_root,
            CheckpointState {
                format: 0,
                step,
                epoch,
                batch_in_epoch: pos,
                rng: rng.clone(),
                loss_scaler,
                labels: labels.clone(),
                model_dir: resolved.dir.clone(),
                provenance: provenance.clone(),
                files: Default::default(),
            },
            &master,
            opt,
            &names,
            t.keep_checkpoints,
        )
    };

    // On fresh casts of the master weights (in the compute precision), recording no graph.
    let eval = || {
        evaluate(
            &model,
            &model.detached_in(compute)?,
            &val_enc,
            &batcher,
            tokenizer.pad_id,
        )
    };
    progress.emit(&Event::Start {
        total_steps: total,
        start_step: step,
        train_samples: train_enc.len(),
        validation_samples: val_enc.len(),
        labels: labels.clone(),
        resumed_from,
        model_load_sec,
        device: device_name(&opts.device),
        precision: t.precision,
    });
    if !opts.device.is_cpu() {
        // Dropout masks are drawn on the GPU there (`dropout::DropoutMask::Device`): seeded by
        // the run's seed and the first step, so a run is repeatable, and a resumed one draws
        // fresh masks rather than replaying the first steps' (bit-for-bit resume is a CPU
        // guarantee).
        opts.device.set_seed(t.seed.wrapping_add(step))?;
    }
    let started = Instant::now();
    let first_step = step;
    let mut window = (Instant::now(), 0usize);
    let mut losses = Vec::new();
    let mut order: Option<(u64, Vec<Vec<usize>>)> = None;
    while step < total {
        if order.as_ref().is_none_or(|(e, _)| *e != epoch) {
            order = Some((epoch, batcher.epoch(&train_enc, epoch)));
        }
        let Some((_, batches)) = &order else { break };
        let n_batches = batches.len();
        if pos >= n_batches {
            epoch += 1;
            pos = 0;
            continue;
        }
        let group_end = (pos + t.gradient_accumulation).min(n_batches);
        // Under mixed precision these are fresh casts of the master weights.
        let train_weights = model.weights_in(compute)?;
        let mut acc: Vec<Option<Tensor>> = vec![None; vars.len()];
        let mut loss_sum = 0f64;
        let batch_step = Step {
            model: &model,
            weights: &train_weights,
            vars: &vars,
            examples: &train_enc,
            pad_id: tokenizer.pad_id,
            loss_scale: scaler.scale,
        };
        for idx in &batches[pos..group_end] {
            if let Some((f, p)) = dump.as_mut() {
                dump_batch(f, p, &collate(&train_enc, idx, tokenizer.pad_id))?;
            }
            let rng_opt = if t.dropout { Some(&mut rng) } else { None };
            loss_sum += batch_step.accumulate(idx, rng_opt, &mut acc)?;
            window.1 += idx.len();
        }
        let micro = group_end - pos;
        pos = group_end;
        // Averages the micro-batches and undoes the loss scale.
        let scale = 1.0 / micro as f64 / scaler.scale;
        let norm = global_norm(&acc, scale)?;
        let lr = schedule.lr(step);
        if scaler.update(norm.is_finite(), step + 1)? {
            let clip = clip_factor(norm, t.max_grad_norm);
            opt.step(&acc, lr, scale * clip)?;
        } else {
            tracing::warn!(
                step = step + 1,
                scale = scaler.scale,
                "f16 gradients overflowed: step skipped, loss scale halved"
            );
        }
        drop(acc);
        step += 1;
        let loss = loss_sum / micro as f64;
        losses.push(loss);
        let epoch_f = epoch as f64 + pos as f64 / n_batches as f64;
        if pos >= n_batches {
            epoch += 1;
            pos = 0;
        }
        if t.log_every > 0 && (step % t.log_every == 0 || step == total) {
            let secs = window.0.elapsed().as_secs_f64().max(1e-9);
            let per_step = started.elapsed().as_secs_f64() / (step - first_step) as f64;
            progress.emit(&Event::Step {
                step,
                total_steps: total,
                epoch: epoch_f,
                loss,
                lr,
                grad_norm: norm,
                samples_per_sec: window.1 as f64 / secs,
                eta_sec: per_step * (total - step) as f64,
            });
            window = (Instant::now(), 0);
        }
        if t.eval_every > 0 && step % t.eval_every == 0 && step < total {
            let metrics = eval()?;
            progress.emit(&Event::Eval {
                step,
                epoch: epoch_f,
                metrics,
            });
        }
        let stop = opts.stop.load(Ordering::SeqCst) || opts.stop_after_step == Some(step);
        let periodic = t.checkpoint_every > 0 && step % t.checkpoint_every == 0;
        if stop || (periodic && step < total) {
            let path = save_checkpoint(step, epoch, pos, &rng, &mut opt, scaler)?;
            progress.emit(&Event::Checkpoint {
                step,
                path: path.display().to_string(),
            });
            if stop && step < total {
                progress.emit(&Event::Done {
                    step,
                    preempted: true,
                    metrics: None,
                    export_dir: None,
                    model: None,
                });
                return Ok(Outcome::Preempted {
                    step,
                    checkpoint: path,
                    losses,
                });
            }
        }
    }
    let metrics = eval()?;
    progress.emit(&Event::Eval {
        step,
        epoch: epoch as f64 + pos as f64 / batches_per_epoch.max(1) as f64,
        metrics,
    });
    let path = save_checkpoint(step, epoch, pos, &rng, &mut opt, scaler)?;
    progress.emit(&Event::Checkpoint {
        step,
        path: path.display().to_string(),
    });
    let exported = export_at(&job.output_dir.join("model"), step, Some(metrics))?;
    progress.emit(&Event::Done {
        step,
        preempted: false,
        metrics: Some(metrics),
        export_dir: Some(exported.dir.display().to_string()),
        model: Some(exported.model()),
    });
    Ok(Outcome::Finished {
        step,
        metrics,
        export_dir: exported.dir,
        losses,
    })
}

//! Training tests: the optimizer matches torch's AdamW formula, runs are deterministic (with
//! any number of threads), an interrupted + resumed run equals an uninterrupted one bit for bit
//! (also past a torn checkpoint), and progress lines are well-formed.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use attune_trainer::config::{JobConfig, ModelSource, TrainConfig};
use attune_trainer::data::DataConfig;
use attune_trainer::train::optimizer::{AdamW, AdamWConfig};
use attune_trainer::train::{Outcome, Progress, RunOptions, run};
use candle_core::{Device, Tensor, Var};

use crate::common::{Workspace, workspace};

pub fn job(ws: &Workspace, out: &Path) -> JobConfig {
    let mut data = DataConfig::new(&ws.train);
    data.validation_file = Some(ws.validation.clone());
    data.max_length = 16;
    JobConfig {
        model: ModelSource {
            id: ws.model.display().to_string(),
            revision: "main".into(),
        },
        data,
        training: TrainConfig {
            epochs: 2,
            batch_size: 8,
            learning_rate: 3e-3,
            warmup_steps: Some(2),
            seed: 11,
            ..TrainConfig::default()
        },
        output_dir: out.to_path_buf(),
        checkpoint_dir: None,
    }
}

pub fn opts(job: JobConfig) -> RunOptions {
    let mut o = RunOptions::new(job);
    o.cache = std::env::temp_dir().join("attune-no-cache");
    o
}

pub fn exported_weights(dir: &Path) -> HashMap<String, Vec<f32>> {
    candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu)
        .unwrap()
        .into_iter()
        .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect()
}

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn events(shared: &Shared) -> Vec<serde_json::Value> {
    let bytes = shared.0.lock().unwrap().clone();
    String::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn adamw_matches_torch_formula() {
    let p0 = [0.5f32, -1.0, 2.0];
    let grads = [[0.1f64, -0.2, 0.3], [0.05, 0.4, -0.1]];
    let (lr, wd, b1, b2, eps) = (0.01f64, 0.1f64, 0.9f64, 0.999f64, 1e-8f64);
    for decay in [true, false] {
        let var = Var::from_slice(&p0, 3, &Device::Cpu).unwrap();
        let cfg = AdamWConfig {
            weight_decay: wd,
            ..AdamWConfig::default()
        };
        let mut opt = AdamW::new(cfg, vec![var.clone()], &[decay]);
        let (mut p, mut m, mut v) = (p0.map(f64::from), [0f64; 3], [0f64; 3]);
        for (t, g) in grads.iter().enumerate() {
            let gt = Tensor::from_slice(&g.map(|x| x as f32), 3, &Device::Cpu).unwrap();
            opt.step(&[Some(gt)], lr, 1.0).unwrap();
            let t = (t + 1) as i32;
            for i in 0..3 {
                if decay {
                    p[i] *= 1.0 - lr * wd;
                }
                m[i] = b1 * m[i] + (1.0 - b1) * g[i];
                v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
                let denom = v[i].sqrt() / (1.0 - b2.powi(t)).sqrt() + eps;
                p[i] -= lr / (1.0 - b1.powi(t)) * m[i] / denom;
            }
        }
        let got = var.as_tensor().to_vec1::<f32>().unwrap();
        for i in 0..3 {
            assert!((f64::from(got[i]) - p[i]).abs() < 1e-6, "{got:?} vs {p:?}");
        }
    }
}

#[test]
fn training_learns_is_deterministic_and_reports_progress() {
    let ws = workspace("bert", 64);
    let shared = Shared::default();
    let out_a = ws.tmp.path().join("a");
    let mut progress = Progress::to_writer(Box::new(shared.clone()));
    let mut j = job(&ws, &out_a);
    j.training.epochs = 4;
    j.training.learning_rate = 1e-2;
    j.training.eval_every = 8;
    let a = run(&opts(j.clone()), &mut progress).unwrap();
    let Outcome::Finished {
        metrics, losses, ..
    } = a
    else {
        panic!("not finished: {a:?}")
    };
    assert_eq!(losses.len(), 32);
    let first: f64 = losses[..4].iter().sum::<f64>() / 4.0;
    let last: f64 = losses[28..].iter().sum::<f64>() / 4.0;
    eprintln!("loss {first} -> {last}, accuracy {}", metrics.accuracy);
    assert!(last < first * 0.7, "loss {first} -> {last}");
    assert!(metrics.accuracy >= 0.75, "accuracy {}", metrics.accuracy);

    let ev = events(&shared);
    let kinds: Vec<&str> = ev.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(kinds[0], "start");
    assert_eq!(*kinds.last().unwrap(), "done");
    assert_eq!(kinds.iter().filter(|k| **k == "step").count(), 32);
    assert_eq!(kinds.iter().filter(|k| **k == "eval").count(), 4);
    let step = ev.iter().find(|e| e["event"] == "step").unwrap();
    for key in [
        "step",
        "totalSteps",
        "epoch",
        "loss",
        "lr",
        "gradNorm",
        "samplesPerSec",
        "etaSec",
    ] {
        assert!(step.get(key).is_some(), "step event lacks {key}: {step}");
    }
    let eval = ev.iter().find(|e| e["event"] == "eval").unwrap();
    for key in ["loss", "accuracy", "macroF1"] {
        assert!(eval.get(key).is_some(), "eval event lacks {key}: {eval}");
    }

    // Again, with 1 and with 3 threads: the same bits (the batch shards, the dropout masks
    // and the fused kernels' sums must not follow the thread count).
    let want = exported_weights(&out_a.join("model"));
    for threads in [1, 3] {
        let out = ws.tmp.path().join(format!("threads-{threads}"));
        j.output_dir = out.clone();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| run(&opts(j.clone()), &mut Progress::sink()))
            .unwrap();
        assert!(
            exported_weights(&out.join("model")) == want,
            "{threads} threads changed the weights"
        );
    }
}

#[test]
fn interrupted_and_resumed_run_equals_uninterrupted_bit_for_bit() {
    let ws = workspace("bert", 40);
    // Uninterrupted, with gradient accumulation spanning epoch ends and dropout on.
    let base = |out: &Path| {
        let mut j = job(&ws, out);
        j.training.epochs = 3;
        j.training.gradient_accumulation = 2;
        j.training.checkpoint_every = 2;
        j
    };
    let straight = ws.tmp.path().join("straight");
    run(&opts(base(&straight)), &mut Progress::sink()).unwrap();

    let resumed = ws.tmp.path().join("resumed");
    let mut o = opts(base(&resumed));
    o.stop_after_step = Some(5);
    let first = run(&o, &mut Progress::sink()).unwrap();
    assert!(
        matches!(first, Outcome::Preempted { step: 5, .. }),
        "{first:?}"
    );
    // Tear the newest checkpoint: resume must fall back to step 4 and still end identical.
    let ckpt = resumed.join("checkpoints").join("step-000000005");
    std::fs::write(ckpt.join("model.safetensors"), b"torn").unwrap();
    let shared = Shared::default();
    let second = run(
        &opts(base(&resumed)),
        &mut Progress::to_writer(Box::new(shared.clone())),
    )
    .unwrap();
    assert!(matches!(second, Outcome::Finished { .. }), "{second:?}");
    let start = &events(&shared)[0];
    assert!(
        start["resumedFrom"]
            .as_str()
            .unwrap()
            .ends_with("step-000000004"),
        "{start}"
    );
    assert_eq!(start["startStep"], 4);
    assert_eq!(
        exported_weights(&straight.join("model")),
        exported_weights(&resumed.join("model"))
    );
}

#[test]
fn mixed_precision_learns_with_f32_master_weights() {
    use attune_trainer::train::Precision;
    let ws = workspace("bert", 64);
    let mut fp32_accuracy = None;
    for precision in [Precision::Fp32, Precision::Bf16, Precision::F16] {
        let out = ws.tmp.path().join(format!("{precision:?}"));
        let mut j = job(&ws, &out);
        j.training.epochs = 4;
        j.training.learning_rate = 1e-2;
        j.training.precision = precision;
        let shared = Shared::default();
        let outcome = run(&opts(j), &mut Progress::to_writer(Box::new(shared.clone()))).unwrap();
        let Outcome::Finished {
            metrics, losses, ..
        } = outcome
        else {
            panic!("{precision:?}: not finished: {outcome:?}")
        };
        let first: f64 = losses[..4].iter().sum::<f64>() / 4.0;
        let last: f64 = losses[28..].iter().sum::<f64>() / 4.0;
        eprintln!(
            "{precision:?}: loss {first} -> {last}, accuracy {}",
            metrics.accuracy
        );
        assert!(last < first * 0.7, "{precision:?}: loss {first} -> {last}");
        let fp32 = *fp32_accuracy.get_or_insert(metrics.accuracy);
        assert!(
            metrics.accuracy >= fp32 - 0.1,
            "{precision:?}: accuracy {} vs fp32 {fp32}",
            metrics.accuracy
        );
        let start = &events(&shared)[0];
        assert_eq!(start["precision"], format!("{precision:?}").to_lowercase());
        assert_eq!(start["device"], "cpu");
        // Master weights, and so the export, stay f32; the 16-bit runs really computed in 16
        // bits, so they differ from the f32 run.
        let exported = candle_core::safetensors::load(
            out.join("model").join("model.safetensors"),
            &Device::Cpu,
        )
        .unwrap();
        assert!(
            exported
                .values()
                .all(|t| t.dtype() == candle_core::DType::F32)
        );
    }
    let w = |p: &str| exported_weights(&ws.tmp.path().join(p).join("model"));
    assert_ne!(w("Fp32"), w("Bf16"));
    assert_ne!(w("Bf16"), w("F16"));
}

//! Real-model tests against `transformers`, run only when ATTUNE_ASSETS points at the folder
//! `tests/assets/setup` prepares (HF cache with all-MiniLM-L6-v2, BBC JSONL, reference hidden
//! states, a Python venv with torch + transformers). Without it each test prints a notice and
//! passes immediately.

use std::path::{Path, PathBuf};
use std::process::Command;

use attune_trainer::data::Batch;
use attune_trainer::hub::resolve;
use attune_trainer::model::Classifier;
use attune_trainer::rng::TrainRng;
use candle_core::Device;

use crate::common::assets;

const MINILM: &str = "sentence-transformers/all-MiniLM-L6-v2";

fn python(assets: &Path) -> PathBuf {
    assets.join("venv").join("bin").join("python")
}

fn script(name: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(name);
    if p.is_file() {
        Some(p)
    } else {
        eprintln!("skipping: {} is missing", p.display());
        None
    }
}

/// The BBC split files: the small subsets when present, else the full ones.
fn bbc(assets: &Path) -> (PathBuf, PathBuf) {
    let dir = assets.join("bbc");
    let pick = |small: &str, full: &str| {
        let s = dir.join(small);
        if s.is_file() { s } else { dir.join(full) }
    };
    (
        pick("small-train.jsonl", "train.jsonl"),
        pick("small-validation.jsonl", "validation.jsonl"),
    )
}

fn trainer() -> Command {
    Command::new(env!("CARGO_BIN_EXE_attune-trainer"))
}

fn run_ok(cmd: &mut Command) -> String {
    let o = cmd.output().expect("spawn");
    assert!(
        o.status.success(),
        "{cmd:?} failed ({:?}):\n{}\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn minilm_hidden_states_match_transformers() {
    let Some(assets) = assets("minilm_hidden_states_match_transformers") else {
        return;
    };
    let r = resolve(MINILM, "main", &assets.join("hf-cache")).unwrap();
    let mut rng = TrainRng::new(0, 0);
    let model = Classifier::from_dir(&r.dir, 2, &mut rng, &Device::Cpu).unwrap();
    let reference: serde_json::Value = serde_json::from_slice(
        &std::fs::read(assets.join("reference").join("minilm_hidden.json")).unwrap(),
    )
    .unwrap();
    let rows =
        |key: &str| -> Vec<Vec<u32>> { serde_json::from_value(reference[key].clone()).unwrap() };
    let ids = rows("input_ids");
    let mask = rows("attention_mask");
    let seq = ids[0].len();
    let batch = Batch {
        size: ids.len(),
        seq_len: seq,
        input_ids: ids.concat(),
        token_type_ids: vec![0; ids.len() * seq],
        attention_mask: mask.concat(),
        labels: vec![0; ids.len()],
    };
    let hidden = model
        .hidden_states(&model.detached().unwrap(), &model.inputs(&batch).unwrap())
        .unwrap()
        .to_vec3::<f32>()
        .unwrap();
    let want: Vec<Vec<Vec<f32>>> =
        serde_json::from_value(reference["last_hidden_state"].clone()).unwrap();
    let mut max = 0f32;
    for (b, row) in want.iter().enumerate() {
        for (s, tok) in row.iter().enumerate() {
            if mask[b][s] == 0 {
                continue;
            }
            for (h, v) in tok.iter().enumerate() {
                max = max.max((hidden[b][s][h] - v).abs());
            }
        }
    }
    eprintln!("max |ours - transformers| = {max:e}");
    assert!(max < 1e-4, "max abs diff {max}");
}

#[test]
fn export_logits_match_transformers() {
    let Some(assets) = assets("export_logits_match_transformers") else {
        return;
    };
    let Some(check) = script("check_export.py") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (train, validation) = bbc(&assets);
    run_ok(
        trainer()
            .args([
                "train",
                "--model",
                MINILM,
                "--max-steps",
                "2",
                "--batch-size",
                "8",
            ])
            .arg("--cache")
            .arg(assets.join("hf-cache"))
            .arg("--train-file")
            .arg(&train)
            .arg("--validation-file")
            .arg(&validation)
            .arg("--output-dir")
            .arg(tmp.path().join("out")),
    );
    let texts: Vec<String> = std::fs::read_to_string(&validation)
        .unwrap()
        .lines()
        .take(32)
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["text"].as_str().unwrap().replace('\n', " ")
        })
        .collect();
    let texts_file = tmp.path().join("texts.txt");
    std::fs::write(&texts_file, texts.join("\n") + "\n").unwrap();
    let logits = tmp.path().join("logits.json");
    let export = tmp.path().join("out").join("model");
    run_ok(
        trainer()
            .args(["predict", "--model"])
            .arg(&export)
            .arg("--input")
            .arg(&texts_file)
            .arg("--logits-json")
            .arg(&logits),
    );
    run_ok(
        Command::new(python(&assets))
            .arg(check)
            .arg("--export")
            .arg(&export)
            .arg("--texts")
            .arg(&texts_file)
            .arg("--logits")
            .arg(&logits),
    );
}

#[test]
fn training_losses_track_pytorch() {
    let Some(assets) = assets("training_losses_track_pytorch") else {
        return;
    };
    let Some(torch) = script("torch_losses.py") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (train, validation) = bbc(&assets);
    let steps = 6;
    let batches = tmp.path().join("batches.jsonl");
    let init = tmp.path().join("init");
    let out = tmp.path().join("out");
    let stdout = run_ok(
        trainer()
            .args([
                "train",
                "--model",
                MINILM,
                "--no-dropout",
                "--batch-size",
                "8",
            ])
            .args(["--max-steps", &steps.to_string(), "--warmup-steps", "2"])
            .args([
                "--learning-rate",
                "5e-5",
                "--weight-decay",
                "0.01",
                "--max-grad-norm",
                "1.0",
            ])
            .args(["--max-length", "128"])
            .arg("--cache")
            .arg(assets.join("hf-cache"))
            .arg("--train-file")
            .arg(&train)
            .arg("--validation-file")
            .arg(&validation)
            .arg("--dump-batches")
            .arg(&batches)
            .arg("--export-init")
            .arg(&init)
            .arg("--output-dir")
            .arg(&out),
    );
    let ours: Vec<f64> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "step")
        .map(|v| v["loss"].as_f64().unwrap())
        .collect();
    assert_eq!(ours.len(), steps);
    let config = tmp.path().join("config.json");
    std::fs::write(
        &config,
        serde_json::json!({"learning_rate": 5e-5, "weight_decay": 0.01, "warmup_steps": 2,
            "total_steps": steps, "max_grad_norm": 1.0})
        .to_string(),
    )
    .unwrap();
    let theirs_path = tmp.path().join("torch.json");
    run_ok(
        Command::new(python(&assets))
            .arg(torch)
            .arg("--init")
            .arg(&init)
            .arg("--batches")
            .arg(&batches)
            .arg("--config")
            .arg(&config)
            .arg("--out")
            .arg(&theirs_path),
    );
    let theirs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&theirs_path).unwrap()).unwrap();
    let theirs: Vec<f64> = serde_json::from_value(theirs["losses"].clone()).unwrap();
    assert_eq!(theirs.len(), steps);
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        eprintln!("step {i}: ours {a:.6} torch {b:.6}");
        assert!((a - b).abs() < 1e-4, "step {i}: ours {a} torch {b}");
    }
}

/// Full fine-tune on BBC (≥ 95 % validation accuracy); minutes of CPU, so only with
/// ATTUNE_FULL_TRAINING=1 as well.
#[test]
fn bbc_fine_tune_reaches_95_percent() {
    let Some(assets) = assets("bbc_fine_tune_reaches_95_percent") else {
        return;
    };
    if std::env::var_os("ATTUNE_FULL_TRAINING").is_none() {
        eprintln!("skipping bbc_fine_tune_reaches_95_percent: set ATTUNE_FULL_TRAINING=1");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = assets.join("bbc");
    let stdout = run_ok(
        trainer()
            .args([
                "train",
                "--model",
                MINILM,
                "--epochs",
                "1",
                "--batch-size",
                "16",
            ])
            .args(["--learning-rate", "1e-4", "--max-length", "128"])
            .arg("--cache")
            .arg(assets.join("hf-cache"))
            .arg("--train-file")
            .arg(dir.join("train.jsonl"))
            .arg("--validation-file")
            .arg(dir.join("validation.jsonl"))
            .arg("--output-dir")
            .arg(tmp.path().join("out")),
    );
    let done: serde_json::Value = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "done")
        .unwrap();
    let acc = done["metrics"]["accuracy"].as_f64().unwrap();
    eprintln!("BBC validation accuracy after one epoch: {acc}");
    assert!(acc >= 0.95, "accuracy {acc}");
}

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

/// `attune-trainer train` of MiniLM from the assets' HF cache on `train`/`validation`, writing
/// under `out`; each test adds the hyper-parameters it is about.
fn train_minilm(assets: &Path, train: &Path, validation: &Path, out: &Path) -> Command {
    let mut cmd = trainer();
    cmd.args(["train", "--model", MINILM])
        .arg("--cache")
        .arg(assets.join("hf-cache"))
        .arg("--train-file")
        .arg(train)
        .arg("--validation-file")
        .arg(validation)
        .arg("--output-dir")
        .arg(out);
    cmd
}

/// The progress events (one JSON object a line) of `train`'s stdout.
fn events(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Validation accuracy from the `done` event.
fn final_accuracy(stdout: &str) -> f64 {
    let events = events(stdout);
    let done = events
        .iter()
        .find(|v| v["event"] == "done")
        .unwrap_or_else(|| panic!("no done event in:\n{stdout}"));
    done["metrics"]["accuracy"]
        .as_f64()
        .unwrap_or_else(|| panic!("done event without metrics.accuracy: {done}"))
}

/// Fine-tunes MiniLM at batch 16 × max length 128 on `bbc/<train>` (plus `schedule`: steps,
/// learning rate) and returns the accuracy on `bbc/<validation>`.
fn bbc_fine_tune(assets: &Path, train: &str, validation: &str, schedule: &[&str]) -> f64 {
    let tmp = tempfile::tempdir().unwrap();
    let dir = assets.join("bbc");
    let stdout = run_ok(
        train_minilm(
            assets,
            &dir.join(train),
            &dir.join(validation),
            &tmp.path().join("out"),
        )
        .args(["--batch-size", "16", "--max-length", "128"])
        .args(schedule),
    );
    final_accuracy(&stdout)
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
        train_minilm(&assets, &train, &validation, &tmp.path().join("out")).args([
            "--max-steps",
            "2",
            "--batch-size",
            "8",
        ]),
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
        train_minilm(&assets, &train, &validation, &out)
            .args(["--no-dropout", "--batch-size", "8"])
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
            .arg("--dump-batches")
            .arg(&batches)
            .arg("--export-init")
            .arg(&init),
    );
    let ours: Vec<f64> = events(&stdout)
        .iter()
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

/// Fine-tuning learns the BBC topics: 15 steps × 16 of the 400-document subset (0.6 epoch) at
/// lr 3e-4, then the 100-document subset validation. Measured 0.93 (seed 42) and 0.94 (seed 7)
/// against 0.2 for chance, in about 2 minutes of a contended 2-core test profile (one epoch at
/// lr 1e-4 scored 0.91 but took 3); 0.85 leaves room for numerics changes yet still fails a
/// model that learns nothing or learns it badly.
#[test]
fn bbc_subset_fine_tune_reaches_85_percent() {
    let Some(assets) = assets("bbc_subset_fine_tune_reaches_85_percent") else {
        return;
    };
    let schedule = ["--max-steps", "15", "--learning-rate", "3e-4"];
    let acc = bbc_fine_tune(
        &assets,
        "small-train.jsonl",
        "small-validation.jsonl",
        &schedule,
    );
    eprintln!("BBC subset validation accuracy after 15 steps: {acc}");
    assert!(acc >= 0.85, "accuracy {acc}");
}

/// One epoch on the full BBC split (2002 documents, ≥ 95 % on its 223 validation documents):
/// minutes of CPU even in release, so out of the default run; `-- --ignored` runs it.
#[test]
#[ignore = "full BBC fine-tune: minutes of CPU; run with --ignored"]
fn bbc_fine_tune_reaches_95_percent() {
    let Some(assets) = assets("bbc_fine_tune_reaches_95_percent") else {
        return;
    };
    let schedule = ["--epochs", "1", "--learning-rate", "1e-4"];
    let acc = bbc_fine_tune(&assets, "train.jsonl", "validation.jsonl", &schedule);
    eprintln!("BBC validation accuracy after one epoch: {acc}");
    assert!(acc >= 0.95, "accuracy {acc}");
}

/// `trainer/bench/run` end to end on 2 steps of the small subset, with the test's own binary
/// (no release build): the numbers of a test-profile binary mean nothing, but every row of the
/// table must come out as a finite positive number on both sides, so a broken side, a renamed
/// progress field or a changed torch_bench.py output fails here rather than in a benchmark run.
#[test]
fn benchmark_script_prints_the_table() {
    let Some(assets) = assets("benchmark_script_prints_the_table") else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let bbc = assets.join("bbc");
    let table = run_ok(
        Command::new(root.join("trainer").join("bench").join("run"))
            .arg("2")
            .env("ATTUNE_ASSETS", &assets)
            .env("ATTUNE_TRAINER_BIN", env!("CARGO_BIN_EXE_attune-trainer"))
            .env("BENCH_TRAIN", bbc.join("small-train.jsonl"))
            .env("BENCH_VALIDATION", bbc.join("small-validation.jsonl")),
    );
    eprintln!("{table}");
    assert!(table.starts_with("steps 2 "), "header:\n{table}");
    for metric in [
        "train samples/s",
        "inference samples/s",
        "peak RSS GiB",
        "model load s",
        "accuracy",
    ] {
        let row = table
            .lines()
            .find(|l| l.starts_with(&format!("| {metric} |")))
            .unwrap_or_else(|| panic!("no row {metric:?} in:\n{table}"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        for (side, cell) in [("attune", cells[2]), ("pytorch", cells[3])] {
            let v: f64 = cell
                .parse()
                .unwrap_or_else(|_| panic!("{metric} {side}: {cell:?} in {row:?}"));
            assert!(v.is_finite() && v > 0.0, "{metric} {side}: {v} in {row:?}");
        }
    }
}

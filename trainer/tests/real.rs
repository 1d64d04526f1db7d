//! Real-model tests against `transformers`, run when ATTUNE_ASSETS points at the folder
//! `tests/assets/setup` prepares (HF cache with all-MiniLM-L6-v2, BBC JSONL, reference hidden
//! states, a Python venv with torch + transformers). Without it each test prints a notice and
//! passes immediately, except under CI (`CI=true`), where it fails; a part missing from the
//! assets, or a missing `trainer/python` script, always fails, naming it.

use std::path::{Path, PathBuf};
use std::process::Command;

use attune_trainer::data::batch::collate;
use attune_trainer::data::{Encoded, TextTokenizer};
use attune_trainer::hub::resolve;
use attune_trainer::model::Classifier;
use attune_trainer::rng::TrainRng;
use candle_core::Device;

use crate::common::assets;

const MINILM: &str = "sentence-transformers/all-MiniLM-L6-v2";

fn python(assets: &Path) -> PathBuf {
    assets.join("venv").join("bin").join("python")
}

/// `trainer/python/<name>`; a missing script fails the test (it is part of the checkout).
fn script(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(name);
    assert!(
        p.is_file(),
        "{} is missing: the real-model tests run it",
        p.display()
    );
    p
}

/// The BBC subsets `tests/assets/setup` writes (`common::assets` has checked they exist).
fn bbc(assets: &Path) -> (PathBuf, PathBuf) {
    let dir = assets.join("bbc");
    (
        dir.join("small-train.jsonl"),
        dir.join("small-validation.jsonl"),
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

/// Our tokenizer and encoder against transformers' on `reference_hidden.py`'s texts (short to
/// over-long, so truncation at 128 and the `[SEP]` placement are compared too): the same token
/// ids, attention mask and token types, then, from our own batch, the same last hidden states.
#[test]
fn minilm_hidden_states_match_transformers() {
    let Some(assets) = assets("minilm_hidden_states_match_transformers") else {
        return;
    };
    let r = resolve(MINILM, "main", &assets.join("hf-cache")).unwrap();
    let reference: serde_json::Value = serde_json::from_slice(
        &std::fs::read(assets.join("reference").join("minilm_hidden.json")).unwrap(),
    )
    .unwrap();
    let rows =
        |key: &str| -> Vec<Vec<u32>> { serde_json::from_value(reference[key].clone()).unwrap() };
    let texts: Vec<String> = serde_json::from_value(reference["texts"].clone()).unwrap();
    let max_length = reference["max_length"].as_u64().unwrap() as usize;

    let tokenizer = TextTokenizer::from_file(&r.dir.join("tokenizer.json"), max_length, 0).unwrap();
    let encoded: Vec<Encoded> = texts
        .iter()
        .map(|t| {
            let (input_ids, token_type_ids) = tokenizer.encode(t, None).unwrap();
            Encoded {
                input_ids,
                token_type_ids,
                label: 0,
            }
        })
        .collect();
    let indices: Vec<usize> = (0..encoded.len()).collect();
    let batch = collate(&encoded, &indices, tokenizer.pad_id);
    let ours = |flat: &[u32]| -> Vec<Vec<u32>> {
        flat.chunks(batch.seq_len).map(<[u32]>::to_vec).collect()
    };
    let mask = rows("attention_mask");
    assert_eq!(
        ours(&batch.input_ids),
        rows("input_ids"),
        "token ids differ from transformers' for {texts:?}"
    );
    assert_eq!(ours(&batch.attention_mask), mask, "attention mask");
    assert_eq!(
        ours(&batch.token_type_ids),
        rows("token_type_ids"),
        "token types"
    );
    // The over-long text reaches the limit, so truncation was compared too.
    let lengths: Vec<usize> = mask
        .iter()
        .map(|m| m.iter().filter(|&&v| v == 1).count())
        .collect();
    assert_eq!(
        lengths.iter().max(),
        Some(&max_length),
        "lengths {lengths:?}"
    );

    let mut rng = TrainRng::new(0, 0);
    let model = Classifier::from_dir(&r.dir, 2, &mut rng, &Device::Cpu).unwrap();
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
    assert!(max < 1e-5, "max abs diff {max}");
}

#[test]
fn export_logits_match_transformers() {
    let Some(assets) = assets("export_logits_match_transformers") else {
        return;
    };
    let check = script("check_export.py");
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

/// Per-step series of a training run: loss, gradient norm before clipping, learning rate used.
#[derive(Debug, serde::Deserialize)]
struct Steps {
    losses: Vec<f64>,
    grad_norms: Vec<f64>,
    learning_rates: Vec<f64>,
}

/// Hyper-parameters of a run compared with PyTorch (batch 8 × ≤ 128 tokens, dropout off,
/// clipping at 1.0), and how closely it must track PyTorch: |loss gap| and relative gradient
/// norm gap at every step.
struct Schedule {
    steps: usize,
    learning_rate: f64,
    weight_decay: f64,
    warmup_steps: usize,
    loss_atol: f64,
    grad_norm_rtol: f64,
}

/// Our run of `schedule`, plus the batches it trained on and the model as initialised, head
/// included (what `torch_losses.py` replays).
fn train_dumped(assets: &Path, schedule: &Schedule, dir: &Path) -> Steps {
    let (train, validation) = bbc(assets);
    let stdout = run_ok(
        train_minilm(assets, &train, &validation, &dir.join("out"))
            .args(["--no-dropout", "--batch-size", "8", "--max-length", "128"])
            .args(["--max-grad-norm", "1.0"])
            .arg("--max-steps")
            .arg(schedule.steps.to_string())
            .arg("--warmup-steps")
            .arg(schedule.warmup_steps.to_string())
            .arg("--learning-rate")
            .arg(schedule.learning_rate.to_string())
            .arg("--weight-decay")
            .arg(schedule.weight_decay.to_string())
            .arg("--dump-batches")
            .arg(dir.join("batches.jsonl"))
            .arg("--export-init")
            .arg(dir.join("init")),
    );
    let steps: Vec<serde_json::Value> = events(&stdout)
        .into_iter()
        .filter(|v| v["event"] == "step")
        .collect();
    let field = |name: &str| -> Vec<f64> {
        steps
            .iter()
            .map(|v| {
                v[name]
                    .as_f64()
                    .unwrap_or_else(|| panic!("step event without {name}: {v}"))
            })
            .collect()
    };
    let ours = Steps {
        losses: field("loss"),
        grad_norms: field("gradNorm"),
        learning_rates: field("lr"),
    };
    assert_eq!(ours.losses.len(), schedule.steps, "{stdout}");
    ours
}

/// `torch_losses.py` on the batches and initial model `train_dumped` left in `dir`; with
/// `decay_all`, weight decay on biases and LayerNorm weights as well.
fn torch_steps(assets: &Path, schedule: &Schedule, dir: &Path, decay_all: bool) -> Steps {
    let tag = if decay_all { "decay-all" } else { "torch" };
    let config = dir.join(format!("{tag}-config.json"));
    std::fs::write(
        &config,
        serde_json::json!({"learning_rate": schedule.learning_rate,
            "weight_decay": schedule.weight_decay, "warmup_steps": schedule.warmup_steps,
            "total_steps": schedule.steps, "max_grad_norm": 1.0, "decay_all": decay_all})
        .to_string(),
    )
    .unwrap();
    let out = dir.join(format!("{tag}.json"));
    run_ok(
        Command::new(python(assets))
            .arg(script("torch_losses.py"))
            .arg("--init")
            .arg(dir.join("init"))
            .arg("--batches")
            .arg(dir.join("batches.jsonl"))
            .arg("--config")
            .arg(&config)
            .arg("--out")
            .arg(&out),
    );
    let theirs: Steps = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(theirs.losses.len(), schedule.steps, "torch steps");
    assert_eq!(theirs.grad_norms.len(), schedule.steps, "torch grad norms");
    assert_eq!(theirs.learning_rates.len(), schedule.steps, "torch lrs");
    theirs
}

/// Largest |ours - torch| of the losses; of the gradient norms, relative to torch's.
fn gaps(ours: &Steps, theirs: &Steps) -> (f64, f64) {
    let loss = ours
        .losses
        .iter()
        .zip(&theirs.losses)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    let norm = ours
        .grad_norms
        .iter()
        .zip(&theirs.grad_norms)
        .map(|(a, b)| (a - b).abs() / b.abs())
        .fold(0.0, f64::max);
    (loss, norm)
}

/// Ours tracks torch step by step: the same learning rate (to 1e-12), the gradient norm
/// before clipping and the loss within the schedule's tolerances.
fn assert_tracks(schedule: &Schedule, ours: &Steps, theirs: &Steps) {
    for i in 0..ours.losses.len() {
        eprintln!(
            "step {}: loss {:.9} / {:.9}, grad norm {:.7} / {:.7}, lr {:e} / {:e} (ours / torch)",
            i + 1,
            ours.losses[i],
            theirs.losses[i],
            ours.grad_norms[i],
            theirs.grad_norms[i],
            ours.learning_rates[i],
            theirs.learning_rates[i]
        );
    }
    for (i, (a, b)) in ours
        .learning_rates
        .iter()
        .zip(&theirs.learning_rates)
        .enumerate()
    {
        assert!(
            (a - b).abs() <= 1e-12 * b.abs(),
            "step {}: lr ours {a:e} torch {b:e}",
            i + 1
        );
    }
    let (loss, norm) = gaps(ours, theirs);
    eprintln!("max |loss gap| {loss:e}, max relative grad norm gap {norm:e}");
    let (loss_atol, grad_norm_rtol) = (schedule.loss_atol, schedule.grad_norm_rtol);
    assert!(
        loss <= loss_atol,
        "loss gap {loss:e} > {loss_atol:e}: {ours:?} vs {theirs:?}"
    );
    assert!(
        norm <= grad_norm_rtol,
        "grad norm gap {norm:e} > {grad_norm_rtol:e}: {ours:?} vs {theirs:?}"
    );
}

/// 6 steps at the defaults' scale (lr 5e-5 after 2 warmup steps, weight decay 0.01): losses,
/// gradient norms and learning rates track PyTorch's AdamW + linear schedule from the same
/// initial weights and batches. Measured: losses within 1.8e-7, gradient norms within 4.1e-6
/// relative (the first step's already differs by 2.6e-6: f32 sums over every gradient in
/// another order), learning rates equal.
#[test]
fn training_losses_track_pytorch() {
    let Some(assets) = assets("training_losses_track_pytorch") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let schedule = Schedule {
        steps: 6,
        learning_rate: 5e-5,
        weight_decay: 0.01,
        warmup_steps: 2,
        loss_atol: 1e-6,
        grad_norm_rtol: 1e-5,
    };
    let ours = train_dumped(&assets, &schedule, tmp.path());
    let theirs = torch_steps(&assets, &schedule, tmp.path(), false);
    assert_tracks(&schedule, &ours, &theirs);
}

/// Weight decay spares biases and LayerNorm weights: at lr 2e-3 and weight decay 1.0 decaying
/// them too (torch_losses.py's `decay_all`) moves PyTorch's losses by far more than the
/// tolerance (measured 3.2e-3), and ours track the run that spares them. At this learning rate
/// the small gradient differences grow faster than at 5e-5: measured losses within 2.8e-6,
/// gradient norms within 2.8e-5 relative.
#[test]
fn weight_decay_skips_biases_and_layer_norm_like_pytorch() {
    let Some(assets) = assets("weight_decay_skips_biases_and_layer_norm_like_pytorch") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let schedule = Schedule {
        steps: 4,
        learning_rate: 2e-3,
        weight_decay: 1.0,
        warmup_steps: 0,
        loss_atol: 1e-5,
        grad_norm_rtol: 1e-4,
    };
    let ours = train_dumped(&assets, &schedule, tmp.path());
    let theirs = torch_steps(&assets, &schedule, tmp.path(), false);
    let decay_all = torch_steps(&assets, &schedule, tmp.path(), true);
    let (visible, _) = gaps(&decay_all, &theirs);
    eprintln!("decaying biases and LayerNorm weights too moves the losses by up to {visible:e}");
    assert!(
        visible > 100.0 * schedule.loss_atol,
        "the run does not show the exclusion: {visible:e}"
    );
    assert_tracks(&schedule, &ours, &theirs);
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

/// `trainer/bench/run` end to end on 2 steps of the small subset, with the test's own binary
/// (no release build): the speeds of a test-profile binary mean nothing, but every row of the
/// table must come out as a finite positive number on both sides, so a broken side, a renamed
/// progress field or a changed torch_bench.py output fails here rather than in a benchmark run.
/// Accuracy must be above chance on both sides: the validation subset is 20 documents of each
/// of 5 topics, so a side that predicts one topic for everything (or no better than that)
/// scores 0.2 or less. Measured after the 2 steps: 0.32 ours, 0.29 PyTorch. (More steps cost
/// minutes here and prove no more: that fine-tuning learns is
/// `bbc_subset_fine_tune_reaches_85_percent`'s to check.)
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
            if metric == "accuracy" {
                assert!(v > 0.2, "{side}: accuracy {v} is not above chance (0.2)");
            }
        }
    }
}

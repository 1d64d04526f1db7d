//! Binary tests: the documented exit codes, JSON progress on stdout, `--config` files, predict
//! output, and training from a HuggingFace cache by model id.

use std::process::{Command, Output};

use crate::common::workspace;
use crate::hub::lay_out_cache;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_attune-trainer"))
}

/// Asserts the trainer exited with `code`, showing its stderr when it did not.
fn expect_exit(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn train_predict_export_and_exit_codes() {
    let ws = workspace("bert", 32);
    let cache = lay_out_cache(&ws.tmp.path().join("hub"), &ws.model);
    let out = ws.tmp.path().join("out");
    let config = ws.tmp.path().join("job.yaml");
    std::fs::write(
        &config,
        format!(
            "model:\n  id: org/tiny\n  revision: main\ndata:\n  trainFile: {}\n  validationFile: {}\n  maxLength: 16\ntraining:\n  epochs: 2\n  batchSize: 8\n  learningRate: 0.003\n  checkpointEvery: 2\noutputDir: {}\n",
            ws.train.display(),
            ws.validation.display(),
            out.display()
        ),
    )
    .unwrap();

    // Preemption drill: checkpoint, then exit 75.
    let o = bin()
        .args(["train", "--config"])
        .arg(&config)
        .arg("--cache")
        .arg(&cache)
        .args(["--stop-after-step", "3"])
        .output()
        .unwrap();
    expect_exit(&o, 75);

    // Resume to the end, finding the cache through HF_HOME (<HF_HOME>/hub) this time.
    let o = bin()
        .args(["train", "--config"])
        .arg(&config)
        .env_remove("HF_HUB_CACHE")
        .env("HF_HOME", ws.tmp.path())
        .output()
        .unwrap();
    expect_exit(&o, 0);
    let lines: Vec<serde_json::Value> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("stdout is JSON lines"))
        .collect();
    assert_eq!(lines[0]["event"], "start");
    assert_eq!(lines[0]["startStep"], 3);
    assert_eq!(lines.last().unwrap()["event"], "done");
    let model = out.join("model");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(model.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["provenance"]["baseModel"], "org/tiny");
    assert_eq!(
        manifest["provenance"]["resolvedRevision"],
        crate::hub::COMMIT
    );

    // fetch in offline mode (HF_HUB_OFFLINE=1) only verifies and prints the snapshot.
    let o = bin()
        .args(["fetch", "org/tiny"])
        .env("HF_HUB_CACHE", &cache)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    expect_exit(&o, 0);
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .trim()
            .ends_with(crate::hub::COMMIT)
    );

    // predict: label<TAB>score per line, logits JSON in input order.
    let texts = ws.tmp.path().join("texts.txt");
    std::fs::write(&texts, "good great film\nawful boring plot\n").unwrap();
    let logits = ws.tmp.path().join("logits.json");
    let o = bin()
        .args(["predict", "--model"])
        .arg(&model)
        .arg("--input")
        .arg(&texts)
        .arg("--logits-json")
        .arg(&logits)
        .output()
        .unwrap();
    expect_exit(&o, 0);
    let stdout = String::from_utf8(o.stdout).unwrap();
    let rows: Vec<&str> = stdout.lines().collect();
    assert_eq!(rows.len(), 2);
    assert!(
        rows[0].starts_with("pos\t") || rows[0].starts_with("neg\t"),
        "{stdout}"
    );
    let l: serde_json::Value = serde_json::from_slice(&std::fs::read(&logits).unwrap()).unwrap();
    assert_eq!(l["logits"].as_array().unwrap().len(), 2);
    assert_eq!(l["logits"][0].as_array().unwrap().len(), 2);

    // export subcommand.
    let o = bin()
        .args(["export", "--checkpoint"])
        .arg(out.join("checkpoints"))
        .arg("--output")
        .arg(ws.tmp.path().join("exp"))
        .output()
        .unwrap();
    expect_exit(&o, 0);

    // Bad data: exit 4 naming file and line.
    let bad = ws.tmp.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"text\":\"a\",\"label\":\"x\"}\n{\"text\":1\n").unwrap();
    let o = bin()
        .args(["train", "--model"])
        .arg(&ws.model)
        .arg("--train-file")
        .arg(&bad)
        .arg("--output-dir")
        .arg(ws.tmp.path().join("o2"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&o.stderr).contains("bad.jsonl:2"));

    // Missing model: exit 5. Bad config: exit 3.
    let o = bin()
        .args(["train", "--model", "org/absent", "--train-file"])
        .arg(&ws.train)
        .arg("--output-dir")
        .arg(ws.tmp.path().join("o3"))
        .arg("--cache")
        .arg(&cache)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(5));
    let o = bin()
        .args(["train", "--model"])
        .arg(&ws.model)
        .arg("--train-file")
        .arg(&ws.train)
        .arg("--output-dir")
        .arg(ws.tmp.path().join("o4"))
        .args(["--batch-size", "0"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
}

//! Binary tests: the documented exit codes, JSON progress on stdout, `--config` files, predict
//! output, and training from a HuggingFace cache by model id.

use std::path::Path;
use std::process::{Command, Output};

use attune_trainer::digest::sha256_file;

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

    // fetch in offline mode (HF_HUB_OFFLINE=1) only verifies and prints the snapshot folder
    // (its first line).
    let o = bin()
        .args(["fetch", "org/tiny"])
        .env("HF_HUB_CACHE", &cache)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    expect_exit(&o, 0);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout
            .lines()
            .next()
            .is_some_and(|l| l.ends_with(crate::hub::COMMIT)),
        "{stdout}"
    );

    // predict: label<TAB>score per line, logits JSON in input order. The label is the top
    // class of the row's logits (ids in the manifest's label order), the score its softmax
    // probability. (That training learns is training.rs's to check: 8 steps here do not.)
    let texts = ws.tmp.path().join("texts.txt");
    std::fs::write(&texts, "good great film\nawful boring plot\n").unwrap();
    let predict = |model: &Path, logits: &Path| -> String {
        let o = bin()
            .args(["predict", "--model"])
            .arg(model)
            .arg("--input")
            .arg(&texts)
            .arg("--logits-json")
            .arg(logits)
            .output()
            .unwrap();
        expect_exit(&o, 0);
        String::from_utf8(o.stdout).unwrap()
    };
    let logits = ws.tmp.path().join("logits.json");
    let stdout = predict(&model, &logits);
    let labels: Vec<String> = serde_json::from_value(manifest["labels"].clone()).unwrap();
    assert_eq!(labels, ["neg", "pos"], "labels sorted: {manifest}");
    let l: serde_json::Value = serde_json::from_slice(&std::fs::read(&logits).unwrap()).unwrap();
    let logits_rows: Vec<Vec<f64>> = serde_json::from_value(l["logits"].clone()).unwrap();
    assert_eq!(logits_rows.len(), 2, "{l}");
    let rows: Vec<(&str, f64)> = stdout
        .lines()
        .map(|line| {
            let (label, score) = line
                .split_once('\t')
                .unwrap_or_else(|| panic!("not label<TAB>score: {line:?}"));
            (label, score.parse().expect("a numeric score"))
        })
        .collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    for ((label, score), row) in rows.iter().zip(&logits_rows) {
        assert_eq!(row.len(), 2, "{l}");
        let top = if row[1] > row[0] { 1 } else { 0 };
        let sum: f64 = row.iter().map(|z| (z - row[top]).exp()).sum();
        assert_eq!(*label, labels[top], "{stdout} vs {row:?}");
        assert!(
            (score - 1.0 / sum).abs() < 1e-5,
            "score {score} is not the softmax of {row:?}"
        );
    }

    // export subcommand: the newest checkpoint (the last step's) as the same model: the same
    // files, with the digests its manifest records, the same weights and the same predictions.
    let exp = ws.tmp.path().join("exp");
    let o = bin()
        .args(["export", "--checkpoint"])
        .arg(out.join("checkpoints"))
        .arg("--output")
        .arg(&exp)
        .output()
        .unwrap();
    expect_exit(&o, 0);
    let listing = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        listing(&exp),
        [
            "config.json",
            "manifest.json",
            "model.safetensors",
            "tokenizer.json"
        ]
    );
    assert_eq!(listing(&exp), listing(&model));
    let exported: serde_json::Value =
        serde_json::from_slice(&std::fs::read(exp.join("manifest.json")).unwrap()).unwrap();
    let files = exported["files"].as_object().unwrap();
    assert_eq!(files.len(), 3, "{exported}");
    for (name, sha256) in files {
        assert_eq!(
            sha256.as_str().unwrap(),
            sha256_file(&exp.join(name)).unwrap(),
            "{name}"
        );
    }
    assert_eq!(exported["labels"], manifest["labels"]);
    assert_eq!(exported["provenance"], manifest["provenance"]);
    assert_eq!(
        std::fs::read(exp.join("model.safetensors")).unwrap(),
        std::fs::read(model.join("model.safetensors")).unwrap(),
        "export of the last checkpoint differs from the run's own export"
    );
    let exp_logits = ws.tmp.path().join("exp-logits.json");
    assert_eq!(predict(&exp, &exp_logits), stdout);
    assert_eq!(
        std::fs::read(&exp_logits).unwrap(),
        std::fs::read(&logits).unwrap()
    );

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
    expect_exit(&o, 4);
    assert!(String::from_utf8_lossy(&o.stderr).contains("bad.jsonl:2"));

    // Missing model: exit 5 naming the model. Bad config: exit 3 naming the setting.
    let o = bin()
        .args(["train", "--model", "org/absent", "--train-file"])
        .arg(&ws.train)
        .arg("--output-dir")
        .arg(ws.tmp.path().join("o3"))
        .arg("--cache")
        .arg(&cache)
        .output()
        .unwrap();
    expect_exit(&o, 5);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("model org/absent is not in the cache"),
        "{stderr}"
    );
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
    expect_exit(&o, 3);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("training.batchSize must be > 0"),
        "{stderr}"
    );
}

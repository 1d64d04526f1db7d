//! The termination message (`ATTUNE_TERMINATION_LOG`): a failure's `error:` line, train's done
//! event with the exported files' digests, fetch's report of every snapshot file, and the
//! 4096-byte limit Kubernetes puts on it.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use attune_trainer::digest::{FileDigest, sha256_file};
use attune_trainer::export::ExportedModel;
use attune_trainer::termination::{self, MAX_BYTES};
use attune_trainer::train::{EvalMetrics, Event};

use crate::common::workspace;
use crate::hub::{COMMIT, lay_out_cache};

/// Runs the trainer binary with `ATTUNE_TERMINATION_LOG` set to `log`.
fn run(args: &[impl AsRef<OsStr>], log: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_attune-trainer"))
        .args(args)
        .env(termination::ENV, log)
        .output()
        .unwrap()
}

/// Asserts the exit code, showing stderr when it differs.
fn assert_exit(o: &Output, code: i32) {
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(code), "{stderr}");
}

/// The `error:` line the trainer printed on stderr.
fn stderr_error_line(o: &Output) -> String {
    let stderr = String::from_utf8_lossy(&o.stderr);
    stderr
        .lines()
        .rfind(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line in {stderr}"))
        .to_string()
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Every file under `dir` (links followed) as `(relative path, sha256, size)`, sorted.
fn files_on_disk(dir: &Path) -> Vec<FileDigest> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                pending.push(p);
                continue;
            }
            files.push(FileDigest {
                path: p.strip_prefix(dir).unwrap().to_str().unwrap().to_string(),
                sha256: sha256_file(&p).unwrap(),
                size_bytes: std::fs::metadata(&p).unwrap().len(),
            });
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[test]
fn a_bad_row_is_reported_as_the_error_line_naming_file_and_line() {
    let ws = workspace("bert", 8);
    let bad = ws.tmp.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"text\":\"a\",\"label\":\"x\"}\n{\"text\":1\n").unwrap();
    let log = ws.tmp.path().join("termination-log");
    let out = ws.tmp.path().join("out");
    let args = [
        "train",
        "--model",
        ws.model.to_str().unwrap(),
        "--train-file",
        bad.to_str().unwrap(),
        "--output-dir",
        out.to_str().unwrap(),
    ];
    let o = run(&args, &log);
    assert_exit(&o, 4);
    let message = std::fs::read_to_string(&log).unwrap();
    assert_eq!(message, stderr_error_line(&o));
    assert!(message.starts_with("error: invalid data: "), "{message}");
    assert!(
        message.contains(&format!("{}:2", bad.display())),
        "{message}"
    );
    assert!(!message.contains('\n'), "{message}");

    // A log that cannot be written is a warning; the exit code stays the command's.
    let o = run(&args, &ws.tmp.path().join("absent/termination-log"));
    assert_exit(&o, 4);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cannot write the termination message"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn train_reports_the_done_event_with_the_exported_files() {
    let ws = workspace("bert", 32);
    let cache = lay_out_cache(&ws.tmp.path().join("hub"), &ws.model);
    let out = ws.tmp.path().join("out");
    let log = ws.tmp.path().join("termination-log");
    let args = |extra: &[&str]| -> Vec<String> {
        [
            "train",
            "--model",
            "org/tiny",
            "--cache",
            cache.to_str().unwrap(),
            "--train-file",
            ws.train.to_str().unwrap(),
            "--validation-file",
            ws.validation.to_str().unwrap(),
            "--output-dir",
            out.to_str().unwrap(),
            "--max-steps",
            "4",
            "--batch-size",
            "8",
            "--max-length",
            "16",
        ]
        .iter()
        .chain(extra)
        .map(|s| (*s).to_string())
        .collect()
    };

    // Preempted: the done event without a model.
    let o = run(&args(&["--stop-after-step", "2"]), &log);
    assert_exit(&o, 75);
    let done = read_json(&log);
    assert_eq!(done["event"], "done");
    assert_eq!(done["preempted"], true);
    assert!(
        done["model"].is_null() && done["exportDir"].is_null(),
        "{done}"
    );

    // Resumed to the end: the done event, as on stdout, with every exported file.
    let o = run(&args(&[]), &log);
    assert_exit(&o, 0);
    let message = std::fs::read_to_string(&log).unwrap();
    eprintln!(
        "termination message of a tiny export: {} bytes",
        message.len()
    );
    assert!(message.len() <= MAX_BYTES);
    let stdout = String::from_utf8(o.stdout).unwrap();
    assert_eq!(message, stdout.lines().last().unwrap());
    let done: serde_json::Value = serde_json::from_str(&message).unwrap();
    assert_eq!(done["event"], "done");
    assert_eq!(done["preempted"], false);
    assert!(done.get("omitted").is_none(), "{done}");
    let export_dir = PathBuf::from(done["exportDir"].as_str().unwrap());
    assert_eq!(export_dir, out.join("model"));
    let model: ExportedModel = serde_json::from_value(done["model"].clone()).unwrap();
    let on_disk = files_on_disk(&export_dir);
    assert!(on_disk.iter().any(|f| f.path == "manifest.json"));
    assert_eq!(model.files, on_disk);
    assert!(is_hex64(&model.dataset_digest), "{}", model.dataset_digest);
    let manifest = read_json(&export_dir.join("manifest.json"));
    assert_eq!(
        manifest["provenance"]["datasetDigest"],
        format!("sha256:{}", model.dataset_digest)
    );
    assert_eq!(model.base_model, "org/tiny");
    assert_eq!(model.revision.as_deref(), Some("main"));
    assert_eq!(model.resolved_revision.as_deref(), Some(COMMIT));
    assert_eq!(model.labels, ["neg", "pos"]);
}

#[test]
fn offline_fetch_reports_the_commit_and_every_file() {
    let ws = workspace("bert", 8);
    let cache = lay_out_cache(&ws.tmp.path().join("hub"), &ws.model);
    let log = ws.tmp.path().join("termination-log");
    let o = run(
        &[
            "fetch",
            "org/tiny",
            "--cache",
            cache.to_str().unwrap(),
            "--offline",
        ],
        &log,
    );
    assert_exit(&o, 0);
    let stdout = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let snapshot = PathBuf::from(lines[0]);
    assert!(
        snapshot.ends_with(format!("snapshots/{COMMIT}")),
        "{stdout}"
    );
    let report = read_json(&log);
    assert_eq!(
        report,
        serde_json::from_str::<serde_json::Value>(lines[1]).unwrap()
    );
    assert_eq!(report["event"], "fetched");
    assert_eq!(report["model"], "org/tiny");
    assert_eq!(report["revision"], "main");
    assert_eq!(report["resolvedRevision"], COMMIT);
    let files: Vec<FileDigest> = serde_json::from_value(report["files"].clone()).unwrap();
    // Git-stored files (verified by sha1) are reported by sha256 too.
    let on_disk = files_on_disk(&snapshot);
    assert_eq!(
        on_disk.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
        ["config.json", "model.safetensors", "tokenizer.json"]
    );
    assert_eq!(files, on_disk);
    let total: u64 = on_disk.iter().map(|f| f.size_bytes).sum();
    assert_eq!(report["sizeBytes"], total);
}

#[test]
fn a_long_message_is_cut_to_4096_bytes_of_valid_utf8() {
    let ws = workspace("bert", 8);
    let log = ws.tmp.path().join("termination-log");
    // An absent model whose 3-byte characters make the error about 12 KB.
    let model = "€".repeat(2000);
    let o = run(
        &[
            "train",
            "--model",
            &model,
            "--cache",
            ws.tmp.path().to_str().unwrap(),
            "--train-file",
            ws.train.to_str().unwrap(),
            "--output-dir",
            ws.tmp.path().join("out").to_str().unwrap(),
        ],
        &log,
    );
    assert_exit(&o, 5);
    let line = stderr_error_line(&o);
    assert!(line.len() > MAX_BYTES);
    let message = String::from_utf8(std::fs::read(&log).unwrap()).expect("valid UTF-8");
    assert!(message.len() <= MAX_BYTES && message.len() > MAX_BYTES - 4);
    assert!(line.starts_with(&message));
}

fn done_with_files(files: Vec<FileDigest>, labels: Vec<String>) -> Event {
    Event::Done {
        step: 1875,
        preempted: false,
        metrics: Some(EvalMetrics {
            loss: 0.123_456_789,
            accuracy: 0.961_234_5,
            macro_f1: 0.958_765_4,
            samples: 445,
        }),
        export_dir: Some("/output/model".into()),
        model: Some(ExportedModel {
            files,
            dataset_digest: "ab".repeat(32),
            base_model: "sentence-transformers/all-MiniLM-L6-v2".into(),
            revision: Some("main".into()),
            resolved_revision: Some("c9745ed1d9f207416be6d2e6f8de32d1f16199bf".into()),
            labels,
        }),
    }
}

fn file(path: &str, size_bytes: u64) -> FileDigest {
    FileDigest {
        path: path.into(),
        sha256: "0123456789abcdef".repeat(4),
        size_bytes,
    }
}

#[test]
fn a_typical_done_event_fits_and_a_long_one_drops_its_file_list() {
    // What a MiniLM export holds, with BBC's five labels.
    let typical = [
        ("config.json", 1_012),
        ("manifest.json", 1_405),
        ("model.safetensors", 90_880_036),
        ("special_tokens_map.json", 695),
        ("tokenizer.json", 711_396),
        ("tokenizer_config.json", 1_433),
        ("vocab.txt", 231_508),
        ("added_tokens.json", 2),
    ]
    .map(|(p, s)| file(p, s))
    .to_vec();
    let labels: Vec<String> = ["business", "entertainment", "politics", "sport", "tech"]
        .map(String::from)
        .to_vec();
    let event = done_with_files(typical, labels.clone());
    let message = termination::done_message(&event).unwrap();
    eprintln!(
        "termination message of a typical export: {} bytes",
        message.len()
    );
    assert_eq!(message, serde_json::to_string(&event).unwrap());
    assert!(message.len() <= MAX_BYTES);

    // 60 files do not fit: the file list goes, and `omitted` says so.
    let many = (0..60)
        .map(|i| file(&format!("shard-{i:03}.bin"), i))
        .collect();
    let message = termination::done_message(&done_with_files(many, labels)).unwrap();
    assert!(message.len() <= MAX_BYTES, "{}", message.len());
    let done: serde_json::Value = serde_json::from_str(&message).unwrap();
    assert_eq!(done["omitted"], serde_json::json!(["model.files"]));
    assert!(done["model"].get("files").is_none());
    assert_eq!(done["model"]["labels"][0], "business");
    assert_eq!(done["exportDir"], "/output/model");

    // Thousands of labels: the labels go too.
    let labels = (0..1000).map(|i| format!("label-{i}")).collect();
    let event = done_with_files(vec![file("config.json", 1)], labels);
    let message = termination::done_message(&event).unwrap();
    let done: serde_json::Value = serde_json::from_str(&message).unwrap();
    assert_eq!(
        done["omitted"],
        serde_json::json!(["model.files", "model.labels"])
    );
    assert!(message.len() <= MAX_BYTES);
}

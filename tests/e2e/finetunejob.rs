//! A FineTuneJob on a real API server: the frozen spec (a CEL transition rule) and the
//! printer columns of `kubectl get`.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::support::{TestNamespace, example};

/// Creates the minimal example in `ns` and returns its manifest (as applied) and name.
fn create_minimal_job(ns: &TestNamespace) -> (Value, String) {
    let job = example("finetunejob-minimal.yaml");
    ns.apply(&job).expect_success();
    let name = job["metadata"]["name"].as_str().expect("a name").to_owned();
    (job, name)
}

/// Merges `status` into the job's status through the status subresource, as the operator does.
fn patch_status(ns: &TestNamespace, name: &str, status: &Value) {
    let patch = json!({ "status": status }).to_string();
    ns.kubectl(&[
        "patch",
        "finetunejob",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch,
    ])
    .expect_success();
}

#[test]
fn spec_is_frozen_once_started_except_suspend() {
    let Some(ns) = TestNamespace::create("frozen") else {
        return;
    };
    let (job, name) = create_minimal_job(&ns);
    patch_status(
        &ns,
        &name,
        &json!({ "startTime": "2026-11-28T10:00:00Z", "phase": "Running" }),
    );

    let mut new_rate = job.clone();
    new_rate["spec"]["hyperparameters"] = json!({ "learningRate": 0.001 });
    let error = ns.apply(&new_rate).expect_failure();
    assert!(
        error.contains("spec is frozen"),
        "a learningRate change after start: expected 'spec is frozen', got:\n{error}"
    );

    let mut suspended = job;
    suspended["spec"]["runPolicy"] = json!({ "suspend": true });
    ns.apply(&suspended).expect_success();
    let stored = ns
        .get_json(&["finetunejob", &name])
        .expect("the job exists");
    assert_eq!(
        stored["spec"]["runPolicy"]["suspend"], true,
        "suspend was stored: {}",
        stored["spec"]
    );
    assert_eq!(
        stored["spec"]["hyperparameters"]["learningRate"], 2e-5,
        "learningRate kept: {}",
        stored["spec"]
    );
}

/// The rows of `kubectl get` output as column -> cell, cut at the header's column starts (so
/// empty cells stay empty).
fn table(output: &str) -> (Vec<String>, Vec<BTreeMap<String, String>>) {
    let mut lines = output.lines();
    let header = lines.next().unwrap_or_default();
    let bytes = header.as_bytes();
    let starts: Vec<usize> = (0..bytes.len())
        .filter(|&i| bytes[i] != b' ' && (i == 0 || bytes[i - 1] == b' '))
        .collect();
    let cell = |line: &str, n: usize| {
        let end = starts
            .get(n + 1)
            .map_or(line.len(), |&next| next.min(line.len()));
        line.get(starts[n].min(end)..end)
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    let columns: Vec<String> = (0..starts.len()).map(|n| cell(header, n)).collect();
    let rows = lines
        .map(|line| {
            columns
                .iter()
                .enumerate()
                .map(|(n, c)| (c.clone(), cell(line, n)))
                .collect()
        })
        .collect();
    (columns, rows)
}

/// The cells of `kubectl get finetunejob <name> [extra]` and its columns.
fn get_row(
    ns: &TestNamespace,
    name: &str,
    extra: &[&str],
) -> (Vec<String>, BTreeMap<String, String>) {
    let output = ns
        .kubectl(&[&["get", "finetunejob", name], extra].concat())
        .expect_success();
    let (columns, mut rows) = table(&output);
    assert_eq!(rows.len(), 1, "one row expected:\n{output}");
    (columns, rows.swap_remove(0))
}

fn cells<'a>(row: &'a BTreeMap<String, String>, columns: &[&str]) -> Vec<&'a str> {
    columns
        .iter()
        .map(|c| row.get(*c).map_or("<no column>", String::as_str))
        .collect()
}

#[test]
fn get_shows_the_printer_columns() {
    let Some(ns) = TestNamespace::create("columns") else {
        return;
    };
    let (job, name) = create_minimal_job(&ns);
    let model = job["spec"]["model"]["source"]
        .as_str()
        .expect("a model source");

    let (columns, row) = get_row(&ns, &name, &[]);
    assert_eq!(
        columns,
        ["NAME", "PHASE", "PROGRESS", "ACCURACY", "MODEL", "AGE"]
    );
    assert_eq!(
        cells(&row, &["NAME", "PHASE", "MODEL"]),
        [name.as_str(), "", model],
        "before any status"
    );

    patch_status(
        &ns,
        &name,
        &json!({
            "phase": "Running",
            "reason": "Resumed",
            "progress": { "percent": 42, "epoch": 1, "step": 420, "totalSteps": 1000 },
            "metrics": { "evalAccuracy": 0.9, "trainLoss": 0.25 },
            "attempts": 2,
        }),
    );
    let (_, row) = get_row(&ns, &name, &[]);
    assert_eq!(
        cells(&row, &["PHASE", "PROGRESS", "ACCURACY"]),
        ["Running", "42", "0.9"]
    );

    let (columns, row) = get_row(&ns, &name, &["-o", "wide"]);
    assert_eq!(
        columns,
        [
            "NAME", "PHASE", "PROGRESS", "ACCURACY", "MODEL", "AGE", "GPUS", "STEP", "LOSS",
            "ATTEMPTS", "REASON"
        ]
    );
    assert_eq!(
        cells(&row, &["GPUS", "STEP", "LOSS", "ATTEMPTS", "REASON"]),
        ["1", "420", "0.25", "2", "Resumed"]
    );
}

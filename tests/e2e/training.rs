//! FineTuneJobs run end to end by the operator (as a process) and the real trainer (through the
//! local runner): the base model fetched over HTTP from the harness's hub endpoint into the
//! cache, trained, exported and published.

use std::process::Command;

use serde_json::json;

use crate::support::{
    Operator, TRAINING_WAIT, TestNamespace, assert_published, claim_dir, intents_and_models, job,
    phase, repo_root, start_event, wait_for_job, wait_succeeded, workspace_binary,
};

#[test]
fn a_job_trains_and_publishes_its_model_with_provenance() {
    let Some(ns) = TestNamespace::create("train") else {
        return;
    };
    let operator = Operator::start(&ns);
    intents_and_models(&ns);
    ns.apply(&job("intents", "intents", 2, &json!({})))
        .expect_success();

    let done = wait_succeeded(&ns, &operator, "intents");
    // The cache entry: one, Ready, with the commit the hub resolved `main` to.
    let caches = operator.cached_models();
    assert_eq!(caches.len(), 1, "{caches:?}");
    let cache = &caches[0];
    assert_eq!(cache["status"]["phase"], "Ready", "{cache}");
    let commit = cache["status"]["resolvedRevision"]
        .as_str()
        .expect("commit");
    assert_eq!(commit.len(), 40, "{cache}");

    // The published record and the files it describes.
    let labels = json!(["book_flight", "check_weather", "play_music", "set_alarm"]);
    assert_published(&ns, &done, commit, &labels);
    let export = claim_dir(&ns, "models").join("intents/model");

    // The pod can be found by the job's label, and ran under the restricted profile.
    let pods = ns
        .get_json(&["pods", "-l", "attune.dev/job=intents,attune.dev/attempt=1"])
        .expect("pods");
    let pod = &pods["items"][0];
    assert_eq!(
        pod["spec"]["securityContext"]["runAsNonRoot"], true,
        "{pod}"
    );
    let container = &pod["spec"]["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );

    // The export loads in transformers and gives the logits of `attune-trainer predict`.
    let scratch = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(&ns.name);
    std::fs::create_dir_all(&scratch).expect("scratch");
    let texts = scratch.join("texts.txt");
    std::fs::write(
        &texts,
        "wake me up at 7\nwill it snow in oslo\nplay some jazz\n",
    )
    .expect("texts");
    let logits = scratch.join("logits.json");
    let predicted = Command::new(workspace_binary("attune-trainer"))
        .args([
            "predict",
            "--device",
            "cpu",
            "--max-length",
            "32",
            "--model",
        ])
        .arg(&export)
        .arg("--input")
        .arg(&texts)
        .arg("--logits-json")
        .arg(&logits)
        .output()
        .expect("attune-trainer predict");
    assert!(
        predicted.status.success(),
        "{}",
        String::from_utf8_lossy(&predicted.stderr)
    );
    let assets = std::env::var("ATTUNE_ASSETS").expect(
        "ATTUNE_ASSETS (from tests/assets/setup) names the PyTorch venv that checks the export",
    );
    let checked = Command::new(format!("{assets}/venv/bin/python"))
        .arg(repo_root().join("trainer/python/check_export.py"))
        .arg("--export")
        .arg(&export)
        .args(["--max-length", "32", "--atol", "1e-4", "--texts"])
        .arg(&texts)
        .arg("--logits")
        .arg(&logits)
        .output()
        .expect("check_export.py");
    assert!(
        checked.status.success(),
        "transformers disagrees with predict:\n{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // `kubectl get ftj` reads well.
    let table = ns.kubectl(&["get", "ftj", "intents"]).expect_success();
    assert!(
        table.contains("Succeeded") && table.contains("100"),
        "{table}"
    );
}

#[test]
fn a_killed_trainer_is_retried_and_resumes_from_its_checkpoint() {
    let Some(ns) = TestNamespace::create("resume") else {
        return;
    };
    let _operator = Operator::start(&ns);
    intents_and_models(&ns);
    let spec = json!({ "hyperparameters": { "batchSize": 4, "checkpointEverySteps": 4 } });
    ns.apply(&job("resume", "intents", 3, &spec))
        .expect_success();
    let checkpointed = wait_for_job(&ns, "resume", "a checkpoint", TRAINING_WAIT, |j| {
        j["status"]["lastCheckpoint"]["step"].as_u64().unwrap_or(0) >= 4 || phase(j) == "Failed"
    });
    let saved = checkpointed["status"]["lastCheckpoint"]["step"]
        .as_u64()
        .expect("a checkpoint step");
    // SIGKILL: no chance to checkpoint again, as when a node dies.
    let pattern = format!("volumes/{}/", ns.name);
    let killed = Command::new("pkill")
        .args(["-KILL", "-f", &pattern])
        .status()
        .expect("pkill");
    assert!(killed.success(), "no trainer process matched {pattern}");

    let done = wait_for_job(&ns, "resume", "the job to finish", TRAINING_WAIT, |j| {
        matches!(phase(j), "Succeeded" | "Failed")
    });
    assert_eq!(phase(&done), "Succeeded", "{}", done["status"]);
    assert_eq!(done["status"]["attempts"], 2, "{}", done["status"]);
    let pods = ns
        .get_json(&["pods", "-l", "attune.dev/job=resume,attune.dev/attempt=2"])
        .expect("attempt 2's pod");
    let start = start_event(&pods["items"][0]);
    assert!(start["resumedFrom"].is_string(), "{start}");
    let resumed = start["startStep"].as_u64().expect("startStep");
    assert!(
        resumed >= saved,
        "resumed at {resumed}, checkpointed {saved}: {start}"
    );
}

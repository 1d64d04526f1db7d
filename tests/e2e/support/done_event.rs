//! The `done` event a trainer writes as its termination message when it exported a model
//! (trainer/README.md), for pods that kwok simulates. Shared by the e2e tests and the
//! benchmarks under tests/bench (included there with `#[path]`), so it depends on serde_json
//! alone.

use serde_json::json;

/// The commit of all-MiniLM-L6-v2 the simulated trainers say they trained on.
pub const MINILM_COMMIT: &str = "35bcf39a18c158b204f1a5f62e8572d5f6a93a81";

/// The `done` event of job `name`'s trainer.
pub fn done_event(name: &str) -> String {
    json!({
        "event": "done", "step": 10, "preempted": false,
        "metrics": { "loss": 0.2, "accuracy": 0.9, "macroF1": 0.88, "samples": 12 },
        "exportDir": format!("/output/{name}/model"),
        "model": {
            "files": [{ "path": "model.safetensors", "sha256": "a".repeat(64), "sizeBytes": 1024 }],
            "datasetDigest": "b".repeat(64),
            "baseModel": "sentence-transformers/all-MiniLM-L6-v2", "revision": "main",
            "resolvedRevision": MINILM_COMMIT,
            "labels": ["book_flight", "check_weather", "play_music", "set_alarm"],
        },
    })
    .to_string()
}

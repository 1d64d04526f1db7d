//! `attune-trainer fetch` run as a pod on the local runner against the cluster's test Hub
//! (`tests/cluster/hub`), and the termination messages that carry a pod's result back.
//!
//! Each test writes its own repos into the hub's root (`ATTUNE_HUB_ROOT`), named after its
//! namespace, and reads the hub's per-request counts (`/_attune/stats`) to see what was
//! downloaded.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{TestNamespace, pod, workspace_binary};

/// The files the trainer's `fetch` downloads from the tiny repo (its allow-list holds them);
/// `README.md` is in the repo too and must never be downloaded.
const FETCHED: &[&str] = &[
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "vocab.txt",
];

// ---- the hub ------------------------------------------------------------------------------

/// The cluster's test hub: its endpoint and the folder its repos live in.
struct Hub {
    endpoint: String,
    root: PathBuf,
}

impl Hub {
    fn of(ns: &TestNamespace) -> Self {
        Self {
            endpoint: ns.cluster.setting("ATTUNE_HUB_ENDPOINT"),
            root: PathBuf::from(ns.cluster.setting("ATTUNE_HUB_ROOT")),
        }
    }

    /// `GET path` (with `Authorization: Bearer token` when given): the status and body.
    fn get(&self, path: &str, token: Option<&str>) -> (u16, String) {
        let host = self
            .endpoint
            .strip_prefix("http://")
            .unwrap_or_else(|| panic!("hub endpoint {} is not http://", self.endpoint));
        let mut stream = TcpStream::connect(host)
            .unwrap_or_else(|e| panic!("cannot reach the hub at {}: {e}", self.endpoint));
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("read timeout");
        let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
        write!(
            stream,
            "GET {path} HTTP/1.0\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n"
        )
        .and_then(|()| stream.flush())
        .unwrap_or_else(|e| panic!("GET {path} from the hub: {e}"));
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .unwrap_or_else(|e| panic!("GET {path} from the hub: {e}"));
        let (head, body) = response
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("GET {path}: no header end in {response:?}"));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("GET {path}: bad status line in {head:?}"));
        (status, body.to_owned())
    }

    /// The commit `main` of `repo` resolves to.
    fn commit(&self, repo: &str, token: Option<&str>) -> String {
        let path = format!("/api/models/{repo}/revision/main");
        let (status, body) = self.get(&path, token);
        assert_eq!(status, 200, "GET {path}: {body}");
        let info: Value = serde_json::from_str(&body).expect("repo info JSON");
        info["sha"]
            .as_str()
            .expect("repo info has a sha")
            .to_owned()
    }

    /// The hub's request counts for the files of `repo`: `<METHOD> <path>` of its resolve and
    /// LFS requests → how many there were.
    fn file_requests(&self, repo: &str) -> BTreeMap<String, u64> {
        let (status, body) = self.get("/_attune/stats", None);
        assert_eq!(status, 200, "GET /_attune/stats: {body}");
        let stats: BTreeMap<String, u64> = serde_json::from_str(&body).expect("stats JSON");
        let resolve = format!(" /{repo}/resolve/");
        let lfs = format!(" /_attune/lfs/{repo}/");
        stats
            .into_iter()
            .filter(|(key, _)| key.contains(&resolve) || key.contains(&lfs))
            .collect()
    }
}

/// A repo in the hub's root, removed at the end of the test.
struct TestRepo {
    id: String,
    dir: PathBuf,
}

impl TestRepo {
    /// The tiny model repo `e2e/<namespace>-<suffix>` with `settings` as its `.hub.json`.
    fn tiny(hub: &Hub, ns: &TestNamespace, suffix: &str, settings: Option<Value>) -> Self {
        let id = format!("e2e/{}-{suffix}", ns.name);
        let dir = hub.root.join(&id);
        // written beside it under a hidden name, then renamed: the hub never sees half a repo
        let tmp = hub
            .root
            .join("e2e")
            .join(format!(".{}-{suffix}.tmp", ns.name));
        std::fs::create_dir_all(&tmp).unwrap_or_else(|e| panic!("{}: {e}", tmp.display()));
        let mut files = tiny_model_files();
        if let Some(settings) = settings {
            files.push((".hub.json", settings.to_string().into_bytes()));
        }
        for (name, content) in files {
            let path = tmp.join(name);
            std::fs::write(&path, content).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
        std::fs::rename(&tmp, &dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        Self { id, dir }
    }
}

impl Drop for TestRepo {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("cleanup: {}: {e}", self.dir.display());
        }
    }
}

/// A tiny BERT model as a Hub repo holds it: config, weights (an LFS file), a word-level
/// tokenizer and its vocab, and a README that `fetch` leaves alone.
fn tiny_model_files() -> Vec<(&'static str, Vec<u8>)> {
    let vocab = [
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "good", "bad", "the", "movie",
    ];
    let config = json!({
        "model_type": "bert", "architectures": ["BertModel"], "vocab_size": vocab.len(),
        "hidden_size": 4, "num_hidden_layers": 1, "num_attention_heads": 1,
        "intermediate_size": 8, "max_position_embeddings": 16, "type_vocab_size": 2,
        "layer_norm_eps": 1e-12, "hidden_act": "gelu", "pad_token_id": 0
    });
    let tokenizer = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": {"type": "Lowercase"}, "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null, "decoder": null,
        "model": {
            "type": "WordLevel", "unk_token": "[UNK]",
            "vocab": vocab.iter().enumerate().map(|(i, w)| ((*w).to_owned(), json!(i)))
                .collect::<serde_json::Map<_, _>>()
        }
    });
    // safetensors: a little-endian u64 header length, the JSON header (padded with spaces to
    // a multiple of 8), then the data: one 2×2 f32 tensor
    let mut header =
        json!({"embeddings.word_embeddings.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}})
            .to_string();
    while !header.len().is_multiple_of(8) {
        header.push(' ');
    }
    let mut weights = (header.len() as u64).to_le_bytes().to_vec();
    weights.extend_from_slice(header.as_bytes());
    for x in [0.5f32, -0.25, 1.0, 2.0] {
        weights.extend_from_slice(&x.to_le_bytes());
    }
    vec![
        ("config.json", config.to_string().into_bytes()),
        ("model.safetensors", weights),
        ("tokenizer.json", tokenizer.to_string().into_bytes()),
        ("vocab.txt", format!("{}\n", vocab.join("\n")).into_bytes()),
        (
            "README.md",
            b"# tiny\nA test repo of tests/e2e/hub.rs.\n".to_vec(),
        ),
    ]
}

// ---- pods ---------------------------------------------------------------------------------

/// The spec of a pod that runs `containers` on the local runner.
fn runner_spec(containers: Value, extra: Value) -> Value {
    let mut spec = json!({
        "restartPolicy": "Never",
        "nodeSelector": { "attune.dev/local-runner": "true" },
        "tolerations": [{ "key": "attune.dev/local-runner", "operator": "Exists", "effect": "NoSchedule" }],
        "containers": containers,
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    spec
}

/// Waits until pod `name` has finished, and returns it.
fn finished(ns: &TestNamespace, name: &str) -> Value {
    ns.wait_for(&["pod", name], "the pod to finish", |p| {
        matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
    })
}

fn terminated(pod: &Value, container: usize) -> &Value {
    &pod["status"]["containerStatuses"][container]["state"]["terminated"]
}

/// The terminated message of the pod's first container.
fn message(pod: &Value) -> &str {
    terminated(pod, 0)["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no terminated message: {}", pod["status"]))
}

/// What container `container` printed, from the runner's log file.
fn output(pod: &Value, container: &str) -> String {
    let dir = pod["metadata"]["annotations"]["attune.dev/local-runner-dir"]
        .as_str()
        .unwrap_or_else(|| panic!("no attune.dev/local-runner-dir: {}", pod["metadata"]));
    let log = Path::new(dir).join(format!("{container}.log"));
    std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()))
}

/// The PersistentVolumeClaim `hub-cache` the fetch pods of a test share.
fn create_cache(ns: &TestNamespace) {
    let claim = json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": { "name": "hub-cache" },
        "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "1Gi" } } },
    });
    ns.apply(&claim).expect_success();
}

/// Runs `attune-trainer fetch <repo>` in pod `name` with the hub as HF_ENDPOINT, the cache on
/// the claim `hub-cache`, the termination message at /dev/termination-log (falling back to the
/// log's tail on failure) and `token` (an env entry for HF_TOKEN, else none), and returns the
/// finished pod.
fn fetch(ns: &TestNamespace, hub: &Hub, name: &str, repo: &str, token: Value) -> Value {
    let trainer = workspace_binary("attune-trainer").display().to_string();
    let mut env = vec![
        json!({ "name": "HF_ENDPOINT", "value": hub.endpoint }),
        // nothing from the runner's own environment or home: no offline mode, no stored token
        json!({ "name": "HF_HOME", "value": "/cache/home" }),
        json!({ "name": "HF_HUB_OFFLINE", "value": "0" }),
        json!({ "name": "HF_TOKEN_PATH", "value": "/cache/home/no-token" }),
        json!({ "name": "ATTUNE_TERMINATION_LOG", "value": "/dev/termination-log" }),
    ];
    env.push(if token.is_null() {
        json!({ "name": "HF_TOKEN", "value": "" })
    } else {
        token
    });
    let container = json!({
        "name": "fetch", "image": "attune-e2e/local",
        "command": [trainer, "fetch", repo, "--cache", "/cache/hub"],
        "env": env,
        "volumeMounts": [{ "name": "cache", "mountPath": "/cache" }],
        "terminationMessagePolicy": "FallbackToLogsOnError",
    });
    let volumes = json!({ "volumes": [{ "name": "cache", "persistentVolumeClaim": { "claimName": "hub-cache" } }] });
    ns.apply(&pod(name, runner_spec(json!([container]), volumes)))
        .expect_success();
    finished(ns, name)
}

/// Asserts the fetch pod failed and returns its termination message, lower-cased.
fn failure_message(pod: &Value) -> String {
    assert_eq!(
        pod["status"]["phase"], "Failed",
        "status: {}",
        pod["status"]
    );
    let code = terminated(pod, 0)["exitCode"].as_i64().unwrap_or_default();
    assert_ne!(code, 0, "status: {}", pod["status"]);
    message(pod).to_lowercase()
}

/// Asserts the fetch pod succeeded with the snapshot of `commit`.
fn assert_fetched(pod: &Value, commit: &str) {
    assert_eq!(
        pod["status"]["phase"],
        "Succeeded",
        "status: {}\noutput:\n{}",
        pod["status"],
        output(pod, "fetch")
    );
    assert_eq!(terminated(pod, 0)["exitCode"], 0);
    let printed = output(pod, "fetch");
    assert!(
        printed
            .lines()
            .any(|l| l.trim_end().ends_with(&format!("snapshots/{commit}"))),
        "fetch printed no snapshots/{commit} path:\n{printed}"
    );
    // Once the trainer writes its result there, the message is a JSON line naming the commit.
    let message = message(pod);
    if let Ok(result) = serde_json::from_str::<Value>(message.trim()) {
        assert_eq!(result["resolvedRevision"], commit, "message: {message}");
    }
}

// ---- fetch --------------------------------------------------------------------------------

#[test]
fn fetch_downloads_each_file_once_and_a_second_fetch_nothing() {
    let Some(ns) = TestNamespace::create("hub-fetch") else {
        return;
    };
    let hub = Hub::of(&ns);
    let repo = TestRepo::tiny(&hub, &ns, "tiny", None);
    let commit = hub.commit(&repo.id, None);
    create_cache(&ns);

    let first = fetch(&ns, &hub, "fetch-1", &repo.id, Value::Null);
    assert_fetched(&first, &commit);
    let requests = hub.file_requests(&repo.id);
    for file in FETCHED {
        let get = format!("GET /{}/resolve/{commit}/{file}", repo.id);
        assert_eq!(
            requests.get(&get),
            Some(&1),
            "{get}; requests: {requests:#?}"
        );
    }
    let lfs: u64 = requests
        .iter()
        .filter(|(k, _)| k.starts_with("GET /_attune/lfs/"))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        lfs, 1,
        "the weights' LFS object once; requests: {requests:#?}"
    );
    assert!(
        !requests.keys().any(|k| k.ends_with("/README.md")),
        "README.md is not on fetch's list; requests: {requests:#?}"
    );

    let second = fetch(&ns, &hub, "fetch-2", &repo.id, Value::Null);
    assert_fetched(&second, &commit);
    assert_eq!(
        hub.file_requests(&repo.id),
        requests,
        "a second fetch into the same cache requests no file"
    );
}

#[test]
fn fetch_of_an_unknown_repo_fails_naming_it() {
    let Some(ns) = TestNamespace::create("hub-unknown") else {
        return;
    };
    let hub = Hub::of(&ns);
    create_cache(&ns);
    let repo = format!("e2e/{}-missing", ns.name);
    let pod = fetch(&ns, &hub, "fetch-missing", &repo, Value::Null);
    let message = failure_message(&pod);
    assert!(
        message.contains(&repo) && (message.contains("not found") || message.contains("404")),
        "message: {message}"
    );
}

#[test]
fn gated_repo_needs_its_token() {
    let Some(ns) = TestNamespace::create("hub-gated") else {
        return;
    };
    let hub = Hub::of(&ns);
    let repo = TestRepo::tiny(
        &hub,
        &ns,
        "gated",
        Some(json!({ "token": "hf_e2e_secret" })),
    );
    let commit = hub.commit(&repo.id, Some("hf_e2e_secret"));
    create_cache(&ns);
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "hf" },
        "stringData": { "token": "hf_e2e_secret", "wrong": "hf_e2e_wrong" },
    });
    ns.apply(&secret).expect_success();
    let token_from = |key: &str| json!({ "name": "HF_TOKEN", "valueFrom": { "secretKeyRef": { "name": "hf", "key": key } } });

    let anonymous = failure_message(&fetch(&ns, &hub, "no-token", &repo.id, Value::Null));
    assert!(
        anonymous.contains("401") || anonymous.contains("auth"),
        "message: {anonymous}"
    );
    let wrong = failure_message(&fetch(
        &ns,
        &hub,
        "wrong-token",
        &repo.id,
        token_from("wrong"),
    ));
    assert!(
        wrong.contains("403") || wrong.contains("forbidden"),
        "message: {wrong}"
    );
    let granted = fetch(&ns, &hub, "token", &repo.id, token_from("token"));
    assert_fetched(&granted, &commit);
}

#[test]
fn corrupted_download_fails_the_hash_check() {
    let Some(ns) = TestNamespace::create("hub-corrupt") else {
        return;
    };
    let hub = Hub::of(&ns);
    let settings = json!({ "corrupt": ["model.safetensors"] });
    let repo = TestRepo::tiny(&hub, &ns, "corrupt", Some(settings));
    create_cache(&ns);
    let message = failure_message(&fetch(&ns, &hub, "fetch-corrupt", &repo.id, Value::Null));
    assert!(
        message.contains("model.safetensors") && message.contains("does not match"),
        "message: {message}"
    );
}

// ---- termination messages (the local runner, as the kubelet) -----------------------------

/// A container that runs `script` with `sh -c`, with `extra` fields.
fn sh(name: &str, script: &str, extra: Value) -> Value {
    let mut c =
        json!({ "name": name, "image": "attune-e2e/local", "command": ["sh", "-c", script] });
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        c.extend(extra.clone());
    }
    c
}

#[test]
fn termination_message_file_reaches_the_container_status() {
    let Some(ns) = TestNamespace::create("runner-message") else {
        return;
    };
    // the default path, named through an env value; the message is the file, not the log
    let env =
        json!({ "env": [{ "name": "ATTUNE_TERMINATION_LOG", "value": "/dev/termination-log" }] });
    let failing = sh(
        "main",
        "echo noise; printf 'fetch failed:\\nrepo not found' > \"$ATTUNE_TERMINATION_LOG\"; exit 3",
        env,
    );
    // a path of its own; of two containers, the failing one's message wins
    let custom = json!({ "terminationMessagePath": "/attune/result" });
    let ok = sh("ok", "echo all good > /attune/result", custom.clone());
    let bad = sh(
        "bad",
        "echo bad news > /dev/termination-log; exit 2",
        json!({}),
    );
    let pods = [
        ("file", json!([failing])),
        ("first-failing", json!([ok.clone(), bad])),
        ("success", json!([ok])),
    ];
    for (name, containers) in &pods {
        ns.apply(&pod(name, runner_spec(containers.clone(), json!({}))))
            .expect_success();
    }

    let file = finished(&ns, "file");
    assert_eq!(
        file["status"]["phase"], "Failed",
        "status: {}",
        file["status"]
    );
    assert_eq!(terminated(&file, 0)["exitCode"], 3);
    assert_eq!(message(&file), "fetch failed:\nrepo not found");

    let first_failing = finished(&ns, "first-failing");
    assert_eq!(terminated(&first_failing, 0)["exitCode"], 2);
    assert_eq!(message(&first_failing), "bad news\n");

    let success = finished(&ns, "success");
    assert_eq!(success["status"]["phase"], "Succeeded");
    assert_eq!(message(&success), "all good\n");
}

#[test]
fn fallback_to_logs_on_error_uses_the_log_tail() {
    let Some(ns) = TestNamespace::create("runner-fallback") else {
        return;
    };
    let fallback = json!({ "terminationMessagePolicy": "FallbackToLogsOnError" });
    // 100 short lines: the last 80; 100 lines of 101 bytes: the last 2048 bytes of the last 80
    let short = "for i in $(seq 1 100); do echo \"line $i\"; done; exit 4";
    let long = "for i in $(seq 1 100); do printf '%03d%097d\\n' $i 0; done; exit 4";
    let pods = [
        ("short-lines", sh("main", short, fallback.clone())),
        ("long-lines", sh("main", long, fallback.clone())),
        ("file-policy", sh("main", short, json!({}))),
        ("fallback-success", sh("main", "echo fine", fallback)),
    ];
    for (name, container) in &pods {
        ns.apply(&pod(name, runner_spec(json!([container]), json!({}))))
            .expect_success();
    }

    let short_lines: String = (21..=100).map(|i| format!("line {i}\n")).collect();
    assert_eq!(message(&finished(&ns, "short-lines")), short_lines);

    let all: String = (1..=100).map(|i| format!("{i:03}{:097}\n", 0)).collect();
    let last_80: String = all.lines().skip(20).map(|l| format!("{l}\n")).collect();
    let long_lines = finished(&ns, "long-lines");
    let long_lines = message(&long_lines);
    assert_eq!(long_lines.len(), 2048);
    assert_eq!(long_lines, &last_80[last_80.len() - 2048..]);

    // the default policy (File) and an empty file: no log, the runner's own words
    assert_eq!(
        message(&finished(&ns, "file-policy")),
        "container main exited with 4"
    );
    // the logs only on error
    let success = finished(&ns, "fallback-success");
    assert_eq!(success["status"]["phase"], "Succeeded");
    assert!(!message(&success).contains("fine"), "{}", success["status"]);
}

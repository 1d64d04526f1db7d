//! `attune-operator` as a process against the test cluster, confined to one test's namespace
//! (config `watchNamespaces`, and `instance` for its CachedModels), with its trainer and fetch
//! pods placed on the local runner, which really runs them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::binaries::workspace_binary;
use super::cluster::Cluster;
use super::http::request;
use super::namespace::TestNamespace;

/// A running operator (killed on drop, with the CachedModels of its installation).
#[derive(Debug)]
pub struct Operator {
    /// Its folder: `config.yaml`, `operator.log`, `cache/` (the model cache: the hostPath of
    /// the PersistentVolume behind each namespace's model-cache claim).
    pub dir: PathBuf,
    config: Value,
    cluster: &'static Cluster,
    child: Option<Child>,
    /// `127.0.0.1:PORT` of the progress endpoint.
    pub progress: String,
    /// `127.0.0.1:PORT` of metrics and probes.
    pub metrics: String,
}

/// A free port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Operator {
    /// The configuration a test operator in `ns` runs with; `edit` may change it.
    pub fn config_for(ns: &TestNamespace, dir: &Path) -> Value {
        let progress = format!("127.0.0.1:{}", free_port());
        let metrics = format!("127.0.0.1:{}", free_port());
        json!({
            "instance": ns.name,
            "namespace": ns.name,
            "watchNamespaces": [ns.name],
            "trainer": {
                "image": "attune-e2e/local",
                "command": [workspace_binary("attune-trainer")],
                "gpuDevice": "auto",
                "terminationGracePeriodSeconds": 30,
                "podDefaults": {
                    "nodeSelector": { "attune.dev/local-runner": "true" },
                    "tolerations": [{ "key": "attune.dev/local-runner", "operator": "Exists", "effect": "NoSchedule" }],
                },
            },
            // A claim per namespace, which "restricted" admits (a hostPath volume it does not).
            "modelCache": { "persistentVolume": {
                "hostPath": { "path": dir.join("cache"), "type": "DirectoryOrCreate" },
                "capacity": { "storage": "1Gi" },
            } },
            "hub": { "endpoint": ns.cluster.setting("ATTUNE_HUB_ENDPOINT") },
            "progress": { "url": format!("http://{progress}"), "listen": progress, "statusIntervalSeconds": 2 },
            "metrics": { "listen": metrics },
            "leaderElection": { "leaseDurationSeconds": 6, "renewGraceSeconds": 2 },
        })
    }

    /// Starts an operator for `ns` with the default test configuration.
    pub fn start(ns: &TestNamespace) -> Self {
        Self::start_with(ns, |_| {})
    }

    /// Starts an operator for `ns` with the test configuration changed by `edit`, and waits
    /// until it leads.
    pub fn start_with(ns: &TestNamespace, edit: impl FnOnce(&mut Value)) -> Self {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("operators")
            .join(&ns.name);
        std::fs::create_dir_all(dir.join("cache")).expect("the operator's folder");
        let mut config = Self::config_for(ns, &dir);
        edit(&mut config);
        let address = |key: &str| {
            config[key]["listen"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        let mut operator = Self {
            progress: address("progress"),
            metrics: address("metrics"),
            dir,
            config,
            cluster: ns.cluster,
            child: None,
        };
        operator.spawn();
        operator.wait_ready();
        operator
    }

    /// A second replica with the same configuration but its own ports (leader election
    /// decides which one acts); not waited for.
    pub fn replica(&self) -> Self {
        let mut config = self.config.clone();
        let progress = format!("127.0.0.1:{}", free_port());
        let metrics = format!("127.0.0.1:{}", free_port());
        config["progress"]["listen"] = progress.clone().into();
        config["metrics"]["listen"] = metrics.clone().into();
        let mut replica = Self {
            dir: self.dir.join("replica"),
            config,
            cluster: self.cluster,
            child: None,
            progress,
            metrics,
        };
        std::fs::create_dir_all(&replica.dir).expect("the replica's folder");
        replica.spawn();
        replica
    }

    fn spawn(&mut self) {
        let config_file = self.dir.join("config.yaml");
        std::fs::write(&config_file, self.config.to_string()).expect("writing the config");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("operator.log"))
            .expect("the operator log");
        let child = Command::new(workspace_binary("attune-operator"))
            .arg("--config")
            .arg(&config_file)
            .arg("--log-format=text")
            .env("KUBECONFIG", self.cluster.kubeconfig())
            .env("RUST_LOG", "info,attune_operator=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("starting attune-operator");
        self.child = Some(child);
    }

    /// Whether `/readyz` answers 200 (the replica leads).
    pub fn ready(&self) -> bool {
        request(&self.metrics, "GET", "/readyz", &[], "").is_ok_and(|(status, _)| status == 200)
    }

    /// Waits until the operator leads, failing the test with its log after a minute.
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.ready() {
            assert!(
                Instant::now() < deadline,
                "the operator did not become ready in 60 s; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGKILLs the process (no clean-up, no Lease release).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills and starts the process again, and waits until it leads.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
        self.wait_ready();
    }

    /// The process's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("operator.log")).unwrap_or_default()
    }

    /// The label selector of this installation's CachedModels and model-cache volumes (config
    /// `instance`).
    fn instance_selector(&self) -> String {
        format!(
            "attune.dev/instance={}",
            self.config["instance"].as_str().unwrap_or_default()
        )
    }

    /// The CachedModels of this installation.
    pub fn cached_models(&self) -> Vec<Value> {
        self.cluster
            .get_json(&["cachedmodels", "-l", &self.instance_selector()])
            .and_then(|list| list["items"].as_array().cloned())
            .unwrap_or_default()
    }

    /// `/metrics` as text.
    pub fn metrics_text(&self) -> String {
        request(&self.metrics, "GET", "/metrics", &[], "")
            .map(|(_, body)| body)
            .unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
        // Cluster-scoped, so not deleted with the test's namespace.
        let instance = self.instance_selector();
        for kind in ["cachedmodels", "persistentvolumes"] {
            if let Err(error) = self
                .cluster
                .kubectl(&["delete", kind, "-l", &instance, "--wait=false"])
                .into_result()
            {
                eprintln!("cleanup: {error}");
            }
        }
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!(
                "--- last lines of {}:\n{}",
                self.dir.join("operator.log").display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

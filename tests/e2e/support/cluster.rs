//! The test cluster, found through `ATTUNE_KUBECONFIG` and driven with its own kubectl.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::crds::ensure_crds_installed;

/// How long a test waits for the cluster to reach a state before it fails.
pub const WAIT: Duration = Duration::from_secs(60);

/// The cluster of this test run.
#[derive(Debug)]
pub struct Cluster {
    kubectl: PathBuf,
    kubeconfig: PathBuf,
    cache_dir: PathBuf,
}

/// The cluster with the CRDs of `crds/` installed and Established, or `None` (the test is
/// skipped) when no cluster is configured outside CI.
pub fn cluster_with_crds() -> Option<&'static Cluster> {
    static CLUSTER: OnceLock<Option<Cluster>> = OnceLock::new();
    let cluster = CLUSTER.get_or_init(Cluster::from_env).as_ref()?;
    ensure_crds_installed(cluster);
    Some(cluster)
}

impl Cluster {
    fn from_env() -> Option<Self> {
        let Some(kubeconfig) = std::env::var_os("ATTUNE_KUBECONFIG").filter(|v| !v.is_empty())
        else {
            assert!(
                !running_in_ci(),
                "CI is set but ATTUNE_KUBECONFIG is not: CI must run the cluster tests \
                 (tests/run brings the cluster up and sets it)"
            );
            // Straight to stderr, past the test harness's output capture, so that it shows.
            let _ = writeln!(
                std::io::stderr(),
                "attune-e2e: skipped: no cluster (set ATTUNE_KUBECONFIG, see tests/cluster/README.md)"
            );
            return None;
        };
        let kubeconfig = PathBuf::from(kubeconfig);
        Some(Self {
            kubectl: kubectl_next_to(&kubeconfig),
            kubeconfig,
            cache_dir: PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kubectl-cache"),
        })
    }

    /// A setting of the cluster's `cluster.env` (e.g. `ATTUNE_HUB_ENDPOINT`), overridden by the
    /// environment variable of that name.
    pub fn setting(&self, name: &str) -> String {
        cluster_setting(&self.kubeconfig, name)
    }

    /// The admin kubeconfig of the cluster.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Runs kubectl with `args`.
    pub fn kubectl(&self, args: &[&str]) -> Run {
        self.kubectl_with_input(args, None)
    }

    /// Runs kubectl with `args`, feeding `input` (a manifest for `-f -`) on stdin.
    pub fn kubectl_with_input(&self, args: &[&str], input: Option<&str>) -> Run {
        let mut kubectl = Command::new(&self.kubectl);
        kubectl
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache_dir)
            .arg("--request-timeout=30s")
            .args(args);
        run(kubectl, format!("kubectl {}", args.join(" ")), input)
    }

    /// `kubectl get <target> -o json`, parsed; `None` while the object does not exist.
    pub fn get_json(&self, target: &[&str]) -> Option<Value> {
        let run = self.kubectl(&[&["get", "-o", "json"], target].concat());
        run.success.then(|| {
            serde_json::from_str(&run.stdout)
                .unwrap_or_else(|e| panic!("`{}`: bad JSON ({e})", run.command))
        })
    }

    /// Polls `kubectl get <target>` until `done` holds for the object (within [`WAIT`]), and
    /// returns it; fails the test with `what` and the last state seen otherwise.
    pub fn wait_for(&self, target: &[&str], what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let object = self.get_json(target);
            match object {
                Some(object) if done(&object) => return object,
                _ if Instant::now() > deadline => panic!(
                    "timed out after {WAIT:?} waiting for {what}; last `kubectl get {}`:\n{}",
                    target.join(" "),
                    object.map_or_else(|| "(not found)".to_owned(), |o| pretty(&o))
                ),
                _ => std::thread::sleep(Duration::from_millis(250)),
            }
        }
    }
}

/// The outcome of one kubectl command.
#[derive(Debug)]
pub struct Run {
    command: String,
    success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The stdout of a command that had to succeed; fails the test with its stderr otherwise.
    pub fn expect_success(self) -> String {
        assert!(self.success, "`{}` failed:\n{}", self.command, self.stderr);
        self.stdout
    }

    /// The stderr of a command that had to fail; fails the test with its stdout otherwise.
    pub fn expect_failure(self) -> String {
        assert!(
            !self.success,
            "`{}` succeeded but should have failed; stdout:\n{}",
            self.command, self.stdout
        );
        self.stderr
    }

    /// `Ok(stdout)`, or `Err` with the command and its stderr.
    pub fn into_result(self) -> Result<String, String> {
        if self.success {
            Ok(self.stdout)
        } else {
            Err(format!("`{}` failed:\n{}", self.command, self.stderr))
        }
    }
}

/// Runs `command` (described as `label` in failures), feeding `input` on stdin, and collects
/// its outcome.
pub fn run(mut command: Command, label: String, input: Option<&str>) -> Run {
    let mut child = command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{label}`: {e}"));
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(input.as_bytes())
            .unwrap_or_else(|e| panic!("`{label}`: writing stdin: {e}"));
    }
    let output = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("`{label}`: {e}"));
    Run {
        command: label,
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Pretty JSON for failure messages.
pub fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

pub fn running_in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// `ATTUNE_KUBECTL` (see [`cluster_setting`]).
fn kubectl_next_to(kubeconfig: &Path) -> PathBuf {
    PathBuf::from(cluster_setting(kubeconfig, "ATTUNE_KUBECTL"))
}

/// The variable `name` when set, else its `name=` line in the `cluster.env` that
/// `tests/cluster/up` writes next to the kubeconfig; fails the test when neither has it.
fn cluster_setting(kubeconfig: &Path, name: &str) -> String {
    if let Some(value) = std::env::var(name).ok().filter(|v| !v.is_empty()) {
        return value;
    }
    let env_file = kubeconfig.with_file_name("cluster.env");
    let text = std::fs::read_to_string(&env_file).unwrap_or_else(|e| {
        panic!(
            "{name} is unset and {} is unreadable ({e}); set {name}",
            env_file.display()
        )
    });
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
        .map(|value| value.trim().trim_matches('"').to_owned())
        .unwrap_or_else(|| {
            panic!(
                "{name} is unset and {} does not set it (a cluster from an older \
                 tests/cluster/up? run it again)",
                env_file.display()
            )
        })
}

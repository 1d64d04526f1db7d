//! Helm as `tests/tools/build helm` builds it, and the chart of `charts/attune`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::cluster::{Cluster, Run, run, running_in_ci};
use super::manifests::repo_root;

/// The helm binary, with its own config, cache and data folders (nothing from `~/.config/helm`).
#[derive(Debug)]
pub struct Helm {
    bin: PathBuf,
    home: PathBuf,
}

/// Helm, or `None` (the test is skipped) when it is not built, outside CI; under CI a missing
/// helm fails the test.
pub fn helm() -> Option<&'static Helm> {
    static HELM: OnceLock<Option<Helm>> = OnceLock::new();
    HELM.get_or_init(|| match find_helm() {
        Ok(bin) => Some(Helm {
            bin,
            home: PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("helm-home"),
        }),
        Err(why) => {
            assert!(
                !running_in_ci(),
                "CI is set but helm is missing: {why} (.ci/run builds it with `tests/tools/build helm`)"
            );
            // Straight to stderr, past the test harness's output capture, so that it shows.
            let _ = writeln!(std::io::stderr(), "attune-e2e: chart tests skipped: {why}");
            None
        }
    })
    .as_ref()
}

/// `$ATTUNE_HELM_BIN/helm`, the variable taken from the environment or else from the tools'
/// `env.sh` that `tests/tools/build` writes (`$ATTUNE_TOOLS_CACHE`, default `/var/cache/attune`).
fn find_helm() -> Result<PathBuf, String> {
    let dir = match std::env::var("ATTUNE_HELM_BIN")
        .ok()
        .filter(|v| !v.is_empty())
    {
        Some(dir) => dir,
        None => {
            let cache = std::env::var("ATTUNE_TOOLS_CACHE")
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "/var/cache/attune".to_owned());
            let env_file = Path::new(&cache).join("tools/env.sh");
            let text = std::fs::read_to_string(&env_file).map_err(|e| {
                format!(
                    "ATTUNE_HELM_BIN is unset and {} is unreadable ({e})",
                    env_file.display()
                )
            })?;
            text.lines()
                .find_map(|line| line.strip_prefix("ATTUNE_HELM_BIN="))
                .map(|v| v.trim().trim_matches('"').to_owned())
                .ok_or_else(|| {
                    format!(
                        "ATTUNE_HELM_BIN is unset and {} does not set it (run `tests/tools/build helm`)",
                        env_file.display()
                    )
                })?
        }
    };
    let bin = Path::new(&dir).join("helm");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "{} is missing (run `tests/tools/build helm`)",
            bin.display()
        ))
    }
}

impl Helm {
    /// Runs helm with `args`, without a cluster (`lint`, `template`).
    pub fn run(&self, args: &[&str]) -> Run {
        run(self.command(args), format!("helm {}", args.join(" ")), None)
    }

    /// Runs helm with `args` against `cluster` (`install`, `upgrade`, `uninstall`).
    pub fn on(&self, cluster: &Cluster, args: &[&str]) -> Run {
        let mut command = self.command(args);
        command.arg("--kubeconfig").arg(cluster.kubeconfig());
        run(command, format!("helm {}", args.join(" ")), None)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.bin);
        for (variable, folder) in [
            ("HELM_CONFIG_HOME", "config"),
            ("HELM_CACHE_HOME", "cache"),
            ("HELM_DATA_HOME", "data"),
        ] {
            command.env(variable, self.home.join(folder));
        }
        command.env_remove("KUBECONFIG").args(args);
        command
    }
}

/// The chart's folder, `charts/attune`.
pub fn chart_dir() -> PathBuf {
    repo_root().join("charts/attune")
}

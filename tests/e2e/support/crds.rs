//! The CRDs of `crds/*.yaml`, installed once per test run.

use std::path::PathBuf;
use std::sync::OnceLock;

use super::cluster::Cluster;
use super::manifests::{read_yaml_documents, repo_root, yaml_files};

/// One committed CRD.
#[derive(Debug)]
pub struct Crd {
    /// `<plural>.<group>`, e.g. `finetunejobs.attune.dev`.
    pub name: String,
    pub kind: String,
    pub cluster_scoped: bool,
    pub file: PathBuf,
    pub manifest: serde_json::Value,
}

/// Every CRD of `crds/`.
pub fn crds() -> &'static [Crd] {
    static CRDS: OnceLock<Vec<Crd>> = OnceLock::new();
    CRDS.get_or_init(|| {
        let crds: Vec<Crd> = yaml_files(&repo_root().join("crds"))
            .into_iter()
            .map(|file| {
                let manifest = read_yaml_documents(&file).swap_remove(0);
                let field = |pointer: &str| {
                    manifest
                        .pointer(pointer)
                        .and_then(|v| v.as_str())
                        .map(str::to_owned)
                        .unwrap_or_else(|| panic!("{}: no {pointer}", file.display()))
                };
                Crd {
                    name: field("/metadata/name"),
                    kind: field("/spec/names/kind"),
                    cluster_scoped: field("/spec/scope") == "Cluster",
                    file,
                    manifest,
                }
            })
            .collect();
        assert!(!crds.is_empty(), "no CRD manifests in crds/");
        crds
    })
}

/// Installs the CRDs (server-side apply: they are too big for the last-applied annotation)
/// and waits until they are Established, once per test run; every caller fails if that failed.
pub fn ensure_crds_installed(cluster: &Cluster) {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(error) = INSTALLED.get_or_init(|| install(cluster)) {
        panic!("installing the CRDs failed:\n{error}");
    }
}

fn install(cluster: &Cluster) -> Result<(), String> {
    let files: Vec<String> = crds()
        .iter()
        .map(|c| c.file.display().to_string())
        .collect();
    let mut apply = vec![
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=attune-e2e",
    ];
    apply.extend(files.iter().flat_map(|f| ["-f", f.as_str()]));
    cluster.kubectl(&apply).into_result()?;
    let names: Vec<String> = crds().iter().map(|c| format!("crd/{}", c.name)).collect();
    let mut wait = vec!["wait", "--for=condition=Established", "--timeout=60s"];
    wait.extend(names.iter().map(String::as_str));
    cluster.kubectl(&wait).into_result().map(drop)
}

//! Reading the repository's YAML manifests and building small ones.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Value, json};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `*.yaml` files directly in `dir` (the CRDs of `crds/`, not its test manifests), sorted.
pub fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = entries(dir)
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

/// The `*.yaml` files in `dir` and its subfolders (`examples/demo/`), sorted.
pub fn yaml_files_recursive(dir: &Path) -> Vec<PathBuf> {
    let mut files = yaml_files(dir);
    for sub in entries(dir).filter(|path| path.is_dir()) {
        files.extend(yaml_files_recursive(&sub));
    }
    files.sort();
    files
}

fn entries(dir: &Path) -> impl Iterator<Item = PathBuf> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(move |entry| {
            entry
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .path()
        })
}

/// Every non-empty YAML document of a file, as JSON.
pub fn read_yaml_documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_norway::Deserializer::from_str(&text)
        .map(|document| {
            Value::deserialize(document).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .filter(|value| !value.is_null())
        .collect()
}

/// The single object of `examples/<file>`.
pub fn example(file: &str) -> Value {
    let mut documents = read_yaml_documents(&repo_root().join("examples").join(file));
    assert_eq!(documents.len(), 1, "examples/{file} holds one object");
    documents.swap_remove(0)
}

/// A Pod named `name` with `spec` made [`restricted`]. Nodes are simulated or run commands
/// locally, so images are never pulled.
pub fn pod(name: &str, mut spec: Value) -> Value {
    restricted(&mut spec);
    json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": name }, "spec": spec })
}

/// Gives a pod spec the settings Pod Security "restricted" asks for (test namespaces enforce
/// it), where the spec sets none: non-root, the runtime's seccomp profile, and in every
/// container no privilege escalation and no capabilities.
pub fn restricted(spec: &mut Value) {
    let defaults = |target: &mut Value, settings: Value| {
        let context = target["securityContext"].take();
        target["securityContext"] = if context.is_null() { settings } else { context };
    };
    defaults(
        spec,
        json!({ "runAsNonRoot": true, "seccompProfile": { "type": "RuntimeDefault" } }),
    );
    for list in ["initContainers", "containers"] {
        for container in spec[list].as_array_mut().into_iter().flatten() {
            defaults(
                container,
                json!({ "allowPrivilegeEscalation": false, "capabilities": { "drop": ["ALL"] } }),
            );
        }
    }
}

//! Every manifest in `examples/` is valid.

use std::path::{Path, PathBuf};

use crate::support::{read_yaml_documents, repo_root, validate};

#[test]
fn every_example_validates() {
    let mut checked = 0;
    for path in yaml_files(&repo_root().join("examples")) {
        for doc in read_yaml_documents(&path) {
            if doc["apiVersion"]
                .as_str()
                .is_some_and(|v| v.starts_with("attune.dev/"))
            {
                let errors = validate(&doc, None);
                assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 3,
        "expected at least three Attune manifests in examples/, found {checked}"
    );
}

/// The `*.yaml` files in `dir` and its subfolders (`examples/demo/` holds the demo's jobs).
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("readable entry").path();
        if path.is_dir() {
            files.extend(yaml_files(&path));
        } else if path.extension().is_some_and(|e| e == "yaml") {
            files.push(path);
        }
    }
    files
}

#[test]
fn minimal_example_deserializes_with_defaults() {
    let doc = &read_yaml_documents(&repo_root().join("examples/finetunejob-minimal.yaml"))[0];
    let job: attune_crds::FineTuneJob =
        serde_json::from_value(doc.clone()).expect("typed FineTuneJob");
    assert_eq!(job.spec.model.revision, "main");
    assert_eq!(job.spec.hyperparameters.batch_size, 16);
    assert_eq!(job.spec.resources.gpu_resource_name, "nvidia.com/gpu");
    assert_eq!(job.spec.dataset.validation.fraction, Some(0.1));
    assert_eq!(job.spec.run_policy.backoff_limit, 3);
}

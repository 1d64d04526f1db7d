//! Every manifest in `examples/` is valid.

use crate::support::{read_yaml_documents, repo_root, validate};

#[test]
fn every_example_validates() {
    let dir = repo_root().join("examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("examples/ exists") {
        let path = entry.expect("readable entry").path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
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

//! The committed CRD YAML is exactly what the Rust types generate.

use crate::support::repo_root;

#[test]
fn committed_crds_match_the_types() {
    for generated in attune_crds::generated_crds() {
        let path = repo_root().join("crds").join(&generated.file_name);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        let fresh = generated.to_yaml().expect("CRD renders");
        assert!(
            committed == fresh,
            "{} is stale: run `cargo run -p attune-crds --bin crdgen` and commit the result",
            path.display()
        );
    }
}

#[test]
fn there_is_one_file_per_kind() {
    let mut kinds: Vec<String> = attune_crds::generated_crds()
        .into_iter()
        .map(|g| g.crd.spec.names.kind)
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        ["CachedModel", "FineTuneJob", "Tenant", "TrainedModel"]
    );
}

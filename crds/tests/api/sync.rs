//! The committed CRD YAML, in `crds/` and in the Helm chart's `crds/`, is exactly what the Rust
//! types generate.

use attune_crds::{CRD_FOLDERS, StaleFile, generated_crds, stale_crd_files, write_crd_folders};

use crate::support::repo_root;

#[test]
fn committed_crds_match_the_types() {
    let stale = stale_crd_files(&repo_root()).expect("the CRD folders can be read");
    assert!(
        stale.is_empty(),
        "run `cargo run -p attune-crds --bin crdgen` and commit the result:\n{}",
        stale
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Both folders are checked, and every kind of drift is caught: an edited file, a deleted one,
/// and a stray `.yaml` file (which Helm would install as one more CRD).
#[test]
fn drift_in_either_folder_is_reported() {
    let root = tempfile::tempdir().expect("a temporary folder");
    let root = root.path();
    write_crd_folders(root).expect("the CRD folders can be written");
    assert_eq!(stale_crd_files(root).expect("readable"), []);
    let [crds, chart] = CRD_FOLDERS.map(|folder| root.join(folder));
    let first = &generated_crds()[0].file_name;
    let last = &generated_crds()[3].file_name;
    std::fs::write(chart.join(first), "# edited by hand\n").expect("writable");
    std::fs::remove_file(crds.join(last)).expect("removable");
    std::fs::write(
        chart.join("old.attune.dev.yaml"),
        "kind: CustomResourceDefinition\n",
    )
    .expect("writable");
    std::fs::write(chart.join("README.md"), "not a CRD\n").expect("writable");
    assert_eq!(
        stale_crd_files(root).expect("readable"),
        [
            StaleFile::Missing(crds.join(last)),
            StaleFile::Differs(chart.join(first)),
            StaleFile::NotGenerated(chart.join("old.attune.dev.yaml")),
        ]
    );
    write_crd_folders(root).expect("the CRD folders can be rewritten");
    assert_eq!(stale_crd_files(root).expect("readable"), []);
    assert!(!chart.join("old.attune.dev.yaml").exists());
    assert!(
        chart.join("README.md").exists(),
        "only .yaml files are removed"
    );
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

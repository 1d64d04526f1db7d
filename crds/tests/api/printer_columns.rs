//! `kubectl get` columns read the fields they claim to.

use crate::support::committed_crd;

fn columns(kind: &str) -> Vec<(String, String, i64)> {
    committed_crd(kind)["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .expect("printer columns")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default().to_owned(),
                c["jsonPath"].as_str().unwrap_or_default().to_owned(),
                c["priority"].as_i64().unwrap_or(0),
            )
        })
        .collect()
}

#[test]
fn finetunejob_default_columns_are_phase_progress_accuracy_model_age() {
    let cols = columns("FineTuneJob");
    let default: Vec<&str> = cols
        .iter()
        .filter(|c| c.2 == 0)
        .map(|c| c.0.as_str())
        .collect();
    assert_eq!(default, ["Phase", "Progress", "Accuracy", "Model", "Age"]);
    let phase = cols
        .iter()
        .find(|c| c.0 == "Phase")
        .expect("a Phase column");
    assert_eq!(
        phase.1, ".status.phase",
        "the phase column reads the phase field, never a condition"
    );
    assert!(cols.iter().any(|c| c.2 > 0), "wide output adds columns");
}

//! The CRDs on a real API server: installation, the examples, server-side validation of the
//! invalid manifests, and `kubectl explain`.

use std::path::Path;

use serde_json::Value;

use crate::support::{
    TestNamespace, cluster_with_crds, crds, read_yaml_documents, repo_root, yaml_files,
    yaml_files_recursive,
};

fn condition_status<'a>(object: &'a Value, condition: &str) -> Option<&'a str> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == condition)?["status"]
        .as_str()
}

#[test]
fn crds_are_established_and_served() {
    let Some(cluster) = cluster_with_crds() else {
        return;
    };
    for crd in crds() {
        let installed = cluster
            .get_json(&["crd", &crd.name])
            .unwrap_or_else(|| panic!("CRD {} is missing", crd.name));
        for condition in ["Established", "NamesAccepted"] {
            assert_eq!(
                condition_status(&installed, condition),
                Some("True"),
                "CRD {} condition {condition}; status: {}",
                crd.name,
                installed["status"]
            );
        }
    }
    let served = cluster
        .kubectl(&["api-resources", "--api-group=attune.dev", "-o", "name"])
        .expect_success();
    for crd in crds() {
        assert!(
            served.lines().any(|r| r == crd.name),
            "{} is not served; api-resources:\n{served}",
            crd.name
        );
    }
}

#[test]
fn every_example_applies() {
    let Some(ns) = TestNamespace::create("examples") else {
        return;
    };
    let files = yaml_files_recursive(&repo_root().join("examples"));
    assert!(!files.is_empty(), "no examples/*.yaml");
    let failures: Vec<String> = files
        .iter()
        .flat_map(|file| {
            read_yaml_documents(file)
                .into_iter()
                .map(move |doc| (file, doc))
        })
        .filter_map(|(file, doc)| {
            ns.apply(&doc)
                .into_result()
                .err()
                .map(|e| format!("{}: {e}", file.display()))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "examples rejected by the API server:\n{}",
        failures.join("\n")
    );
}

/// The `# field:` and `# message:` header of a manifest in `crds/tests/invalid/`.
fn header(path: &Path, key: &str) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("# {key}: ")))
        .unwrap_or_else(|| panic!("{}: no '# {key}:' header", path.display()))
        .to_owned()
}

/// Whether the API server's error names `field` with `message`. It prints one error per line,
/// `<field>: <reason>: <detail>` (after `is invalid: ` or `* `), except for strict decoding:
/// `unknown field "<field>"`.
fn reports(stderr: &str, field: &str, message: &str) -> bool {
    let at_field = [format!(" {field}: "), format!("unknown field \"{field}\"")];
    stderr
        .lines()
        .any(|line| at_field.iter().any(|f| line.contains(f.as_str())) && line.contains(message))
}

#[test]
fn every_invalid_manifest_is_rejected_on_its_field_with_its_message() {
    let Some(ns) = TestNamespace::create("invalid") else {
        return;
    };
    let files = yaml_files(&repo_root().join("crds/tests/invalid"));
    assert!(!files.is_empty(), "no crds/tests/invalid/*.yaml");
    let mut failures = Vec::new();
    for file in &files {
        let (field, message) = (header(file, "field"), header(file, "message"));
        let manifest = read_yaml_documents(file).swap_remove(0);
        match ns.apply(&manifest).into_result() {
            Ok(stdout) => failures.push(format!("{}: accepted: {}", file.display(), stdout.trim())),
            Err(error) if !reports(&error, &field, &message) => failures.push(format!(
                "{}: expected field '{field}' with message '{message}', got {error}",
                file.display()
            )),
            Err(_) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} invalid manifests:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

/// Text with every run of whitespace made one space (kubectl explain re-wraps descriptions).
fn words(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn explain_shows_the_field_descriptions_of_the_crd() {
    let Some(cluster) = cluster_with_crds() else {
        return;
    };
    let crd = crds()
        .iter()
        .find(|c| c.kind == "FineTuneJob")
        .expect("a FineTuneJob CRD");
    let schema = &crd.manifest["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let fields = schema["properties"]["spec"]["properties"]["hyperparameters"]["properties"]
        .as_object()
        .expect("spec.hyperparameters has properties");
    assert!(
        fields.contains_key("learningRate"),
        "spec.hyperparameters.learningRate exists"
    );
    let explained = cluster
        .kubectl(&["explain", "finetunejob.spec.hyperparameters"])
        .expect_success();
    let explained_words = words(&explained);
    for (field, property) in fields {
        let description = words(property["description"].as_str().unwrap_or_default());
        assert!(
            !description.is_empty(),
            "spec.hyperparameters.{field} has no description in the CRD"
        );
        assert!(
            explained_words.contains(&format!("{field} <"))
                && explained_words.contains(&description),
            "kubectl explain lacks '{field}' with description '{description}':\n{explained}"
        );
    }
}

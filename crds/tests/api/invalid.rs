//! Every manifest in `crds/tests/invalid/` is rejected on the field its header names, with the
//! message it names. The same files go through `kubectl apply` in the end-to-end tests.
//!
//! Header format: `# field: spec.x.y` and `# message: text` (a substring of the error).

use std::path::{Path, PathBuf};

use crate::support::{FieldError, Source, read_yaml_documents, repo_root, validate};

/// Phrases of the API server's own structural errors (`support::validate` renders jsonschema's
/// errors in those words): an expected message with one of them must come from the schema's
/// structure, any other from a CEL rule. Either way the message itself is compared.
const STRUCTURAL_PHRASES: &[&str] = &[
    "Required value",
    "Unsupported value",
    "should be",
    "should have at least",
    "should match",
    "unknown field",
];

/// The `# field:` and `# message:` header of an invalid manifest.
pub struct Expectation {
    pub field: String,
    pub message: String,
}

impl Expectation {
    pub fn read(path: &Path) -> Self {
        let text = std::fs::read_to_string(path).expect("readable manifest");
        let header = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("# {key}: ")))
                .unwrap_or_else(|| panic!("{}: no '# {key}:' header", path.display()))
                .to_owned()
        };
        Self {
            field: header("field"),
            message: header("message"),
        }
    }

    fn is_met_by(&self, errors: &[FieldError]) -> bool {
        let source = if STRUCTURAL_PHRASES.iter().any(|p| self.message.contains(p)) {
            Source::Structure
        } else {
            Source::Cel
        };
        errors.iter().any(|e| {
            e.field == self.field && e.source == source && e.message.contains(&self.message)
        })
    }
}

/// `crds/tests/invalid/*.yaml`, sorted.
fn yaml_files() -> Vec<PathBuf> {
    let dir = repo_root().join("crds/tests/invalid");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("crds/tests/invalid exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_invalid_manifest_is_rejected_with_its_message() {
    let files = yaml_files();
    assert!(
        files.len() >= 25,
        "at least 25 invalid manifests, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for path in &files {
        let expected = Expectation::read(path);
        let object = &read_yaml_documents(path)[0];
        let errors = validate(object, None);
        if !expected.is_met_by(&errors) {
            failures.push(format!(
                "{}: expected '{}' at {}, got {errors:#?}",
                path.display(),
                expected.message,
                expected.field
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The comparison above can fail: with another message on the same field, no manifest passes.
#[test]
fn a_wrong_expected_message_is_not_met() {
    for path in yaml_files() {
        let mut expected = Expectation::read(&path);
        expected.message = format!("{} (not the message)", expected.message);
        let errors = validate(&read_yaml_documents(&path)[0], None);
        assert!(
            !expected.is_met_by(&errors),
            "{}: met with a wrong message: {errors:#?}",
            path.display()
        );
    }
}

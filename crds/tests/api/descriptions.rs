//! Every property carries a description, so `kubectl explain` documents the whole API, and
//! every description reads well there.

use serde_json::Value;

use crate::support::{committed_crd, schema_of};

const KINDS: [&str; 4] = ["FineTuneJob", "Tenant", "TrainedModel", "CachedModel"];

fn undocumented(schema: &Value, path: &str, out: &mut Vec<String>) {
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, sub) in properties {
            let child = format!("{path}.{name}");
            let documented = sub
                .get("description")
                .and_then(Value::as_str)
                .is_some_and(|d| !d.trim().is_empty());
            // apiVersion, kind and metadata are described by Kubernetes itself.
            if !documented && !matches!(child.as_str(), ".apiVersion" | ".kind" | ".metadata") {
                out.push(child.clone());
            }
            undocumented(sub, &child, out);
        }
    }
    if let Some(items) = schema.get("items") {
        undocumented(items, &format!("{path}[]"), out);
    }
    if let Some(additional) = schema.get("additionalProperties").filter(|a| a.is_object()) {
        undocumented(additional, &format!("{path}{{}}"), out);
    }
}

#[test]
fn every_property_has_a_description() {
    for kind in KINDS {
        let mut missing = Vec::new();
        undocumented(&schema_of(kind), "", &mut missing);
        assert!(
            missing.is_empty(),
            "{kind}: properties without a description: {missing:?}"
        );
    }
}

/// Every `description` string anywhere in `value` (schemas at any depth, printer columns), with
/// where it is.
fn descriptions(value: &Value, path: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                match (key.as_str(), child) {
                    ("description", Value::String(text)) => {
                        out.push((path.to_owned(), text.clone()))
                    }
                    _ => descriptions(child, &format!("{path}.{key}"), out),
                }
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                descriptions(child, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Whether `line` starts an item of a bulleted or numbered list.
fn is_list_item(line: &str) -> bool {
    let line = line.trim_start();
    let numbered = line.trim_start_matches(|c: char| c.is_ascii_digit());
    ["- ", "* ", "+ "].iter().any(|m| line.starts_with(m))
        || (numbered.len() < line.len()
            && (numbered.starts_with(". ") || numbered.starts_with(") ")))
}

/// `kubectl explain` keeps each "\n" of a description as a line break and wraps the rest to its
/// own width, so a doc comment's line breaks must not survive inside a sentence: a paragraph
/// is one line, paragraphs are separated by "\n\n", and a single "\n" only starts a list item.
#[test]
fn no_description_breaks_a_line_inside_a_sentence() {
    let mut problems = Vec::new();
    for kind in KINDS {
        let mut all = Vec::new();
        descriptions(&committed_crd(kind), "", &mut all);
        assert!(
            all.len() > 10,
            "{kind}: only {} descriptions found",
            all.len()
        );
        for (path, text) in all {
            for paragraph in text.split("\n\n") {
                if paragraph.is_empty() || paragraph.starts_with('\n') || paragraph.ends_with('\n')
                {
                    problems.push(format!("{kind}{path}: more than one blank line: {text:?}"));
                }
                for next in paragraph.split('\n').skip(1) {
                    if !is_list_item(next) {
                        problems.push(format!("{kind}{path}: line break before {next:?}"));
                    }
                }
            }
            if text != text.trim() {
                problems.push(format!(
                    "{kind}{path}: leading or trailing blanks: {text:?}"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "descriptions that kubectl explain would show with hard line breaks:\n{}",
        problems.join("\n")
    );
}

//! `kubectl get` columns: each kind shows the columns it documents, in order, and every column
//! reads a field that exists in the schema with the column's type.

use serde_json::Value;

use crate::support::{committed_crd, schema_of};

/// One printer column: name, type, jsonPath, priority (0: default output, 1: `-o wide`).
type Column = (String, String, String, i64);

fn columns(kind: &str) -> Vec<Column> {
    committed_crd(kind)["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .expect("printer columns")
        .iter()
        .map(|c| {
            let text = |key: &str| {
                c[key]
                    .as_str()
                    .unwrap_or_else(|| panic!("{kind}: a column without {key}: {c}"))
                    .to_owned()
            };
            (
                text("name"),
                text("type"),
                text("jsonPath"),
                c["priority"].as_i64().unwrap_or(0),
            )
        })
        .collect()
}

fn expected(rows: &[(&str, &str, &str, i64)]) -> Vec<Column> {
    rows.iter()
        .map(|&(n, t, p, w)| (n.to_owned(), t.to_owned(), p.to_owned(), w))
        .collect()
}

const AGE: (&str, &str, &str, i64) = ("Age", "date", ".metadata.creationTimestamp", 0);

/// The README's `kubectl get ftj`: PHASE, PROGRESS, ACCURACY, MODEL, AGE; `-o wide` adds GPUs,
/// step, loss, attempts (so retries show) and reason. The phase column reads `.status.phase`,
/// never a condition.
#[test]
fn finetunejob_columns() {
    assert_eq!(
        columns("FineTuneJob"),
        expected(&[
            ("Phase", "string", ".status.phase", 0),
            ("Progress", "integer", ".status.progress.percent", 0),
            ("Accuracy", "number", ".status.metrics.evalAccuracy", 0),
            ("Model", "string", ".spec.model.source", 0),
            AGE,
            ("GPUs", "integer", ".spec.resources.gpus", 1),
            ("Step", "integer", ".status.progress.step", 1),
            ("Loss", "number", ".status.metrics.trainLoss", 1),
            ("Attempts", "integer", ".status.attempts", 1),
            ("Reason", "string", ".status.reason", 1),
        ])
    );
}

#[test]
fn tenant_columns() {
    assert_eq!(
        columns("Tenant"),
        expected(&[
            ("Nominal", "integer", ".spec.quota.nominal", 0),
            ("In Use", "integer", ".status.gpusInUse", 0),
            ("Borrowed", "integer", ".status.gpusBorrowed", 0),
            ("Lent", "integer", ".status.gpusLent", 0),
            ("Running", "integer", ".status.runningJobs", 0),
            ("Queued", "integer", ".status.queuedJobs", 0),
            AGE,
            ("Cohort", "string", ".spec.quota.cohort", 1),
        ])
    );
}

#[test]
fn trainedmodel_columns() {
    assert_eq!(
        columns("TrainedModel"),
        expected(&[
            ("Version", "string", ".spec.version", 0),
            ("Base", "string", ".spec.baseModel.source", 0),
            ("Accuracy", "number", ".spec.metrics.evalAccuracy", 0),
            ("URI", "string", ".spec.uri", 0),
            AGE,
        ])
    );
}

#[test]
fn cachedmodel_columns() {
    assert_eq!(
        columns("CachedModel"),
        expected(&[
            ("Source", "string", ".spec.source", 0),
            ("Revision", "string", ".spec.revision", 0),
            ("Phase", "string", ".status.phase", 0),
            ("Size", "integer", ".status.sizeBytes", 0),
            ("Tenant", "string", ".spec.tenant", 1),
            AGE,
        ])
    );
}

/// The schema of the property at `json_path` (`.status.progress.percent`), if there is one.
fn property<'a>(schema: &'a Value, json_path: &str) -> Option<&'a Value> {
    json_path
        .trim_start_matches('.')
        .split('.')
        .try_fold(schema, |s, name| s.get("properties")?.get(name))
}

/// Every column of every kind reads a declared property (a typo in a jsonPath shows an empty
/// column rather than an error), of the column's type.
#[test]
fn every_column_reads_a_field_of_its_type() {
    let mut problems = Vec::new();
    for kind in ["FineTuneJob", "Tenant", "TrainedModel", "CachedModel"] {
        let schema = schema_of(kind);
        let cols = columns(kind);
        for (name, ty, path, priority) in &cols {
            if cols.iter().filter(|c| &c.0 == name).count() > 1 {
                problems.push(format!("{kind}: two columns named {name:?}"));
            }
            if !(0..=1).contains(priority) {
                problems.push(format!("{kind}.{name}: priority {priority}"));
            }
            // metadata is Kubernetes' own, not in the CRD schema.
            if path == ".metadata.creationTimestamp" {
                if ty != "date" {
                    problems.push(format!("{kind}.{name}: {path} is a date, not {ty}"));
                }
                continue;
            }
            let Some(field) = property(&schema, path) else {
                problems.push(format!("{kind}.{name}: {path} is not in the schema"));
                continue;
            };
            let field_type = field["type"].as_str().unwrap_or("(none)");
            let fits = match ty.as_str() {
                "date" => field_type == "string" && field["format"] == "date-time",
                "integer" | "number" | "string" | "boolean" => field_type == ty,
                _ => false,
            };
            if !fits {
                problems.push(format!(
                    "{kind}.{name}: column type {ty}, but {path} is {field_type} ({field})"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

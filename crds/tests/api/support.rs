//! A client-side stand-in for the API server's validation of custom resources: OpenAPI
//! structure (jsonschema, draft 4 as in OpenAPI 3.0), unknown fields (strict field validation),
//! and the `x-kubernetes-validations` CEL rules (kube-cel, with schema defaults applied first).

use std::path::{Path, PathBuf};

use jsonschema::error::{TypeKind, ValidationErrorKind};
use kube::core::cel::Validator;
use serde_json::Value;

/// Where a validation error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The OpenAPI structure: types, enums, ranges, required fields, unknown fields.
    Structure,
    /// A CEL rule.
    Cel,
}

/// One validation error, with its field path spelled as the API server spells it
/// (`spec.namespaces[0]`).
#[derive(Debug, Clone)]
pub struct FieldError {
    pub field: String,
    pub message: String,
    pub source: Source,
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Parses every YAML document of a file into JSON values.
pub fn read_yaml_documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| {
            let value: Value = serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            value
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// The committed CRD that serves `kind`.
pub fn committed_crd(kind: &str) -> Value {
    let file = attune_crds::generated_crds()
        .into_iter()
        .find(|g| g.crd.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD serves kind {kind}"))
        .file_name;
    let mut docs = read_yaml_documents(&repo_root().join("crds").join(file));
    docs.remove(0)
}

/// The openAPIV3Schema of the committed CRD for `kind`.
pub fn schema_of(kind: &str) -> Value {
    committed_crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// Validates `object` (and, for updates, its previous state) the way the API server would.
pub fn validate(object: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let kind = object["kind"].as_str().expect("manifest has a kind");
    let schema = schema_of(kind);
    let mut errors = structural_errors(&schema, object);
    unknown_fields(&schema, object, "", &mut errors);
    if let Err(cel) = Validator::new().validate(&schema, object, old) {
        errors.extend(cel.into_vec().into_iter().map(|e| FieldError {
            field: e.field_path.trim_start_matches('.').to_owned(),
            message: e.message,
            source: Source::Cel,
        }));
    }
    errors
}

fn structural_errors(schema: &Value, object: &Value) -> Vec<FieldError> {
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .should_validate_formats(false)
        .build(schema)
        .expect("the CRD schema compiles");
    validator
        .iter_errors(object)
        .map(|e| {
            let mut field = api_field_path(e.instance_path().as_str());
            if let ValidationErrorKind::Required { property } = e.kind() {
                let property = property.as_str().unwrap_or_default();
                field = if field.is_empty() {
                    property.to_owned()
                } else {
                    format!("{field}.{property}")
                };
            }
            FieldError {
                message: api_server_message(&field, e.kind(), e.instance(), &e.to_string()),
                field,
                source: Source::Structure,
            }
        })
        .collect()
}

/// A structural error in the API server's words (apiextensions-apiserver turns kube-openapi's
/// schema errors into `field.Error`s: `Required value`, `Unsupported value: …`, `Invalid value:
/// …: <field> in body should …`), so that a manifest's expected message is compared here as
/// it is against a real API server. A kind our schemas do not use keeps jsonschema's own words
/// (`other`), which no expected message matches.
fn api_server_message(
    field: &str,
    kind: &ValidationErrorKind,
    value: &Value,
    other: &str,
) -> String {
    let invalid = |detail: String| format!("Invalid value: {value}: {field} in body {detail}");
    match kind {
        ValidationErrorKind::Required { .. } => "Required value".to_owned(),
        ValidationErrorKind::Enum { options } => {
            let supported: Vec<String> = options
                .as_array()
                .map(|o| o.iter().map(Value::to_string).collect())
                .unwrap_or_default();
            format!(
                "Unsupported value: {value}: supported values: {}",
                supported.join(", ")
            )
        }
        ValidationErrorKind::Type { kind } => {
            let kind = match kind {
                TypeKind::Single(t) => t.to_string(),
                TypeKind::Multiple(ts) => format!("{ts:?}"),
            };
            format!("Invalid value: {value}: {field} in body must be of type {kind}")
        }
        ValidationErrorKind::Minimum { limit } => {
            invalid(format!("should be greater than or equal to {limit}"))
        }
        ValidationErrorKind::ExclusiveMinimum { limit } => {
            invalid(format!("should be greater than {limit}"))
        }
        ValidationErrorKind::Maximum { limit } => {
            invalid(format!("should be less than or equal to {limit}"))
        }
        ValidationErrorKind::ExclusiveMaximum { limit } => {
            invalid(format!("should be less than {limit}"))
        }
        ValidationErrorKind::MinItems { limit } => {
            invalid(format!("should have at least {limit} items"))
        }
        ValidationErrorKind::MaxItems { limit } => {
            let n = value.as_array().map_or(0, Vec::len);
            format!("Too many: {n}: must have at most {limit} items")
        }
        ValidationErrorKind::MinLength { limit } => {
            invalid(format!("should be at least {limit} chars long"))
        }
        ValidationErrorKind::MaxLength { limit } => {
            format!("Too long: may not be more than {limit} bytes")
        }
        ValidationErrorKind::Pattern { pattern } => invalid(format!("should match '{pattern}'")),
        ValidationErrorKind::MinProperties { limit } => {
            invalid(format!("should have at least {limit} properties"))
        }
        _ => other.to_owned(),
    }
}

/// `/spec/namespaces/0` → `spec.namespaces[0]`.
fn api_field_path(pointer: &str) -> String {
    let mut out = String::new();
    for segment in pointer.split('/').filter(|s| !s.is_empty()) {
        if segment.chars().all(|c| c.is_ascii_digit()) {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(segment);
        }
    }
    out
}

/// Strict field validation: a field the schema does not declare is an error, as with
/// `kubectl apply` (which asks the server for `fieldValidation=Strict`).
fn unknown_fields(schema: &Value, object: &Value, path: &str, errors: &mut Vec<FieldError>) {
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return;
    }
    match object {
        Value::Object(fields) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            for (name, value) in fields {
                let child = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                match (properties.and_then(|p| p.get(name)), additional) {
                    (Some(sub), _) => unknown_fields(sub, value, &child, errors),
                    (None, Some(sub)) if sub.is_object() => {
                        unknown_fields(sub, value, &child, errors)
                    }
                    // The API server itself handles the root's apiVersion, kind and metadata.
                    (None, _)
                        if path.is_empty()
                            && matches!(name.as_str(), "apiVersion" | "kind" | "metadata") => {}
                    (None, _) if properties.is_none() => {}
                    (None, _) => errors.push(FieldError {
                        // The API server names the whole path: `unknown field "spec.x.y"`.
                        message: format!("unknown field \"{child}\""),
                        field: child,
                        source: Source::Structure,
                    }),
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    unknown_fields(sub, item, &format!("{path}[{i}]"), errors);
                }
            }
        }
        _ => {}
    }
}

//! Every property carries a description, so `kubectl explain` documents the whole API.

use serde_json::Value;

use crate::support::schema_of;

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
    for kind in ["FineTuneJob", "Tenant", "TrainedModel", "CachedModel"] {
        let mut missing = Vec::new();
        undocumented(&schema_of(kind), "", &mut missing);
        assert!(
            missing.is_empty(),
            "{kind}: properties without a description: {missing:?}"
        );
    }
}

//! A job uses only Secrets, ConfigMaps and PersistentVolumeClaims of its own namespace. The
//! CRD's rules reject a `namespace/name` reference at `kubectl apply`; this is the operator's
//! own check, for objects stored before those rules or written past them, so that one
//! tenant's job can never read another's credentials or data, nor write another's output.

use attune_crds::{DataSource, FineTuneJobSpec, SecretReference};

/// Whether `name` is a bare object name: a lowercase RFC 1123 subdomain, so it cannot carry a
/// namespace (`ns/name`) or any other qualifier.
fn bare(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Every object reference of the spec, as (field, name).
type References<'a> = Vec<(String, &'a str)>;

fn secret<'a>(field: &str, reference: Option<&'a SecretReference>, refs: &mut References<'a>) {
    if let Some(r) = reference {
        refs.push((
            format!("{field}.credentialsSecretRef.name"),
            r.name.as_str(),
        ));
    }
}

fn source<'a>(field: &str, s: &'a DataSource, refs: &mut References<'a>) {
    if let Some(pvc) = &s.pvc {
        refs.push((format!("{field}.pvc.claimName"), pvc.claim_name.as_str()));
    }
    if let Some(map) = &s.config_map {
        refs.push((format!("{field}.configMap.name"), map.name.as_str()));
    }
    if let Some(store) = &s.object_store {
        let field = format!("{field}.objectStore");
        secret(&field, store.credentials_secret_ref.as_ref(), refs);
    }
}

fn references(spec: &FineTuneJobSpec) -> References<'_> {
    let mut refs = Vec::new();
    secret(
        "spec.model",
        spec.model.credentials_secret_ref.as_ref(),
        &mut refs,
    );
    source("spec.dataset.source", &spec.dataset.source, &mut refs);
    if let Some(validation) = &spec.dataset.validation.source {
        source("spec.dataset.validation.source", validation, &mut refs);
    }
    let destination = &spec.output.destination;
    if let Some(pvc) = &destination.pvc {
        refs.push((
            "spec.output.destination.pvc.claimName".to_owned(),
            pvc.claim_name.as_str(),
        ));
    }
    if let Some(store) = &destination.object_store {
        secret(
            "spec.output.destination.objectStore",
            store.credentials_secret_ref.as_ref(),
            &mut refs,
        );
    }
    refs
}

/// The first reference that is not a bare name in the job's namespace, as the reason's
/// message, naming the field and the fix.
pub fn foreign_reference(spec: &FineTuneJobSpec, namespace: &str) -> Option<String> {
    let (field, name) = references(spec).into_iter().find(|(_, n)| !bare(n))?;
    Some(format!(
        "{field}: `{name}` does not name an object of namespace {namespace}; a FineTuneJob may \
         only use Secrets, ConfigMaps and PersistentVolumeClaims of its own namespace: copy the \
         object into {namespace} and give its bare name"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bare_names_are_accepted() {
        for good in ["models", "hf-token", "a.b-c", "x1"] {
            assert!(bare(good), "{good}");
        }
        for bad in ["team-b/models", "", "Models", "-x", "a..b", "ns:x", "a/"] {
            assert!(!bare(bad), "{bad}");
        }
    }
}

//! Which Tenant owns a namespace: by name (`spec.namespaces`) or by label
//! (`spec.namespaceSelector`); two Tenants claiming one namespace is a conflict that keeps the
//! namespace's jobs waiting; a namespace nobody claims follows `tenancy.unownedNamespaces`.

use std::collections::{BTreeMap, BTreeSet};

use attune_crds::Tenant;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;

use super::config::UnownedNamespaces;
use super::reasons::Reason;

/// Where a job's namespace puts it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Under this Tenant's quota.
    Tenant(String),
    /// No quota applies; why.
    Unmetered(String),
    /// It may not run; why, and what to do.
    Refused(String),
    /// It waits until the Tenants are fixed.
    Blocked(Reason, String),
}

/// One Tenant's claim.
#[derive(Clone, Debug)]
struct Claim {
    tenant: String,
    names: BTreeSet<String>,
    selector: Option<LabelSelector>,
}

/// The owners of namespaces, from the Tenants and the namespaces' labels.
#[derive(Clone, Debug, Default)]
pub struct Ownership {
    claims: Vec<Claim>,
    labels: BTreeMap<String, BTreeMap<String, String>>,
}

impl Ownership {
    /// From every Tenant, and every namespace with its labels.
    pub fn new<'a>(
        tenants: impl IntoIterator<Item = &'a Tenant>,
        namespaces: impl IntoIterator<Item = (String, BTreeMap<String, String>)>,
    ) -> Self {
        let claims = tenants
            .into_iter()
            .map(|t| Claim {
                tenant: t.name_any(),
                names: t.spec.namespaces.iter().flatten().cloned().collect(),
                selector: t.spec.namespace_selector.clone(),
            })
            .collect();
        Self {
            claims,
            labels: namespaces.into_iter().collect(),
        }
    }

    /// The Tenants claiming `namespace`, by name.
    pub fn claimants(&self, namespace: &str) -> Vec<String> {
        let labels = self.labels.get(namespace);
        let mut tenants: Vec<String> = self
            .claims
            .iter()
            .filter(|c| {
                c.names.contains(namespace)
                    || c.selector
                        .as_ref()
                        .zip(labels)
                        .is_some_and(|(s, l)| selects(s, l))
            })
            .map(|c| c.tenant.clone())
            .collect();
        tenants.sort();
        tenants.dedup();
        tenants
    }

    /// Where a job of `namespace` goes under `unowned`.
    pub fn place(&self, namespace: &str, unowned: &UnownedNamespaces) -> Placement {
        let claimants = self.claimants(namespace);
        match claimants.as_slice() {
            [one] => Placement::Tenant(one.clone()),
            [] => match unowned {
                UnownedNamespaces::Admit => Placement::Unmetered(format!(
                    "no Tenant owns namespace {namespace}: no quota applies \
                     (tenancy.unownedNamespaces: Admit)"
                )),
                UnownedNamespaces::Reject => Placement::Refused(format!(
                    "no Tenant owns namespace {namespace}: create a Tenant that lists it in \
                     spec.namespaces (or selects it with spec.namespaceSelector)"
                )),
                UnownedNamespaces::Tenant(name)
                    if self.claims.iter().any(|c| &c.tenant == name) =>
                {
                    Placement::Tenant(name.clone())
                }
                UnownedNamespaces::Tenant(name) => Placement::Blocked(
                    Reason::TenantNotFound,
                    format!(
                        "no Tenant owns namespace {namespace}, and Tenant {name} \
                         (tenancy.unownedNamespaces) does not exist: create it, or a Tenant \
                         that owns {namespace}"
                    ),
                ),
            },
            many => Placement::Blocked(
                Reason::TenantConflict,
                format!(
                    "Tenants {} all claim namespace {namespace}; no job of it is admitted until \
                     only one does",
                    many.join(" and ")
                ),
            ),
        }
    }

    /// Every namespace claimed by more than one Tenant (named or existing), with its claimants.
    pub fn conflicts(&self) -> BTreeMap<String, Vec<String>> {
        let named = self.claims.iter().flat_map(|c| c.names.iter().cloned());
        let known: BTreeSet<String> = named.chain(self.labels.keys().cloned()).collect();
        known
            .into_iter()
            .filter_map(|ns| {
                let claimants = self.claimants(&ns);
                (claimants.len() > 1).then_some((ns, claimants))
            })
            .collect()
    }

    /// Whether `tenant` claims one of `namespaces` (by name, or by label among those known).
    pub fn claims_any(&self, tenant: &str, namespaces: &[String]) -> bool {
        namespaces
            .iter()
            .any(|ns| self.claimants(ns).iter().any(|t| t == tenant))
    }
}

/// Whether `selector` selects an object with `labels` (the Kubernetes semantics: every
/// `matchLabels` pair and every `matchExpressions` requirement; an empty selector selects all).
pub fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let pairs = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions = selector.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    pairs && expressions
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tenant(name: &str, spec: serde_json::Value) -> Tenant {
        let mut spec = spec;
        spec["quota"] = json!({ "nominal": 4 });
        serde_json::from_value(json!({
            "apiVersion": "attune.dev/v1alpha1", "kind": "Tenant",
            "metadata": { "name": name }, "spec": spec,
        }))
        .expect("a Tenant")
    }

    fn namespaces() -> Vec<(String, BTreeMap<String, String>)> {
        vec![
            ("team-a".into(), BTreeMap::new()),
            ("ml-1".into(), [("team".into(), "ml".into())].into()),
            ("ml-2".into(), [("team".into(), "ml".into())].into()),
            ("other".into(), [("team".into(), "web".into())].into()),
        ]
    }

    #[test]
    fn namespaces_are_owned_by_name_or_by_label() {
        let tenants = [
            tenant("a", json!({ "namespaces": ["team-a"] })),
            tenant(
                "ml",
                json!({ "namespaceSelector": { "matchExpressions": [{ "key": "team", "operator": "In", "values": ["ml"] }] } }),
            ),
        ];
        let owners = Ownership::new(&tenants, namespaces());
        let admit = UnownedNamespaces::Admit;
        assert_eq!(
            owners.place("team-a", &admit),
            Placement::Tenant("a".into())
        );
        assert_eq!(owners.place("ml-2", &admit), Placement::Tenant("ml".into()));
        assert!(
            matches!(owners.place("other", &admit), Placement::Unmetered(m) if m.contains("Admit"))
        );
        assert!(owners.conflicts().is_empty());
        assert!(owners.claims_any("ml", &["ml-1".into()]));
        assert!(!owners.claims_any("a", &["ml-1".into()]));
    }

    #[test]
    fn unowned_namespaces_follow_the_configuration() {
        let owners = Ownership::new(
            &[tenant("shared", json!({ "namespaces": ["x"] }))],
            namespaces(),
        );
        let refused = owners.place("other", &UnownedNamespaces::Reject);
        assert!(
            matches!(&refused, Placement::Refused(m) if m.contains("create a Tenant that lists it")),
            "{refused:?}"
        );
        assert_eq!(
            owners.place("other", &UnownedNamespaces::Tenant("shared".into())),
            Placement::Tenant("shared".into())
        );
        let missing = owners.place("other", &UnownedNamespaces::Tenant("nobody".into()));
        assert!(
            matches!(&missing, Placement::Blocked(Reason::TenantNotFound, m) if m.contains("Tenant nobody")),
            "{missing:?}"
        );
    }

    #[test]
    fn two_claimants_block_the_namespace_and_are_both_named() {
        let tenants = [
            tenant("a", json!({ "namespaces": ["ml-1"] })),
            tenant(
                "ml",
                json!({ "namespaceSelector": { "matchLabels": { "team": "ml" } } }),
            ),
        ];
        let owners = Ownership::new(&tenants, namespaces());
        let blocked = owners.place("ml-1", &UnownedNamespaces::Admit);
        assert!(
            matches!(&blocked, Placement::Blocked(Reason::TenantConflict, m) if m.contains("a and ml")),
            "{blocked:?}"
        );
        assert_eq!(
            owners.place("ml-2", &UnownedNamespaces::Admit),
            Placement::Tenant("ml".into())
        );
        assert_eq!(
            owners.conflicts(),
            BTreeMap::from([("ml-1".to_owned(), vec!["a".to_owned(), "ml".to_owned()])])
        );
    }

    #[test]
    fn selectors_follow_kubernetes_semantics() {
        let labels: BTreeMap<String, String> = [("team".into(), "ml".into())].into();
        let selector = |v: serde_json::Value| -> LabelSelector {
            serde_json::from_value(v).expect("selector")
        };
        assert!(selects(&selector(json!({})), &labels));
        assert!(selects(
            &selector(json!({ "matchExpressions": [{ "key": "team", "operator": "Exists" }] })),
            &labels
        ));
        assert!(!selects(
            &selector(
                json!({ "matchExpressions": [{ "key": "team", "operator": "DoesNotExist" }] })
            ),
            &labels
        ));
        assert!(!selects(
            &selector(
                json!({ "matchExpressions": [{ "key": "team", "operator": "NotIn", "values": ["ml"] }] })
            ),
            &labels
        ));
        assert!(selects(
            &selector(
                json!({ "matchExpressions": [{ "key": "env", "operator": "NotIn", "values": ["prod"] }] })
            ),
            &labels
        ));
        assert!(!selects(
            &selector(json!({ "matchLabels": { "team": "ml", "env": "dev" } })),
            &labels
        ));
    }
}

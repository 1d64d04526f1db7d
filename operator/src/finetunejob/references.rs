//! Whether what a FineTuneJob references exists, asked of the API server before its first
//! attempt, and remembered for a moment when it does.
//!
//! The lookups sit between `kubectl apply` and the trainer's Job. A sweep of many jobs over one
//! dataset asks the same questions a thousand times a minute (and a ConfigMap's answer carries
//! the whole dataset), so an object found is taken as found for [`FOUND_FOR`]. Only presence is
//! remembered: a missing object is asked for again at every reconcile, so a job waits exactly
//! until its reference appears. An object deleted within that moment is no different from one
//! deleted just after a lookup: the pod cannot start, and its status says why.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use attune_crds::{DataSource, FineTuneJob};
use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::{Api, Client, Resource};

use crate::error::Result;

/// How long an object found is taken to exist without asking again.
const FOUND_FOR: Duration = Duration::from_secs(10);

/// References found lately, by namespace and description.
#[derive(Debug, Default)]
pub struct Found {
    seen: Mutex<HashMap<(String, String), Instant>>,
}

impl Found {
    fn recent(&self, namespace: &str, what: &str) -> bool {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&(namespace.to_owned(), what.to_owned()))
            .is_some_and(|at| at.elapsed() < FOUND_FOR)
    }

    fn saw(&self, namespace: &str, what: &str) {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.retain(|_, at| at.elapsed() < FOUND_FOR);
        seen.insert((namespace.to_owned(), what.to_owned()), Instant::now());
    }
}

/// The objects the job references that do not exist, as `Kind name`.
///
/// # Errors
/// An API call other than a not-found failed.
pub async fn missing(
    job: &FineTuneJob,
    client: Client,
    namespace: &str,
    found: &Found,
) -> Result<Vec<String>> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let classes: Api<PriorityClass> = Api::all(client);
    let sources: Vec<&DataSource> = std::iter::once(&job.spec.dataset.source)
        .chain(job.spec.dataset.validation.source.as_ref())
        .collect();
    let mut claim_names: Vec<&str> = sources
        .iter()
        .filter_map(|s| s.pvc.as_ref().map(|p| p.claim_name.as_str()))
        .collect();
    claim_names.extend(
        job.spec
            .output
            .destination
            .pvc
            .as_ref()
            .map(|p| p.claim_name.as_str()),
    );
    claim_names.dedup();
    // Each lookup is named by what it finds missing, the key under which it is remembered.
    let mut lookups: Vec<(String, BoxFuture<'_, kube::Result<Option<String>>>)> = Vec::new();
    if let Some(secret) = &job.spec.model.credentials_secret_ref {
        let what = format!("Secret {}", secret.name);
        lookups.push((what.clone(), absent(&secrets, &secret.name, what).boxed()));
    }
    for claim in claim_names {
        let what = format!("PersistentVolumeClaim {claim}");
        lookups.push((what.clone(), absent(&claims, claim, what).boxed()));
    }
    if let Some(class) = &job.spec.resources.priority_class_name {
        let what = format!("PriorityClass {class} (cluster-wide)");
        lookups.push((what.clone(), absent(&classes, class, what).boxed()));
    }
    for key in sources.iter().filter_map(|s| s.config_map.as_ref()) {
        let config_maps = &config_maps;
        let what = format!("key {} of ConfigMap {}", key.key, key.name);
        let lookup = {
            let what = what.clone();
            async move {
                Ok(match config_maps.get_opt(&key.name).await? {
                    None => Some(format!("ConfigMap {}", key.name)),
                    Some(map) if !map.data.iter().flatten().any(|(k, _)| *k == key.key) => {
                        Some(what)
                    }
                    Some(_) => None,
                })
            }
        };
        lookups.push((what, lookup.boxed()));
    }
    // Every lookup not answered lately, at once: they sit on the path from `kubectl apply` to a
    // running pod.
    let asked = lookups
        .into_iter()
        .filter(|(what, _)| !found.recent(namespace, what))
        .map(|(what, lookup)| lookup.map(|answer| answer.map(|missing| (what, missing))));
    let answers = futures::future::try_join_all(asked).await?;
    let mut missing = Vec::new();
    for (what, answer) in answers {
        match answer {
            Some(absent) => missing.push(absent),
            None => found.saw(namespace, &what),
        }
    }
    Ok(missing)
}

/// `what` when `api` has no object `name`.
async fn absent<K>(api: &Api<K>, name: &str, what: String) -> kube::Result<Option<String>>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let found = api.get_metadata_opt(name).await?.is_some();
    Ok((!found).then_some(what))
}

#[cfg(test)]
mod tests {
    use super::Found;

    #[test]
    fn only_what_was_found_is_remembered_and_per_namespace() {
        let found = Found::default();
        assert!(!found.recent("team-a", "ConfigMap data"));
        found.saw("team-a", "ConfigMap data");
        assert!(found.recent("team-a", "ConfigMap data"));
        assert!(!found.recent("team-b", "ConfigMap data"));
        assert!(!found.recent("team-a", "PersistentVolumeClaim out"));
    }
}

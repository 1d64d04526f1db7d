//! What a benchmark puts on the cluster: namespaces of its own (Pod Security "restricted", as
//! production namespaces), the data and claims the jobs reference, the base model already
//! `Ready` in the cache (so no fetch runs), the FineTuneJobs, and the `done` reports that end
//! their simulated trainer pods.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use attune_crds::{CachedModel, FineTuneJob};
use attune_operator::names;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolumeClaim, Pod, ServiceAccount,
};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::cluster::Cluster;
use super::done_event::{MINILM_COMMIT, done_event};

/// The base model of every job (the cache entry says it holds [`MINILM_COMMIT`]).
const MODEL: &str = "hf://sentence-transformers/all-MiniLM-L6-v2";

/// The benchmark's namespaces and installation.
pub struct Workload {
    client: Client,
    /// The operator's `instance`, `<prefix>-<unique>`.
    pub instance: String,
    /// The jobs' namespaces.
    pub namespaces: Vec<String>,
    /// The operator's own namespace (its Lease and token key).
    pub operator_namespace: String,
}

/// A FineTuneJob to create.
pub struct NewJob {
    /// Its namespace, one of the workload's.
    pub namespace: String,
    /// Its name, unique over the workload's namespaces (children are told apart by it).
    pub name: String,
    /// The object, e.g. from [`job`].
    pub manifest: Value,
}

/// A trainer pod, by its namespace, its FineTuneJob and its name.
#[derive(Clone, Debug)]
pub struct TrainerPod {
    /// The pod's namespace.
    pub namespace: String,
    /// Its FineTuneJob (the `done` report names it).
    pub job: String,
    /// The pod's name.
    pub pod: String,
}

fn from_json<K: DeserializeOwned>(value: Value) -> anyhow::Result<K> {
    Ok(serde_json::from_value(value)?)
}

impl Workload {
    /// A workload of installation `<prefix>-<unique>`: its jobs in that namespace when
    /// `suffixes` is empty, else in one namespace `<prefix>-<unique>-<suffix>` per suffix.
    pub fn new(cluster: &Cluster, prefix: &str, suffixes: &[String]) -> Self {
        let unique = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() % 100_000);
        let instance = format!("{prefix}-{unique}");
        let namespaces = if suffixes.is_empty() {
            vec![instance.clone()]
        } else {
            suffixes.iter().map(|s| format!("{instance}-{s}")).collect()
        };
        Self {
            client: cluster.client.clone(),
            operator_namespace: format!("{instance}-system"),
            instance,
            namespaces,
        }
    }

    /// The name of the cache entry the operator looks up for the jobs' model.
    fn cached_model_name(&self) -> String {
        names::cached_model(&self.instance, MODEL, "main", None)
    }

    /// Creates the namespaces, in each the dataset ConfigMap and the output and model-cache
    /// claims, and the model's cache entry, `Ready`.
    pub async fn prepare(&self) -> anyhow::Result<()> {
        let post = PostParams::default();
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let operator = json!({ "metadata": { "name": self.operator_namespace } });
        namespaces.create(&post, &from_json(operator)?).await?;
        for namespace in &self.namespaces {
            let restricted = json!({ "metadata": { "name": namespace, "labels": {
                "pod-security.kubernetes.io/enforce": "restricted" } } });
            namespaces.create(&post, &from_json(restricted)?).await?;
        }
        for namespace in &self.namespaces {
            self.prepare_namespace(namespace)
                .await
                .with_context(|| format!("preparing namespace {namespace}"))?;
        }
        self.cache_ready().await
    }

    /// The dataset ConfigMap and the claims, once the namespace's default ServiceAccount exists.
    async fn prepare_namespace(&self, namespace: &str) -> anyhow::Result<()> {
        let post = PostParams::default();
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        let deadline = Instant::now() + Duration::from_secs(60);
        while accounts.get_opt("default").await?.is_none() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "no default ServiceAccount after 60 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let maps: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        let rows = "{\"text\": \"wake me at 7\", \"label\": \"set_alarm\"}\n";
        let data = json!({ "metadata": { "name": "intents" }, "data": { "train.jsonl": rows } });
        maps.create(&post, &from_json(data)?).await?;
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), namespace);
        for (claim, mode) in [
            ("models", "ReadWriteOnce"),
            ("model-cache", "ReadWriteMany"),
        ] {
            let claim = json!({
                "metadata": { "name": claim },
                "spec": { "accessModes": [mode], "resources": { "requests": { "storage": "1Gi" } } },
            });
            claims.create(&post, &from_json(claim)?).await?;
        }
        Ok(())
    }

    /// The model's cache entry, as the CachedModel controller leaves it after a fetch.
    async fn cache_ready(&self) -> anyhow::Result<()> {
        let name = self.cached_model_name();
        let caches: Api<CachedModel> = Api::all(self.client.clone());
        let entry = json!({
            "apiVersion": "attune.dev/v1alpha1", "kind": "CachedModel",
            "metadata": { "name": name, "labels": {
                names::INSTANCE_LABEL: self.instance, names::MANAGED_BY_LABEL: names::MANAGER,
            } },
            "spec": { "source": MODEL, "revision": "main" },
        });
        let apply = PatchParams::apply("attune-bench");
        caches.patch(&name, &apply, &Patch::Apply(&entry)).await?;
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let status = json!({
            "apiVersion": "attune.dev/v1alpha1", "kind": "CachedModel",
            "status": {
                "phase": "Ready", "resolvedRevision": MINILM_COMMIT, "sizeBytes": 90_000_000,
                "path": format!("models--sentence-transformers--all-MiniLM-L6-v2/snapshots/{MINILM_COMMIT}"),
                "conditions": [{ "type": "Ready", "status": "True", "reason": "Fetched",
                                 "message": "seeded by the benchmark",
                                 "lastTransitionTime": now }],
            },
        });
        caches
            .patch_status(&name, &apply, &Patch::Apply(&status))
            .await
            .context("making the cache entry Ready")?;
        Ok(())
    }

    /// Creates `jobs` in order with `parallel` creates in flight, at most `rate` a second when
    /// given; returns when each create returned, by job name.
    pub async fn create_jobs(
        &self,
        jobs: Vec<NewJob>,
        parallel: usize,
        rate: Option<f64>,
    ) -> anyhow::Result<HashMap<String, Instant>> {
        let start = tokio::time::Instant::now();
        futures::stream::iter(jobs.into_iter().enumerate())
            .then(|(i, job)| async move {
                if let Some(rate) = rate.filter(|r| *r > 0.0) {
                    tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / rate))
                        .await;
                }
                job
            })
            .map(|job| {
                let api: Api<FineTuneJob> = Api::namespaced(self.client.clone(), &job.namespace);
                async move {
                    let object = from_json::<FineTuneJob>(job.manifest)?;
                    api.create(&PostParams::default(), &object)
                        .await
                        .with_context(|| format!("creating FineTuneJob {}", job.name))?;
                    anyhow::Ok((job.name, Instant::now()))
                }
            })
            .buffer_unordered(parallel.max(1))
            .try_collect()
            .await
    }

    /// Ends each pod as a trainer that finished would: exit 0 with a `done` report as its
    /// termination message (kwok's stages in tests/cluster/kwok.yaml act on the annotations).
    /// A pod already gone is skipped.
    pub async fn end_trainer_pods(
        &self,
        pods: &[TrainerPod],
        parallel: usize,
    ) -> anyhow::Result<()> {
        futures::stream::iter(pods)
            .map(
                |TrainerPod {
                     namespace,
                     job,
                     pod,
                 }| {
                    let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
                    async move {
                        let patch = json!({ "metadata": { "annotations": {
                        "attune.dev/test-exit-code": "0",
                        "attune.dev/test-message": done_event(job),
                        "attune.dev/test-outcome": "succeeded",
                    } } });
                        match api
                            .patch(pod, &PatchParams::default(), &Patch::Merge(&patch))
                            .await
                        {
                            // Gone meanwhile (preempted): nothing to end.
                            Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
                            other => other.map(drop).with_context(|| format!("ending pod {pod}")),
                        }
                    }
                },
            )
            .buffer_unordered(parallel.max(1))
            .try_collect()
            .await
    }
}

/// A FineTuneJob as a user would write it: the model, the task, data from a ConfigMap,
/// `resources` (e.g. `{"gpus": 1}`), the export to claim `models`.
pub fn job(name: &str, resources: Value) -> Value {
    json!({
        "apiVersion": "attune.dev/v1alpha1", "kind": "FineTuneJob",
        "metadata": { "name": name },
        "spec": {
            "model": { "source": MODEL },
            "task": { "textClassification": {} },
            "dataset": { "source": { "configMap": { "name": "intents", "key": "train.jsonl" } } },
            "resources": resources,
            "output": { "destination": { "pvc": { "claimName": "models", "path": name } } },
        },
    })
}

//! What each mode adds to the workload's namespaces, the same quotas said two ways: for
//! Attune's admission a Tenant per namespace (its nominal GPUs, all tenants in one cohort,
//! borrowing unlimited, its weight); for Kueue a ClusterQueue per namespace (the same nominal
//! quota, cohort and weight, Kueue's fair sharing on) with a LocalQueue `gpus`, and one
//! ResourceFlavor for the GPU nodes. Both: two PriorityClasses, high and low, that never preempt
//! pods in the scheduler (only admission preempts).

use anyhow::Context as _;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::plan::TenantPlan;

/// The field manager of everything the benchmark applies.
const MANAGER: &str = "attune-bench-fairness";

/// The PriorityClass of a high-priority job, and of a low one.
pub const HIGH: &str = "attune-bench-high";
pub const LOW: &str = "attune-bench-low";

/// The LocalQueue of each namespace in Kueue mode.
pub const LOCAL_QUEUE: &str = "gpus";

/// Applies `object` (apiVersion/kind/metadata.name, and metadata.namespace if namespaced).
async fn apply(client: &Client, object: Value) -> anyhow::Result<()> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let kind = object["kind"].as_str().unwrap_or_default();
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let api: Api<DynamicObject> = match object["metadata"]["namespace"].as_str() {
        Some(namespace) => Api::namespaced_with(client.clone(), namespace, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    api.patch(name, &PatchParams::apply(MANAGER), &Patch::Apply(&object))
        .await
        .with_context(|| format!("applying {kind} {name}"))?;
    Ok(())
}

/// The two PriorityClasses.
pub async fn priority_classes(client: &Client) -> anyhow::Result<()> {
    for (name, value) in [(HIGH, 1000), (LOW, 0)] {
        let class = json!({
            "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": { "name": name },
            "value": value,
            "preemptionPolicy": "Never",
            "description": "the fairness benchmark's jobs (tests/bench/fairness)",
        });
        apply(client, class).await?;
    }
    Ok(())
}

/// A Tenant for each of `tenants`, owning namespace `namespaces[i]`, in cohort `cohort`.
pub async fn tenants(
    client: &Client,
    cohort: &str,
    tenants: &[TenantPlan],
    namespaces: &[String],
) -> anyhow::Result<()> {
    for (tenant, namespace) in tenants.iter().zip(namespaces) {
        let object = json!({
            "apiVersion": "attune.dev/v1alpha1", "kind": "Tenant",
            "metadata": { "name": namespace },
            "spec": {
                "namespaces": [namespace],
                "quota": { "nominal": tenant.nominal, "cohort": cohort },
                "weight": tenant.weight,
            },
        });
        apply(client, object).await?;
    }
    Ok(())
}

/// Kueue's side: a ResourceFlavor `<cohort>-gpu` for the GPU nodes, and for each of `tenants`
/// a ClusterQueue named after its namespace, in cohort `cohort`, with LocalQueue
/// [`LOCAL_QUEUE`] in it. Preemption as Attune's: lower priority within the queue, and any
/// borrower of the cohort when a queue takes back its nominal quota.
pub async fn kueue_queues(
    client: &Client,
    cohort: &str,
    tenants: &[TenantPlan],
    namespaces: &[String],
) -> anyhow::Result<()> {
    let flavor = format!("{cohort}-gpu");
    let object = json!({
        "apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ResourceFlavor",
        "metadata": { "name": flavor },
        "spec": { "nodeLabels": { "attune.dev/node-pool": "gpu" } },
    });
    apply(client, object).await?;
    for (tenant, namespace) in tenants.iter().zip(namespaces) {
        let queue = json!({
            "apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ClusterQueue",
            "metadata": { "name": namespace },
            "spec": {
                "cohortName": cohort,
                "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": namespace } },
                "resourceGroups": [{
                    "coveredResources": ["nvidia.com/gpu"],
                    "flavors": [{
                        "name": flavor,
                        "resources": [{ "name": "nvidia.com/gpu", "nominalQuota": tenant.nominal }],
                    }],
                }],
                "preemption": { "withinClusterQueue": "LowerPriority", "reclaimWithinCohort": "Any" },
                "fairSharing": { "weight": tenant.weight.to_string() },
            },
        });
        apply(client, queue).await?;
        let local = json!({
            "apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue",
            "metadata": { "name": LOCAL_QUEUE, "namespace": namespace },
            "spec": { "clusterQueue": namespace },
        });
        apply(client, local).await?;
    }
    Ok(())
}

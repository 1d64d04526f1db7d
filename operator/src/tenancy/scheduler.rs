//! The admission loop: the one place that admits. Whenever a FineTuneJob, trainer Job, pod,
//! Tenant, namespace or PriorityClass changes (at most every [`DEBOUNCE`], at least every
//! [`TICK`] for the rules that depend on time), it reads the watch caches, runs a round of the
//! ledger, wakes the reconciles of the jobs whose admission changed, publishes preemption and
//! borrowing Events, and writes each managed Tenant's status.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use attune_crds::{FineTuneJob, Tenant};
use futures::{FutureExt, StreamExt};
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::admission::Outcome;
use super::config::UnownedNamespaces;
use super::ledger::Inputs;
use super::ownership::Ownership;
use super::quota::{JobId, Quota};
use super::report::{borrowing_message, preemption_message, tenant_status};
use super::usage::{Priorities, holds};
use crate::context::Context;
use crate::names;
use crate::watches::{Watches, cached_watch};

/// Least time between two rounds: a burst of changes makes one round.
const DEBOUNCE: Duration = Duration::from_millis(200);
/// Most time between two rounds (minimum runtimes and waits pass without any change).
const TICK: Duration = Duration::from_secs(5);

/// Caches of what only admission reads.
struct Own {
    tenants: Store<DeserializeGuard<Tenant>>,
    namespaces: Store<PartialObjectMeta<Namespace>>,
    classes: Store<PriorityClass>,
}

/// Runs the loop (only while this replica leads: it is started with the controller).
pub async fn run(context: Arc<Context>, watches: Watches) {
    let client = context.client.clone();
    let config = watcher::Config::default();
    let changed = &watches.changed;
    let (tenants, tenant_events) = cached_watch(
        Api::<DeserializeGuard<Tenant>>::all(client.clone()),
        config.clone(),
        changed,
    );
    let (namespaces, namespace_events) = cached_watch(
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        config.clone(),
        changed,
    );
    let (classes, class_events) = cached_watch(Api::<PriorityClass>::all(client), config, changed);
    let feeds = futures::stream::select_all([
        tenant_events.map(|_| ()).boxed(),
        namespace_events.map(|_| ()).boxed(),
        class_events.map(|_| ()).boxed(),
    ])
    .for_each(|()| std::future::ready(()));
    let own = Own {
        tenants,
        namespaces,
        classes,
    };
    tokio::select! {
        () = feeds => {}
        () = rounds(&context, &watches, &own) => {}
    }
}

async fn rounds(context: &Context, watches: &Watches, own: &Own) {
    let ready = futures::future::join_all([
        watches.jobs.wait_until_ready().boxed(),
        watches.batches.wait_until_ready().boxed(),
        watches.pods.wait_until_ready().boxed(),
        own.tenants.wait_until_ready().boxed(),
        own.namespaces.wait_until_ready().boxed(),
        own.classes.wait_until_ready().boxed(),
    ]);
    if ready.await.iter().any(Result::is_err) {
        return;
    }
    tracing::info!("admission caches filled; admitting");
    loop {
        round(context, watches, own).await;
        tokio::select! {
            () = watches.changed.notified() => {}
            () = tokio::time::sleep(TICK) => {}
        }
        tokio::time::sleep(DEBOUNCE).await;
    }
}

/// The Tenants an installation manages: all of them, or, when it watches some namespaces only,
/// those claiming one of them (and the Tenant unowned namespaces go to).
fn managed(
    tenants: &[Arc<DeserializeGuard<Tenant>>],
    ownership: &Ownership,
    watched: &[String],
    unowned: &UnownedNamespaces,
) -> Vec<Tenant> {
    tenants
        .iter()
        .filter_map(|t| t.0.as_ref().ok())
        .filter(|t| {
            let name = t.name_any();
            watched.is_empty()
                || ownership.claims_any(&name, watched)
                || matches!(unowned, UnownedNamespaces::Tenant(n) if *n == name)
        })
        .cloned()
        .collect()
}

fn quota(tenant: &Tenant) -> Quota {
    let spec = &tenant.spec;
    Quota {
        name: tenant.name_any(),
        nominal: spec.quota.nominal,
        borrowing_limit: spec.quota.borrowing_limit,
        cohort: spec.quota.cohort.clone(),
        weight: spec.weight.max(1),
        max_running_jobs: spec.max_running_jobs,
    }
}

async fn round(context: &Context, watches: &Watches, own: &Own) {
    let config = &context.config;
    let watched = |namespace: Option<String>| {
        config.watch_namespaces.is_empty()
            || namespace.is_some_and(|ns| config.watch_namespaces.contains(&ns))
    };
    let all_jobs = watches.jobs.state();
    let jobs: Vec<&FineTuneJob> = all_jobs
        .iter()
        .filter_map(|j| j.0.as_ref().ok())
        .filter(|j| watched(j.namespace()))
        .collect();
    let batches: Vec<Arc<Job>> = watches
        .batches
        .state()
        .into_iter()
        .filter(|j| watched(j.namespace()) && j.labels().contains_key(names::ATTEMPT_LABEL))
        .collect();
    let pods: Vec<Arc<Pod>> = watches
        .pods
        .state()
        .into_iter()
        .filter(|p| watched(p.namespace()))
        .collect();
    let tenants = own.tenants.state();
    let ownership = Ownership::new(
        tenants.iter().filter_map(|t| t.0.as_ref().ok()),
        own.namespaces
            .state()
            .iter()
            .map(|n| (n.name_any(), n.labels().clone())),
    );
    let managed = managed(
        &tenants,
        &ownership,
        &config.watch_namespaces,
        &config.tenancy.unowned_namespaces,
    );
    let classes = own.classes.state();
    let priorities = Priorities::new(classes.iter().map(AsRef::as_ref));
    let decided = context.tenancy.round(Inputs {
        now: Timestamp::now(),
        jobs: jobs.clone(),
        holds: holds(&batches, &pods),
        priorities: &priorities,
        ownership: ownership.clone(),
        quotas: managed.iter().map(quota).collect(),
    });
    for id in &decided.wake {
        let _ = context
            .wake
            .send(ObjectRef::new(&id.name).within(&id.namespace));
    }
    let by_uid: HashMap<String, &FineTuneJob> =
        jobs.iter().filter_map(|j| Some((j.uid()?, *j))).collect();
    announce(context, &decided.outcome, &by_uid, &managed);
    super::report::record_metrics(&context.metrics, &decided.outcome, &managed);
    write_tenants(context, &decided.outcome, &ownership, &managed).await;
}

/// Events: a preemption on the victim and on its Tenant; a borrowing admission on the job and
/// on its Tenant.
fn announce(
    context: &Context,
    outcome: &Outcome,
    jobs: &HashMap<String, &FineTuneJob>,
    tenants: &[Tenant],
) {
    let tenant = |name: &str| tenants.iter().find(|t| t.name_any() == name);
    let mut events: Vec<(Event, Option<&JobId>, Option<&Tenant>)> = Vec::new();
    for p in &outcome.preemptions {
        let note = preemption_message(p);
        let event = Event {
            type_: EventType::Warning,
            reason: "Preempted".to_owned(),
            note: Some(note),
            action: "Preempt".to_owned(),
            secondary: None,
        };
        events.push((event, Some(&p.victim), tenant(&p.victim_tenant)));
    }
    for a in outcome.admitted.iter().filter(|a| a.borrowed > 0) {
        let event = Event {
            type_: EventType::Normal,
            reason: "Borrowing".to_owned(),
            note: Some(borrowing_message(a)),
            action: "Admit".to_owned(),
            secondary: None,
        };
        events.push((event, Some(&a.id), tenant(&a.tenant)));
    }
    for (event, job, tenant) in events {
        let mut references = Vec::new();
        if let Some(job) = job.and_then(|id| jobs.get(&id.uid)) {
            references.push(job.object_ref(&()));
        }
        if let Some(tenant) = tenant {
            references.push(tenant.object_ref(&()));
        }
        context.publish(event, references);
    }
}

/// Writes each managed Tenant's status when it changed.
async fn write_tenants(
    context: &Context,
    outcome: &Outcome,
    ownership: &Ownership,
    tenants: &[Tenant],
) {
    let mut conflicts: BTreeMap<String, Vec<(String, Vec<String>)>> = BTreeMap::new();
    for (namespace, claimants) in ownership.conflicts() {
        for tenant in &claimants {
            conflicts
                .entry(tenant.clone())
                .or_default()
                .push((namespace.clone(), claimants.clone()));
        }
    }
    let now = Time(Timestamp::now());
    let api: Api<Tenant> = Api::all(context.client.clone());
    for tenant in tenants {
        let name = tenant.name_any();
        let usage = outcome.usage.get(&name).copied().unwrap_or_default();
        let status = tenant_status(
            tenant.status.as_ref(),
            usage,
            conflicts.get(&name).map_or(&[][..], Vec::as_slice),
            tenant.metadata.generation,
            &now,
        );
        if tenant.status.as_ref() == Some(&status) {
            continue;
        }
        let patch = json!({
            "apiVersion": "attune.dev/v1alpha1",
            "kind": "Tenant",
            "status": status,
        });
        let params = PatchParams::apply(names::MANAGER).force();
        if let Err(error) = api
            .patch_status(&name, &params, &Patch::Apply(&patch))
            .await
        {
            tracing::warn!(tenant = %name, %error, "cannot write the Tenant's status");
        }
    }
}

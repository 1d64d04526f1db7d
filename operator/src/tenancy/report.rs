//! What admission tells people: each Tenant's status (GPUs in use, borrowed and lent, running
//! and queued jobs, namespace conflicts) and the words of preemption and borrowing Events.

use attune_crds::{Tenant, TenantStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::admission::{Admitted, Cause, Outcome, Preemption, Usage};
use crate::conditions;
use crate::metrics::{Metrics, PreemptionLabels, TenantLabels};

/// Condition of a Tenant: another Tenant claims one of its namespaces.
pub const NAMESPACE_CONFLICT: &str = "NamespaceConflict";

/// Why a job was preempted, for its status, its Event and its tenant's.
pub fn preemption_message(p: &Preemption) -> String {
    let why = match p.cause {
        Cause::Priority => format!(
            "{} of tenant {} has a higher priority",
            p.preemptor, p.preemptor_tenant
        ),
        Cause::Reclaim => format!(
            "tenant {} takes back its nominal quota, which tenant {} borrowed, for {}",
            p.preemptor_tenant, p.victim_tenant, p.preemptor
        ),
    };
    format!(
        "preempted by {}: {why}; the trainer checkpoints and stops, and the job resumes from that \
         checkpoint when GPUs are free again",
        p.preemptor
    )
}

/// The Event note of a job admitted with borrowed GPUs.
pub fn borrowing_message(a: &Admitted) -> String {
    format!(
        "{} admitted with {} of its {} GPUs borrowed from idle quota of tenant {}'s cohort; \
         they may be taken back when their owners need them",
        a.id, a.borrowed, a.gpus, a.tenant
    )
}

/// A Tenant's status from its usage and the namespaces other Tenants claim too.
pub fn tenant_status(
    old: Option<&TenantStatus>,
    usage: Usage,
    conflicts: &[(String, Vec<String>)],
    generation: Option<i64>,
    now: &Time,
) -> TenantStatus {
    let mut status = TenantStatus {
        gpus_in_use: usage.in_use,
        gpus_borrowed: usage.borrowed,
        gpus_lent: usage.lent,
        running_jobs: usage.running,
        queued_jobs: usage.queued,
        conditions: old.map(|s| s.conditions.clone()).unwrap_or_default(),
        observed_generation: generation,
    };
    if conflicts.is_empty() {
        conditions::set(
            &mut status.conditions,
            NAMESPACE_CONFLICT,
            false,
            "NoConflict",
            "no other Tenant claims this Tenant's namespaces",
            generation,
            now,
        );
    } else {
        let list: Vec<String> = conflicts
            .iter()
            .map(|(ns, tenants)| format!("{ns} (claimed by {})", tenants.join(", ")))
            .collect();
        conditions::set(
            &mut status.conditions,
            NAMESPACE_CONFLICT,
            true,
            "NamespaceClaimedTwice",
            format!(
                "namespaces claimed by more than one Tenant: {}; their jobs are not admitted \
                 until exactly one Tenant claims each",
                list.join("; ")
            ),
            generation,
            now,
        );
    }
    status
}

/// Sets each managed Tenant's gauges from a round and counts the round's preemptions. The gauges
/// are rebuilt each round, so a Tenant deleted or no longer managed drops out of `/metrics`.
pub fn record_metrics(metrics: &Metrics, outcome: &Outcome, tenants: &[Tenant]) {
    metrics.tenant_gpus.clear();
    metrics.tenant_jobs.clear();
    for tenant in tenants {
        let name = tenant.name_any();
        let usage = outcome.usage.get(&name).copied().unwrap_or_default();
        let set = |family: &Family<TenantLabels, Gauge>, state, value: u32| {
            let labels = TenantLabels {
                tenant: name.clone(),
                state,
            };
            family.get_or_create(&labels).set(i64::from(value));
        };
        set(&metrics.tenant_gpus, "nominal", tenant.spec.quota.nominal);
        set(&metrics.tenant_gpus, "in_use", usage.in_use);
        set(&metrics.tenant_gpus, "borrowed", usage.borrowed);
        set(&metrics.tenant_gpus, "lent", usage.lent);
        set(&metrics.tenant_jobs, "running", usage.running);
        set(&metrics.tenant_jobs, "queued", usage.queued);
    }
    for p in &outcome.preemptions {
        let cause = match p.cause {
            Cause::Priority => "priority",
            Cause::Reclaim => "reclaim",
        };
        let labels = PreemptionLabels {
            tenant: p.victim_tenant.clone(),
            cause,
        };
        metrics.preemptions.get_or_create(&labels).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenancy::quota::JobId;

    fn id(name: &str) -> JobId {
        JobId {
            namespace: "ns".into(),
            name: name.into(),
            uid: name.into(),
        }
    }

    /// A Tenant running three jobs on six GPUs, two of them borrowed, with one job queued.
    fn busy() -> Usage {
        Usage {
            in_use: 6,
            borrowed: 2,
            lent: 0,
            running: 3,
            queued: 1,
        }
    }

    #[test]
    fn a_conflict_is_a_condition_naming_both_tenants() {
        let now = Time(jiff::Timestamp::from_second(1_800_000_000).expect("now"));
        let usage = busy();
        let conflicts = [("ml-1".to_owned(), vec!["a".to_owned(), "b".to_owned()])];
        let status = tenant_status(None, usage, &conflicts, Some(2), &now);
        assert_eq!(
            (
                status.gpus_in_use,
                status.gpus_borrowed,
                status.running_jobs,
                status.queued_jobs
            ),
            (6, 2, 3, 1)
        );
        let condition = conditions::find(&status.conditions, NAMESPACE_CONFLICT).expect("set");
        assert_eq!(condition.status, "True");
        assert!(
            condition.message.contains("ml-1 (claimed by a, b)"),
            "{}",
            condition.message
        );
        let fixed = tenant_status(Some(&status), usage, &[], Some(3), &now);
        assert!(!conditions::is_true(&fixed.conditions, NAMESPACE_CONFLICT));
    }

    #[test]
    fn preemption_messages_name_the_preemptor_and_the_cause() {
        let preemption = Preemption {
            victim: id("v"),
            victim_tenant: "b".into(),
            preemptor: id("p"),
            preemptor_tenant: "a".into(),
            cause: Cause::Reclaim,
        };
        let message = preemption_message(&preemption);
        assert!(
            message.starts_with("preempted by ns/p: tenant a takes back"),
            "{message}"
        );
        let message = preemption_message(&Preemption {
            cause: Cause::Priority,
            ..preemption
        });
        assert!(message.contains("higher priority"), "{message}");
    }

    #[test]
    fn metrics_show_each_managed_tenant_and_count_preemptions() {
        let tenant = |name: &str, nominal: u32| -> Tenant {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "attune.dev/v1alpha1", "kind": "Tenant",
                "metadata": { "name": name },
                "spec": { "namespaces": [name], "quota": { "nominal": nominal } },
            }))
            .expect("a Tenant")
        };
        let usage = busy();
        let outcome = Outcome {
            usage: [("a".to_owned(), usage)].into(),
            preemptions: vec![Preemption {
                victim: id("v"),
                victim_tenant: "b".into(),
                preemptor: id("p"),
                preemptor_tenant: "a".into(),
                cause: Cause::Reclaim,
            }],
            ..Outcome::default()
        };
        let metrics = Metrics::default();
        record_metrics(&metrics, &outcome, &[tenant("a", 4), tenant("b", 8)]);
        let text = metrics.encode();
        for line in [
            r#"attune_tenant_gpus{tenant="a",state="nominal"} 4"#,
            r#"attune_tenant_gpus{tenant="a",state="in_use"} 6"#,
            r#"attune_tenant_gpus{tenant="a",state="borrowed"} 2"#,
            r#"attune_tenant_jobs{tenant="a",state="queued"} 1"#,
            r#"attune_tenant_gpus{tenant="b",state="in_use"} 0"#,
            r#"attune_preemptions_total{tenant="b",cause="reclaim"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        // The next round no longer manages b: its gauges go, its count stays.
        record_metrics(&metrics, &Outcome::default(), &[tenant("a", 4)]);
        let text = metrics.encode();
        assert!(!text.contains(r#"tenant="b",state"#), "{text}");
        assert!(text.contains(r#"attune_preemptions_total{tenant="b",cause="reclaim"} 1"#));
    }
}

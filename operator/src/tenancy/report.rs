//! What admission tells people: each Tenant's status (GPUs in use, borrowed and lent, running
//! and queued jobs, namespace conflicts) and the words of preemption and borrowing Events.

use attune_crds::TenantStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::admission::{Admitted, Cause, Preemption, Usage};
use crate::conditions;

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

    #[test]
    fn a_conflict_is_a_condition_naming_both_tenants() {
        let now = Time(jiff::Timestamp::from_second(1_800_000_000).expect("now"));
        let usage = Usage {
            in_use: 6,
            borrowed: 2,
            lent: 0,
            running: 3,
            queued: 1,
        };
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
}

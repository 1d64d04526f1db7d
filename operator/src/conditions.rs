//! Status conditions the Kubernetes way: one entry per type, `lastTransitionTime` moves only
//! when the status does.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Sets condition `type_` in `conditions`, keeping its transition time when `status` is
/// unchanged.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: &Time,
) {
    let status = if status { "True" } else { "False" }.to_owned();
    let message = message.into();
    let transition = conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
    conditions.retain(|c| c.type_ != type_);
    conditions.push(Condition {
        type_: type_.to_owned(),
        status,
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time: transition,
    });
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
}

/// Whether condition `type_` is True.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

/// The condition of `type_`, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;

    #[test]
    fn transition_time_moves_only_with_the_status() {
        let t1 = Time(Timestamp::from_second(1).expect("t"));
        let t2 = Time(Timestamp::from_second(2).expect("t"));
        let mut conditions = Vec::new();
        set(
            &mut conditions,
            "Running",
            true,
            "Started",
            "a",
            Some(1),
            &t1,
        );
        set(
            &mut conditions,
            "Running",
            true,
            "Started",
            "b",
            Some(1),
            &t2,
        );
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time, t1);
        assert_eq!(conditions[0].message, "b");
        set(&mut conditions, "Running", false, "Done", "c", Some(1), &t2);
        assert_eq!(conditions[0].last_transition_time, t2);
        assert!(!is_true(&conditions, "Running"));
    }
}

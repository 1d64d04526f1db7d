//! Deterministic names and labels of everything the operator creates. A name is a pure function
//! of its owner, so a restarted operator, a replayed event or two reconciles of one job find the
//! object that is already there instead of creating a second one.

use sha2::{Digest, Sha256};

/// Label on every child of a FineTuneJob: the job's name (shortened like [`child_name`] when
/// longer than a label value may be), so `kubectl get pods -l attune.dev/job=NAME` works.
pub const JOB_LABEL: &str = "attune.dev/job";
/// Label on trainer Jobs and pods: the attempt, counting from 1.
pub const ATTEMPT_LABEL: &str = "attune.dev/attempt";
/// Label on fetch Jobs and pods: the CachedModel they fill.
pub const CACHED_MODEL_LABEL: &str = "attune.dev/cached-model";
/// Label on CachedModels: the installation that manages them (config `instance`).
pub const INSTANCE_LABEL: &str = "attune.dev/instance";
/// Label on every object the operator creates.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`], and the server-side-apply field manager.
pub const MANAGER: &str = "attune-operator";

/// Longest object name that is also a valid label value and Job name (Jobs put their name in a
/// pod label).
const MAX_NAME: usize = 63;

/// `<owner>-<suffix>`, shortened to at most 63 characters by cutting the owner's name and
/// inserting a hash of the whole, so distinct owners never share a child name.
pub fn child_name(owner: &str, suffix: &str) -> String {
    let full = if suffix.is_empty() {
        owner.to_owned()
    } else {
        format!("{owner}-{suffix}")
    };
    if full.len() <= MAX_NAME {
        return full;
    }
    let hash = short_hash(&full);
    let keep = MAX_NAME
        - hash.len()
        - 1
        - if suffix.is_empty() {
            0
        } else {
            suffix.len() + 1
        };
    let mut cut: String = owner.chars().take(keep).collect();
    while cut.ends_with(['-', '.']) {
        cut.pop();
    }
    if suffix.is_empty() {
        format!("{cut}-{hash}")
    } else {
        format!("{cut}-{hash}-{suffix}")
    }
}

/// The label value naming a FineTuneJob.
pub fn job_label_value(job: &str) -> String {
    child_name(job, "")
}

/// The batch Job of a FineTuneJob's attempt `attempt` (1, 2, …).
pub fn trainer_job(job: &str, attempt: u32) -> String {
    child_name(job, &attempt.to_string())
}

/// The Secret holding the trainer's job file and the job's progress token: one object, so
/// starting a job costs one write for both.
pub fn trainer_secret(job: &str) -> String {
    child_name(job, "trainer")
}

/// The PersistentVolumeClaim holding the job's checkpoints.
pub fn checkpoint_claim(job: &str) -> String {
    child_name(job, "checkpoints")
}

/// The fetch Job of a CachedModel's attempt `attempt`.
pub fn fetch_job(cached_model: &str, attempt: u32) -> String {
    child_name(cached_model, &format!("fetch-{attempt}"))
}

/// The CachedModel of (source, revision, credential scope) in installation `instance`:
/// readable (`<repo>-<revision>`) and unique (a hash of all four, so two installations with
/// different cache volumes never take each other's entries for their own).
pub fn cached_model(instance: &str, source: &str, revision: &str, tenant: Option<&str>) -> String {
    let repo = source.trim_start_matches("hf://");
    let readable: String = format!("{repo}-{revision}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let key = format!("{instance}\n{source}\n{revision}\n{}", tenant.unwrap_or(""));
    let hash = short_hash(&key);
    let keep = MAX_NAME - hash.len() - 1 - "-fetch-99".len();
    let mut readable: String = readable.chars().take(keep).collect();
    while readable.ends_with('-') {
        readable.pop();
    }
    let readable = readable.trim_start_matches('-');
    format!("{readable}-{hash}")
}

/// The first 10 hex digits of the SHA-256 of `text`.
fn short_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest[..5].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_dns_label(name: &str) -> bool {
        name.len() <= 63
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !name.starts_with('-')
            && !name.ends_with('-')
    }

    #[test]
    fn short_names_are_kept() {
        assert_eq!(trainer_job("news", 2), "news-2");
        assert_eq!(checkpoint_claim("news"), "news-checkpoints");
        assert_eq!(job_label_value("news"), "news");
    }

    #[test]
    fn long_names_are_cut_with_a_hash_and_stay_distinct() {
        let a = "a".repeat(100);
        let b = format!("{}b", "a".repeat(99));
        let (na, nb) = (trainer_job(&a, 1), trainer_job(&b, 1));
        assert_ne!(na, nb);
        assert!(na.len() <= 63 && nb.len() <= 63, "{na} {nb}");
        assert!(na.ends_with("-1"), "{na}");
        assert!(is_dns_label(&job_label_value(&a)));
        assert_eq!(trainer_job(&a, 1), na, "deterministic");
    }

    #[test]
    fn cached_model_names_are_labels_unique_per_scope() {
        let public = cached_model(
            "attune",
            "hf://sentence-transformers/all-MiniLM-L6-v2",
            "main",
            None,
        );
        let other_instance = cached_model(
            "attune-2",
            "hf://sentence-transformers/all-MiniLM-L6-v2",
            "main",
            None,
        );
        assert_ne!(public, other_instance);
        let scoped = cached_model(
            "attune",
            "hf://sentence-transformers/all-MiniLM-L6-v2",
            "main",
            Some("team-a"),
        );
        assert!(public.starts_with("sentence-transformers-all-minilm-l6-v2-main-"));
        assert_ne!(public, scoped);
        assert!(is_dns_label(&public), "{public}");
        assert!(
            is_dns_label(&fetch_job(&public, 12)),
            "{}",
            fetch_job(&public, 12)
        );
        let long = cached_model(
            "attune",
            &format!("hf://org/{}", "x".repeat(200)),
            "v1.0",
            None,
        );
        assert!(is_dns_label(&long), "{long}");
        assert!(is_dns_label(&fetch_job(&long, 99)));
    }
}

//! What a fetch pod's termination message says: on success the trainer's `fetched` report
//! (commit and files), on failure its error line, sorted into a reason a user can act on.

use attune_crds::ModelFile;
use serde::Deserialize;

/// The trainer's `fetched` report.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fetched {
    /// The commit the revision resolved to.
    pub resolved_revision: String,
    /// Every file of the snapshot.
    pub files: Vec<ModelFile>,
    /// Their total size.
    pub size_bytes: u64,
}

/// Parses the `fetched` report.
pub fn fetched(message: &str) -> Result<Fetched, String> {
    let line = message
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or_else(|| {
            format!("the fetch reported no result (termination message: {message:?})")
        })?;
    serde_json::from_str(line).map_err(|e| format!("the fetch report is malformed ({e}): {line}"))
}

/// A failed fetch: the status reason and a message that says what to do.
pub fn failure(message: &str, source: &str, revision: &str) -> (&'static str, String) {
    let lower = message.to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| lower.contains(w));
    let said = if message.is_empty() {
        "no message".to_owned()
    } else {
        message.to_owned()
    };
    if has(&[
        "401",
        "403",
        "authrequired",
        "unauthorized",
        "forbidden",
        "gated",
    ]) {
        (
            "Unauthorized",
            format!(
                "the hub refused {source}@{revision} (401/403): set spec.model.credentialsSecretRef \
                 to a Secret whose HF_TOKEN may read it ({said})"
            ),
        )
    } else if has(&[
        "404",
        "not found",
        "repositorynotfound",
        "revisionnotfound",
        "reponotfound",
    ]) {
        (
            "RepositoryNotFound",
            format!(
                "the hub has no {source} at revision {revision} (404): check spec.model.source and \
                 spec.model.revision ({said})"
            ),
        )
    } else if has(&["no space", "enospc", "disk full", "quota exceeded"]) {
        (
            "DiskFull",
            format!("the model cache volume is full: free or enlarge it ({said})"),
        )
    } else if has(&["mismatch", "digest", "hash", "sha256", "sha1"]) {
        (
            "HashMismatch",
            format!("a downloaded file does not match its published digest ({said})"),
        )
    } else if has(&["safetensors"]) {
        (
            "NoSafetensorsWeights",
            format!(
                "{source}@{revision} has no model.safetensors weights: pick a revision with safetensors ({said})"
            ),
        )
    } else {
        (
            "FetchFailed",
            format!("fetching {source}@{revision} failed: {said}"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_get_reasons_that_say_what_to_do() {
        let (reason, message) = failure(
            "error: hub: request error: HTTP status client error (401 Unauthorized)",
            "hf://o/n",
            "main",
        );
        assert_eq!(reason, "Unauthorized");
        assert!(message.contains("credentialsSecretRef"), "{message}");
        assert_eq!(
            failure("error: hub: RepoNotFound o/x", "s", "r").0,
            "RepositoryNotFound"
        );
        assert_eq!(
            failure("error: No space left on device (os error 28)", "s", "r").0,
            "DiskFull"
        );
        assert_eq!(
            failure(
                "error: blobs/abc: sha256 mismatch: expected a got b",
                "s",
                "r"
            )
            .0,
            "HashMismatch"
        );
        assert_eq!(
            failure("error: o/n@main has no model.safetensors", "s", "r").0,
            "NoSafetensorsWeights"
        );
        assert_eq!(failure("", "s", "r").0, "FetchFailed");
    }

    #[test]
    fn the_fetched_report_is_the_last_json_line() {
        let report = fetched(
            "fetching\n{\"event\":\"fetched\",\"model\":\"o/n\",\"revision\":\"main\",\"resolvedRevision\":\"abc\",\"files\":[{\"path\":\"config.json\",\"sha256\":\"00\",\"sizeBytes\":3}],\"sizeBytes\":3}",
        )
        .expect("report");
        assert_eq!(report.resolved_revision, "abc");
        assert_eq!(report.files.len(), 1);
        assert!(fetched("error: boom").is_err());
    }
}

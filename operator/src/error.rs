//! The operator's error type. Every variant says what failed; `metric_label` names it for the
//! `attune_reconcile_errors_total` counter.

/// Errors of the reconcilers and the servers around them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// An object could not be (de)serialised.
    #[error("serialisation: {0}")]
    Json(#[from] serde_json::Error),
    /// An object lacks a field the API server always sets (name, namespace, uid).
    #[error("{kind} without {field}")]
    MissingField {
        /// The kind of the object.
        kind: &'static str,
        /// The missing field.
        field: &'static str,
    },
    /// A reconcile ran before this replica's watch caches exist (it does not lead).
    #[error("the watch caches are not running: this replica does not lead")]
    NotLeading,
    /// A Kueue-mode attempt is to stop before Kueue made its Workload: suspending the Job alone
    /// would not hold, since Kueue would admit the Workload it makes later and release the Job.
    #[error("the Kueue Workload of Job {job} does not exist yet")]
    WorkloadPending {
        /// The attempt's batch Job.
        job: String,
    },
    /// The configuration file is unreadable or invalid.
    #[error("configuration {path}: {message}")]
    Config {
        /// The file.
        path: String,
        /// What is wrong, naming the field.
        message: String,
    },
}

impl Error {
    /// A short, bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube(kube::Error::Api(status)) if status.is_conflict() => "conflict",
            Self::Kube(kube::Error::Api(status)) if status.is_forbidden() => "forbidden",
            Self::Kube(kube::Error::Api(_)) => "api",
            Self::Kube(_) => "transport",
            Self::Json(_) => "serialisation",
            Self::MissingField { .. } => "missing_field",
            Self::NotLeading => "not_leading",
            Self::WorkloadPending { .. } => "workload_pending",
            Self::Config { .. } => "config",
        }
    }
}

/// The operator's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

//! Shared helpers: finding the cluster, running kubectl, per-test namespaces, manifests.

mod binaries;
mod cluster;
mod crds;
mod http;
mod kueue;
mod manifests;
mod namespace;
mod operator;
mod simulate;
mod training;

pub use binaries::workspace_binary;
pub use cluster::cluster_with_crds;
pub use crds::crds;
pub use http::request;
pub use kueue::{KueueQueue, QUEUE_NAME_LABEL, condition};
pub use manifests::{example, pod, read_yaml_documents, repo_root, yaml_files};
pub use namespace::TestNamespace;
pub use operator::Operator;
pub use simulate::{done_event, end_pod, running_trainer_pods, simulated_trainers};
pub use training::{
    TRAINING_WAIT, claim, claim_dir, data_config_map, intents, intents_and_models, job, phase,
    wait_for_job,
};

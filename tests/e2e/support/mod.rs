//! Shared helpers: finding the cluster, running kubectl, per-test namespaces, manifests.

mod binaries;
mod cluster;
mod crds;
mod done_event;
mod helm;
mod http;
mod hub_repo;
mod kueue;
mod manifests;
mod namespace;
mod operator;
mod simulate;
mod tiny_model;
mod training;

pub use binaries::workspace_binary;
pub use cluster::{Run, cluster_with_crds};
pub use crds::crds;
pub use done_event::done_event;
pub use helm::{chart_dir, helm};
pub use http::request;
pub use hub_repo::HubRepo;
pub use kueue::{KueueQueue, QUEUE_NAME_LABEL, condition};
pub use manifests::{
    example, pod, read_yaml_documents, repo_root, restricted, yaml_files, yaml_files_recursive,
};
pub use namespace::{RESTRICTED, TestNamespace};
pub use operator::{Operator, free_port};
pub use simulate::{end_pod, running_trainer_pods, simulated_trainers};
pub use tiny_model::tiny_bert_files;
pub use training::{
    TRAINING_WAIT, assert_published, claim, claim_dir, data_config_map, intents,
    intents_and_models, intents_texts, job, phase, start_event, wait_for_job, wait_succeeded,
};

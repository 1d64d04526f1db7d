//! Shared helpers: finding the cluster, running kubectl, per-test namespaces, manifests.

mod binaries;
mod cluster;
mod crds;
mod manifests;
mod namespace;

pub use binaries::workspace_binary;
pub use cluster::cluster_with_crds;
pub use crds::crds;
pub use manifests::{example, pod, read_yaml_documents, repo_root, yaml_files};
pub use namespace::TestNamespace;

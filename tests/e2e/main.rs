//! End-to-end tests against a real control plane: the cluster of `tests/cluster/` (real
//! kube-apiserver, controller-manager and scheduler; kwok nodes; a local runner node).
//!
//! `tests/run` brings the cluster up and exports `ATTUNE_KUBECONFIG`. By hand:
//!
//! ```sh
//! ATTUNE_KUBECONFIG="$(tests/cluster/up | tail -1)" cargo test -p attune-e2e
//! tests/cluster/down
//! ```
//!
//! Without `ATTUNE_KUBECONFIG` every test passes as skipped, except under `CI=true`, where
//! they fail. Each test works in a namespace of its own; the CRDs are installed once per run.

mod chart;
mod crds;
mod finetunejob;
mod hub;
mod job_failures;
mod kueue;
mod local_runner;
mod model_cache;
mod progress_reports;
mod resilience;
mod scheduling;
mod support;
mod tenancy;
mod tiny_training;
mod training;

//! The watch caches of the operator's leader: FineTuneJobs, their trainer Jobs and pods, and
//! the CachedModels they wait for. The FineTuneJob controller is driven by these watches and
//! reconciles from their stores (no list or get per reconcile); admission reads the same
//! stores in each round; the progress server checks tokens against the jobs.

use std::sync::Arc;

use attune_crds::CachedModel;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::Notify;

use crate::context::GuardedJob;
use crate::slim::Slim;

/// The shared stores, and the signal of a change in any of them.
#[derive(Clone, Debug)]
pub struct Watches {
    /// FineTuneJobs.
    pub jobs: Store<GuardedJob>,
    /// Trainer Jobs.
    pub batches: Store<Job>,
    /// Trainer and fetch pods.
    pub pods: Store<Pod>,
    /// The installation's CachedModels.
    pub models: Store<CachedModel>,
    /// Notified on every change.
    pub changed: Arc<Notify>,
}

/// A watch of `api` cached in a store of slimmed objects ([`Slim`]), which notifies `changed` of
/// every event; the events go on to whoever drives the stream (a controller, or admission
/// itself).
pub fn cached_watch<K>(
    api: Api<K>,
    config: watcher::Config,
    changed: &Arc<Notify>,
) -> (
    Store<K>,
    impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + Slim
        + 'static,
{
    let (store, writer) = reflector::store();
    let changed = Arc::clone(changed);
    let events = watcher(api, config)
        .default_backoff()
        .modify(Slim::slim)
        .reflect(writer)
        .inspect(move |event| {
            if let Err(error) = event {
                tracing::warn!(%error, kind = %K::kind(&()), "watch failed; retrying");
            }
            changed.notify_one();
        });
    (store, events)
}

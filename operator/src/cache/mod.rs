//! The CachedModel controller: one fetch per (model, revision, credential scope), retried with
//! backoff only when a newer job asks for it, and a status every waiting job reads; the claims
//! that bring the cache into each namespace ([`claims`]); and the collector that evicts what no
//! job has used for long ([`retention`]).

pub mod claims;
pub mod config;
mod evict;
mod jobs;
mod reconcile;
pub mod report;
pub mod retention;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use attune_crds::CachedModel;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde_json::json;

pub use jobs::{evict_job, fetch_job, fetch_namespace};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::metrics::ErrorLabels;
use crate::names;

/// Annotation a FineTuneJob sets on a Failed CachedModel to ask for another fetch: the time of
/// the request.
pub const RETRY_ANNOTATION: &str = "attune.dev/fetch-requested-at";
/// Annotation naming the Secret (in the tenant's namespace) whose `HF_TOKEN` the fetch uses.
pub const CREDENTIALS_ANNOTATION: &str = "attune.dev/credentials-secret";

/// Most time between two `lastUsedTime` touches of one entry: eviction thinks in hours, and a
/// touch per started job was a write per job (and a reconcile of the entry) for nothing.
const TOUCH_INTERVAL: Duration = Duration::from_secs(60);

/// When this replica last touched each entry: jobs that start together see the same old
/// `lastUsedTime` in the watch cache, and only the first of them should touch it.
#[derive(Debug)]
pub struct Touches {
    /// Least time between two touches of one entry: a minute, or the collector's check
    /// interval when that is shorter (it judges `lastUsedTime` that often).
    interval: Duration,
    touched: Mutex<HashMap<String, Instant>>,
}

impl Touches {
    /// Touches for the collector configured by `retention`.
    pub fn new(retention: &config::RetentionConfig) -> Self {
        Self {
            interval: TOUCH_INTERVAL.min(Duration::from_secs(retention.check_interval_seconds)),
            touched: Mutex::default(),
        }
    }

    /// Marks `cache` as used now (`status.lastUsedTime`, which keeps it from eviction), unless
    /// that was done less than `interval` ago.
    ///
    /// # Errors
    /// The status patch failed.
    pub async fn touch(&self, client: Client, cache: &CachedModel) -> Result<()> {
        let name = cache.name_any();
        let used_lately = cache
            .status
            .as_ref()
            .and_then(|s| s.last_used_time.as_ref())
            .is_some_and(|used| {
                jiff::Timestamp::now().duration_since(used.0).unsigned_abs() < self.interval
            });
        {
            let mut touched = self.touched.lock().unwrap_or_else(PoisonError::into_inner);
            if used_lately
                || touched
                    .get(&name)
                    .is_some_and(|at| at.elapsed() < self.interval)
            {
                return Ok(());
            }
            touched.insert(name.clone(), Instant::now());
        }
        let api: Api<CachedModel> = Api::all(client);
        let patch = json!({ "status": { "lastUsedTime": jiff::Timestamp::now().to_string() } });
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }
}

/// Runs the controller, the claims and the collector until `shutdown` resolves.
pub async fn run(
    context: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let shutdown = shutdown.shared();
    tokio::join!(
        controller(Arc::clone(&context), shutdown.clone()),
        claims::run(Arc::clone(&context), shutdown.clone()),
        retention::run(context, shutdown),
    );
}

async fn controller(
    context: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let instance = format!("{}={}", names::INSTANCE_LABEL, context.config.instance);
    let caches: Api<CachedModel> = Api::all(context.client.clone());
    let jobs: Api<Job> = Api::all(context.client.clone());
    Controller::new(caches, watcher::Config::default().labels(&instance))
        .owns(
            jobs,
            watcher::Config::default().labels(&format!("{instance},{}", names::CACHED_MODEL_LABEL)),
        )
        .with_config(Config::default().concurrency(context.config.concurrency))
        .graceful_shutdown_on(shutdown)
        .run(reconcile::reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "cache reconcile did not complete");
            }
        })
        .await;
}

fn error_policy(cache: Arc<CachedModel>, error: &Error, context: Arc<Context>) -> Action {
    context
        .metrics
        .errors
        .get_or_create(&ErrorLabels {
            controller: "cachedmodel",
            reason: error.metric_label(),
        })
        .inc();
    tracing::warn!(cached_model = cache.name_any(), %error, "reconcile failed; retrying");
    Action::requeue(context.backoff(&cache.uid().unwrap_or_else(|| cache.name_any())))
}

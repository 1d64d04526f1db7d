//! Prometheus metrics, served at `/metrics` in the OpenMetrics text format.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of the reconcile counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// `finetunejob` or `cachedmodel`.
    pub controller: &'static str,
}

/// Labels of the error counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// `finetunejob` or `cachedmodel`.
    pub controller: &'static str,
    /// [`crate::error::Error::metric_label`].
    pub reason: &'static str,
}

/// Labels of counters with one result word.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// What happened, e.g. `accepted`.
    pub result: &'static str,
}

/// Labels of the phase gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    /// A FineTuneJob phase.
    pub phase: String,
}

/// Labels of a Tenant's gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabels {
    /// The Tenant's name.
    pub tenant: String,
    /// What is counted: GPUs `nominal`, `in_use`, `borrowed` or `lent`; jobs `running` or
    /// `queued`.
    pub state: &'static str,
}

/// Labels of the preemption counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PreemptionLabels {
    /// The victim's Tenant.
    pub tenant: String,
    /// `priority` or `reclaim`.
    pub cause: &'static str,
}

/// Every metric of the operator.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Reconciles run.
    pub reconciles: Family<ControllerLabels, Counter>,
    /// Reconciles that failed, by reason.
    pub errors: Family<ErrorLabels, Counter>,
    /// Reconcile durations in seconds.
    pub duration: Family<ControllerLabels, Histogram>,
    /// FineTuneJobs by phase, as of their latest reconcile.
    pub jobs: Family<PhaseLabels, Gauge>,
    /// Model-cache look-ups: `hit` (Ready), `wait` (being fetched), `miss` (created).
    pub cache_lookups: Family<ResultLabels, Counter>,
    /// Progress reports: `accepted` or the refusal's reason.
    pub progress_reports: Family<ResultLabels, Counter>,
    /// Objects that do not deserialize, skipped.
    pub invalid_objects: Counter,
    /// Each managed Tenant's GPUs, as of the latest admission round.
    pub tenant_gpus: Family<TenantLabels, Gauge>,
    /// Each managed Tenant's jobs, as of the latest admission round.
    pub tenant_jobs: Family<TenantLabels, Gauge>,
    /// Jobs preempted, by their Tenant and the cause.
    pub preemptions: Family<PreemptionLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("attune");
        let reconciles = Family::<ControllerLabels, Counter>::default();
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by reason",
            errors.clone(),
        );
        let duration = Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 14))
        });
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile durations",
            duration.clone(),
        );
        let jobs = Family::<PhaseLabels, Gauge>::default();
        registry.register("finetunejobs", "FineTuneJobs by phase", jobs.clone());
        let cache_lookups = Family::<ResultLabels, Counter>::default();
        registry.register(
            "model_cache_lookups",
            "Model-cache look-ups by result (hit, wait, miss)",
            cache_lookups.clone(),
        );
        let progress_reports = Family::<ResultLabels, Counter>::default();
        registry.register(
            "progress_reports",
            "Progress reports by result",
            progress_reports.clone(),
        );
        let invalid_objects = Counter::default();
        registry.register(
            "invalid_objects",
            "Objects that did not deserialize and were skipped",
            invalid_objects.clone(),
        );
        let tenant_gpus = Family::<TenantLabels, Gauge>::default();
        registry.register(
            "tenant_gpus",
            "GPUs of each Tenant: nominal quota, in use, borrowed, lent",
            tenant_gpus.clone(),
        );
        let tenant_jobs = Family::<TenantLabels, Gauge>::default();
        registry.register(
            "tenant_jobs",
            "FineTuneJobs of each Tenant: running, queued",
            tenant_jobs.clone(),
        );
        let preemptions = Family::<PreemptionLabels, Counter>::default();
        registry.register(
            "preemptions",
            "Jobs preempted, by Tenant and cause",
            preemptions.clone(),
        );
        Self {
            registry,
            reconciles,
            errors,
            duration,
            jobs,
            cache_lookups,
            progress_reports,
            invalid_objects,
            tenant_gpus,
            tenant_jobs,
            preemptions,
        }
    }
}

impl Metrics {
    /// The metrics as OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// Counts a progress report.
    pub fn progress_report(&self, result: &'static str) {
        self.progress_reports
            .get_or_create(&ResultLabels { result })
            .inc();
    }
}

/// Times a reconcile from creation to drop.
#[derive(Debug)]
pub struct ReconcileTimer {
    metrics: Arc<Metrics>,
    controller: &'static str,
    started: std::time::Instant,
}

impl ReconcileTimer {
    /// Counts a reconcile and starts its timer.
    pub fn start(metrics: Arc<Metrics>, controller: &'static str) -> Self {
        metrics
            .reconciles
            .get_or_create(&ControllerLabels { controller })
            .inc();
        Self {
            metrics,
            controller,
            started: std::time::Instant::now(),
        }
    }
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.metrics
            .duration
            .get_or_create(&ControllerLabels {
                controller: self.controller,
            })
            .observe(self.started.elapsed().as_secs_f64());
    }
}

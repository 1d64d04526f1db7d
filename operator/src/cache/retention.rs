//! Garbage collection of the model cache (`modelCache.retention`). Every
//! `checkIntervalSeconds` the collector marks the entries in use as used now (so `lastUsedTime`
//! stays current while jobs wait and run), chooses what to evict ([`choose`], pure), and asks
//! for each eviction with an annotation; the CachedModel's own reconcile carries it out
//! ([`super::evict`]). An entry any waiting or running job needs is never chosen, nor one that
//! is still downloading.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use attune_crds::{CachePhase, CachedModel, FineTuneJobStatus, Phase};
use futures::FutureExt;
use jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::claims;
use crate::context::Context;
use crate::error::Result;
use crate::finetunejob::cached_model_name;
use crate::metrics::ErrorLabels;
use crate::names;

/// Annotation the collector sets to ask for an entry's eviction: the time of the request.
pub const EVICT_ANNOTATION: &str = "attune.dev/evict-requested-at";
/// Annotation beside it: why (shown in the entry's status while it is evicted).
pub const EVICT_REASON_ANNOTATION: &str = "attune.dev/evict-reason";

/// What the collector weighs of one entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The CachedModel's name.
    pub name: String,
    /// Its phase.
    pub phase: Option<CachePhase>,
    /// When a job last used it (or when it was created, if none has).
    pub last_used: Timestamp,
    /// Its files' size.
    pub size_bytes: u64,
    /// Whether an eviction was asked for already.
    pub evicting: bool,
}

/// The limits of `modelCache.retention`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Entries unused for longer go (`None`: no age limit).
    pub max_unused: Option<Duration>,
    /// Ready entries' sizes added up may not exceed it (`None`: no budget).
    pub max_total_bytes: Option<u64>,
}

/// The entries to evict and why, in the order chosen: those unused for longer than the limit,
/// then — while the Ready entries kept add up to more than the budget — the least recently
/// used. Never an entry in `needed` (a waiting or running job's), one still `Pending` or
/// `Downloading`, or one already being evicted.
pub fn choose(
    entries: &[Entry],
    needed: &HashSet<String>,
    now: Timestamp,
    limits: Limits,
) -> Vec<(String, String)> {
    let evictable = |e: &&Entry| {
        !e.evicting
            && !needed.contains(&e.name)
            && matches!(e.phase, Some(CachePhase::Ready | CachePhase::Failed))
    };
    let mut chosen: Vec<(String, String)> = Vec::new();
    if let Some(max_unused) = limits.max_unused {
        for entry in entries.iter().filter(evictable) {
            let unused = now.duration_since(entry.last_used).unsigned_abs();
            if unused > max_unused {
                chosen.push((
                    entry.name.clone(),
                    format!(
                        "unused since {} (longer than modelCache.retention.maxUnusedSeconds {})",
                        entry.last_used,
                        max_unused.as_secs()
                    ),
                ));
            }
        }
    }
    let Some(budget) = limits.max_total_bytes else {
        return chosen;
    };
    let is_chosen = |name: &str, chosen: &[(String, String)]| chosen.iter().any(|(n, _)| n == name);
    let kept = |e: &&Entry| {
        !e.evicting && e.phase == Some(CachePhase::Ready) && !is_chosen(&e.name, &chosen)
    };
    let mut total: u64 = entries.iter().filter(kept).map(|e| e.size_bytes).sum();
    let mut least_recent: Vec<&Entry> = entries.iter().filter(kept).filter(evictable).collect();
    least_recent.sort_by(|a, b| a.last_used.cmp(&b.last_used).then(a.name.cmp(&b.name)));
    for entry in least_recent {
        if total <= budget {
            break;
        }
        chosen.push((
            entry.name.clone(),
            format!(
                "least recently used (since {}) while the cache held {total} bytes, more than \
                 modelCache.retention.maxTotalSize ({budget} bytes)",
                entry.last_used
            ),
        ));
        total -= entry.size_bytes;
    }
    chosen
}

/// What the collector weighs of a CachedModel.
pub fn entry(cache: &CachedModel) -> Entry {
    let status = cache.status.clone().unwrap_or_default();
    Entry {
        name: cache.name_any(),
        phase: status.phase,
        last_used: last_used(cache),
        size_bytes: status.size_bytes.unwrap_or(0),
        evicting: cache.annotations().contains_key(EVICT_ANNOTATION),
    }
}

/// When a job last used the entry, or when it was created if none has.
pub fn last_used(cache: &CachedModel) -> Timestamp {
    let created = cache
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(Timestamp::UNIX_EPOCH, |t| t.0);
    cache
        .status
        .as_ref()
        .and_then(|s| s.last_used_time.as_ref())
        .map_or(created, |t| t.0.max(created))
}

/// The entries that FineTuneJobs not yet finished need, from the job controller's cache;
/// `None` until that cache has been filled (then nothing may be judged unused).
pub fn needed(context: &Context) -> Option<HashSet<String>> {
    let store = context.watches.get().map(|w| &w.jobs)?;
    store.wait_until_ready().now_or_never()?.ok()?;
    let finished = |status: &Option<FineTuneJobStatus>| {
        status
            .as_ref()
            .and_then(|s| s.phase)
            .is_some_and(|p| matches!(p, Phase::Succeeded | Phase::Failed))
    };
    Some(
        store
            .state()
            .iter()
            .filter_map(|guarded| guarded.0.as_ref().ok())
            .filter(|job| !finished(&job.status))
            .map(|job| cached_model_name(job, &context.config.instance))
            .collect(),
    )
}

/// One pass of the collector.
///
/// # Errors
/// An API call failed.
pub async fn collect(context: &Context) -> Result<()> {
    let retention = &context.config.model_cache.retention;
    let Some(needed) = needed(context) else {
        return Ok(());
    };
    let api: Api<CachedModel> = Api::all(context.client.clone());
    let selector = format!("{}={}", names::INSTANCE_LABEL, context.config.instance);
    let caches = api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    let now = Timestamp::now();
    let interval = Duration::from_secs(retention.check_interval_seconds);
    for cache in caches.iter().filter(|c| needed.contains(&c.name_any())) {
        if now.duration_since(last_used(cache)).unsigned_abs() >= interval {
            context.touches.touch(context.client.clone(), cache).await?;
        }
    }
    let limits = Limits {
        max_unused: (retention.max_unused_seconds > 0)
            .then(|| Duration::from_secs(retention.max_unused_seconds)),
        // Checked when the configuration was read.
        max_total_bytes: retention.max_total_bytes().ok().flatten(),
    };
    let entries: Vec<Entry> = caches
        .iter()
        .filter(|c| c.metadata.deletion_timestamp.is_none())
        .map(entry)
        .collect();
    for (name, why) in choose(&entries, &needed, now, limits) {
        tracing::info!(cached_model = %name, %why, "evicting");
        let patch = json!({ "metadata": { "annotations": {
            EVICT_ANNOTATION: now.to_string(),
            EVICT_REASON_ANNOTATION: why,
        } } });
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    claims::release_stale(&context.client, &context.config).await
}

/// Runs the collector every `checkIntervalSeconds` until `shutdown` resolves.
pub async fn run(
    context: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let interval = Duration::from_secs(context.config.model_cache.retention.check_interval_seconds);
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = &mut shutdown => return,
        }
        if let Err(error) = collect(&context).await {
            context
                .metrics
                .errors
                .get_or_create(&ErrorLabels {
                    controller: "modelcachegc",
                    reason: error.metric_label(),
                })
                .inc();
            tracing::warn!(%error, "a model-cache collection failed; the next one retries");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn at(hours_ago: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 - hours_ago * 3600).expect("time")
    }

    fn entry(name: &str, phase: CachePhase, hours_ago: i64, size_bytes: u64) -> Entry {
        Entry {
            name: name.to_owned(),
            phase: Some(phase),
            last_used: at(hours_ago),
            size_bytes,
            evicting: false,
        }
    }

    fn names(chosen: &[(String, String)]) -> Vec<&str> {
        chosen.iter().map(|(n, _)| n.as_str()).collect()
    }

    fn needing(names: &[&str]) -> HashSet<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn entries_unused_for_longer_than_the_limit_go() {
        let entries = [
            entry("old", CachePhase::Ready, 50, 10),
            entry("recent", CachePhase::Ready, 2, 10),
            entry("failed-long-ago", CachePhase::Failed, 49, 0),
        ];
        let limits = Limits {
            max_unused: Some(48 * HOUR),
            max_total_bytes: None,
        };
        let chosen = choose(&entries, &HashSet::new(), at(0), limits);
        assert_eq!(names(&chosen), ["old", "failed-long-ago"]);
        assert!(chosen[0].1.contains("unused since"), "{}", chosen[0].1);
    }

    #[test]
    fn an_entry_a_job_needs_or_still_downloading_is_never_chosen() {
        let entries = [
            entry("needed", CachePhase::Ready, 500, 100),
            entry("downloading", CachePhase::Downloading, 500, 0),
            entry("pending", CachePhase::Pending, 500, 0),
            Entry {
                evicting: true,
                ..entry("asked-already", CachePhase::Ready, 500, 100)
            },
        ];
        let limits = Limits {
            max_unused: Some(HOUR),
            max_total_bytes: Some(0),
        };
        assert!(choose(&entries, &needing(&["needed"]), at(0), limits).is_empty());
    }

    #[test]
    fn over_the_budget_the_least_recently_used_go_until_the_rest_fits() {
        let entries = [
            entry("a", CachePhase::Ready, 5, 40),
            entry("b", CachePhase::Ready, 9, 30),
            entry("c", CachePhase::Ready, 1, 50),
            entry("d", CachePhase::Ready, 7, 20),
            entry("in-use", CachePhase::Ready, 10, 60),
        ];
        let limits = Limits {
            max_unused: None,
            max_total_bytes: Some(120),
        };
        // 200 bytes; b (30) then d (20) then a (40) are the least recent evictable: 200 → 110.
        let chosen = choose(&entries, &needing(&["in-use"]), at(0), limits);
        assert_eq!(names(&chosen), ["b", "d", "a"]);
        assert!(
            chosen[0].1.contains("maxTotalSize (120 bytes)"),
            "{}",
            chosen[0].1
        );
        // Within the budget nothing goes.
        let roomy = Limits {
            max_total_bytes: Some(200),
            ..limits
        };
        assert!(choose(&entries, &needing(&["in-use"]), at(0), roomy).is_empty());
    }

    #[test]
    fn entries_evicted_for_age_count_no_more_against_the_budget() {
        let entries = [
            entry("stale", CachePhase::Ready, 100, 80),
            entry("fresh", CachePhase::Ready, 1, 50),
            entry("older", CachePhase::Ready, 3, 30),
        ];
        let limits = Limits {
            max_unused: Some(48 * HOUR),
            max_total_bytes: Some(60),
        };
        let chosen = choose(&entries, &HashSet::new(), at(0), limits);
        assert_eq!(names(&chosen), ["stale", "older"]);
    }

    #[test]
    fn a_budget_the_jobs_in_use_exceed_evicts_all_else_and_no_more() {
        let entries = [
            entry("used", CachePhase::Ready, 10, 500),
            entry("idle", CachePhase::Ready, 1, 10),
        ];
        let limits = Limits {
            max_unused: None,
            max_total_bytes: Some(100),
        };
        let chosen = choose(&entries, &needing(&["used"]), at(0), limits);
        assert_eq!(names(&chosen), ["idle"]);
    }

    #[test]
    fn without_limits_nothing_goes() {
        let entries = [entry("a", CachePhase::Ready, 10_000, 1 << 40)];
        let limits = Limits {
            max_unused: None,
            max_total_bytes: None,
        };
        assert!(choose(&entries, &HashSet::new(), at(0), limits).is_empty());
    }
}

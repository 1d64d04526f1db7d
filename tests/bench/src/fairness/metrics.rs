//! The figures of one run, from what the watches saw (seconds since the first create): how long
//! the whole workload took, how busy the GPUs were, how long jobs queued, and how fairly the
//! GPUs were shared while tenants competed for them.
//!
//! Fairness is measured while at least two tenants have jobs waiting to start: then each such
//! tenant should hold its weight's part of the GPUs those tenants hold together. (Over the whole
//! run every tenant gets exactly the GPU-seconds its jobs ask for, whatever the order, so the
//! whole run says nothing about fairness.)

use std::time::Duration;

use crate::common::stats::quantile;

/// A trainer pod that ran: its tenant, its GPUs and when it ran (Running until it ended or was
/// gone; a stopping pod still holds its GPUs).
#[derive(Clone, Debug, PartialEq)]
pub struct Span {
    pub tenant: usize,
    pub gpus: u32,
    pub start: f64,
    pub end: f64,
}

/// One job: its tenant, and when it was created, first ran and finished.
#[derive(Clone, Debug, PartialEq)]
pub struct JobTimes {
    pub tenant: usize,
    pub created: f64,
    pub started: Option<f64>,
    pub finished: Option<f64>,
}

/// What one run measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Figures {
    /// First create → every job finished.
    pub makespan: f64,
    /// First create → every job's first pod Running.
    pub all_started: f64,
    /// GPU-seconds of running pods / (all GPUs × makespan).
    pub utilisation: f64,
    /// Create → first pod Running.
    pub wait_p50: Duration,
    pub wait_p99: Duration,
    /// Per tenant: its GPU-seconds while contended over its weight's part of them (1 is fair).
    pub fair_ratio: Vec<f64>,
    /// Seconds in which at least two tenants had jobs waiting.
    pub contended: f64,
    /// Jain's index of `fair_ratio` (1 when every tenant got its part).
    pub jain: f64,
}

/// The step of the integrals over time.
const STEP: f64 = 0.25;

/// The figures of `jobs` and their pods' `spans`, for tenants of `weights` on `gpus` GPUs.
pub fn measure(spans: &[Span], jobs: &[JobTimes], weights: &[u32], gpus: u64) -> Figures {
    let makespan = jobs.iter().filter_map(|j| j.finished).fold(0.0, f64::max);
    let all_started = jobs.iter().filter_map(|j| j.started).fold(0.0, f64::max);
    let busy: f64 = spans
        .iter()
        .map(|s| f64::from(s.gpus) * (s.end.min(makespan) - s.start).max(0.0))
        .sum();
    let utilisation = busy / (gpus.max(1) as f64 * makespan.max(STEP));
    let mut waits: Vec<Duration> = jobs
        .iter()
        .filter_map(|j| Some(Duration::from_secs_f64((j.started? - j.created).max(0.0))))
        .collect();
    waits.sort();

    let tenants = weights.len();
    let mut got = vec![0.0; tenants];
    let mut due = vec![0.0; tenants];
    let mut contended = 0.0;
    let mut t = 0.0;
    while t < makespan {
        let waiting: Vec<bool> = (0..tenants)
            .map(|i| {
                jobs.iter()
                    .any(|j| j.tenant == i && j.created <= t && j.started.is_none_or(|s| s > t))
            })
            .collect();
        if waiting.iter().filter(|w| **w).count() >= 2 {
            let mut held = vec![0.0; tenants];
            for s in spans.iter().filter(|s| s.start <= t && t < s.end) {
                held[s.tenant] += f64::from(s.gpus);
            }
            let in_play: Vec<usize> = (0..tenants).filter(|i| waiting[*i]).collect();
            let total: f64 = in_play.iter().map(|i| held[*i]).sum();
            let weight: f64 = in_play.iter().map(|i| f64::from(weights[*i])).sum();
            for &i in &in_play {
                got[i] += held[i] * STEP;
                due[i] += total * f64::from(weights[i]) / weight * STEP;
            }
            contended += STEP;
        }
        t += STEP;
    }
    let fair_ratio: Vec<f64> = got
        .iter()
        .zip(&due)
        .map(|(g, d)| if *d > 0.0 { g / d } else { 1.0 })
        .collect();
    let sum: f64 = fair_ratio.iter().sum();
    let squares: f64 = fair_ratio.iter().map(|r| r * r).sum();
    Figures {
        makespan,
        all_started,
        utilisation,
        wait_p50: quantile(&waits, 0.5),
        wait_p99: quantile(&waits, 0.99),
        jain: if squares > 0.0 {
            sum * sum / (tenants as f64 * squares)
        } else {
            1.0
        },
        fair_ratio,
        contended,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(tenant: usize, started: f64, finished: f64) -> JobTimes {
        JobTimes {
            tenant,
            created: 0.0,
            started: Some(started),
            finished: Some(finished),
        }
    }

    /// A job of each of tenants 0 and 1 that runs at once, and one of each that waits 10 s.
    fn two_rounds() -> [JobTimes; 4] {
        [
            job(0, 0.0, 10.0),
            job(1, 0.0, 10.0),
            job(0, 10.0, 20.0),
            job(1, 10.0, 20.0),
        ]
    }

    fn span(tenant: usize, gpus: u32, start: f64, end: f64) -> Span {
        Span {
            tenant,
            gpus,
            start,
            end,
        }
    }

    #[test]
    fn shares_by_weight_while_both_wait_are_fair_and_the_gpus_busy_all_along() {
        // 4 GPUs; tenant 1 (weight 3) holds 3, tenant 0 (weight 1) holds 1, for 10 s; each
        // has a second job waiting until 10 s, which then runs 10 s on the same GPUs.
        let spans = [
            span(0, 1, 0.0, 10.0),
            span(1, 3, 0.0, 10.0),
            span(0, 1, 10.0, 20.0),
            span(1, 3, 10.0, 20.0),
        ];
        let jobs = two_rounds();
        let figures = measure(&spans, &jobs, &[1, 3], 4);
        assert_eq!(figures.makespan, 20.0);
        assert_eq!(figures.all_started, 10.0);
        assert!((figures.utilisation - 1.0).abs() < 1e-9, "{figures:?}");
        assert!((figures.contended - 10.0).abs() < 1e-9, "{figures:?}");
        for ratio in &figures.fair_ratio {
            assert!((ratio - 1.0).abs() < 1e-9, "{figures:?}");
        }
        assert!((figures.jain - 1.0).abs() < 1e-9);
        assert_eq!(figures.wait_p99, Duration::from_secs(10));
        assert_eq!(figures.wait_p50, Duration::ZERO);
    }

    #[test]
    fn equal_halves_for_unequal_weights_are_unfair_and_idle_gpus_count_against_utilisation() {
        // Weights 1 and 3 but 2 GPUs each while both wait: tenant 0 got twice its part (2 of
        // the 1 due), tenant 1 two thirds (2 of 3); then the GPUs idle for 10 s.
        let spans = [span(0, 2, 0.0, 10.0), span(1, 2, 0.0, 10.0)];
        let jobs = two_rounds();
        let figures = measure(&spans, &jobs, &[1, 3], 4);
        assert!((figures.fair_ratio[0] - 2.0).abs() < 1e-9, "{figures:?}");
        assert!(
            (figures.fair_ratio[1] - 2.0 / 3.0).abs() < 1e-9,
            "{figures:?}"
        );
        assert!(figures.jain < 0.8, "{figures:?}");
        assert!((figures.utilisation - 0.5).abs() < 1e-9, "{figures:?}");
    }

    #[test]
    fn a_tenant_alone_with_waiting_jobs_is_no_contention() {
        let spans = [span(0, 4, 0.0, 10.0), span(0, 4, 10.0, 20.0)];
        let jobs = [job(0, 0.0, 10.0), job(0, 10.0, 20.0)];
        let figures = measure(&spans, &jobs, &[1, 3], 4);
        assert_eq!(figures.contended, 0.0);
        assert_eq!(figures.fair_ratio, [1.0, 1.0]);
    }
}

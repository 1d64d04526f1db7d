//! The workload both modes run, the same in each: tenants with weights 1, 2, 3, 4 (repeating)
//! and nominal GPU quotas in proportion to them, together all the cluster's GPUs, in one cohort;
//! jobs dealt to the tenants in turn (so every tenant asks for about as much), each 1, 2, 4 or
//! 8 GPUs and high or low priority, drawn from a seeded generator.

/// Weights of tenants 0, 1, 2, 3, then again.
const WEIGHTS: [u32; 4] = [1, 2, 3, 4];

/// One tenant: a namespace of the workload, a Tenant or a ClusterQueue.
#[derive(Clone, Debug, PartialEq)]
pub struct TenantPlan {
    /// `t0`, `t1`, ...: the suffix of its namespace.
    pub name: String,
    /// Its weight for contended GPUs.
    pub weight: u32,
    /// GPUs guaranteed to it.
    pub nominal: u32,
}

/// One FineTuneJob.
#[derive(Clone, Debug, PartialEq)]
pub struct JobPlan {
    /// Index of its tenant.
    pub tenant: usize,
    /// Its name, unique over all tenants: `<tenant>-<n>`.
    pub name: String,
    /// GPUs it asks for.
    pub gpus: u32,
    /// High priority (the others are low).
    pub high: bool,
}

/// Tenants and jobs.
#[derive(Clone, Debug)]
pub struct Plan {
    pub tenants: Vec<TenantPlan>,
    /// In the order they are created.
    pub jobs: Vec<JobPlan>,
}

/// xorshift64*: a few lines of a fixed generator, so a seed gives the same jobs anywhere.
struct Draw(u64);

impl Draw {
    /// A number in `0..100`.
    fn percent(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) % 100
    }
}

impl Plan {
    /// `tenants` tenants sharing `gpus` GPUs, and `jobs` jobs; 40 % ask for 1 GPU, 30 % for 2,
    /// 20 % for 4, 10 % for 8; a fifth are high priority.
    pub fn new(tenants: usize, jobs: usize, gpus: u32, seed: u64) -> Self {
        let weights: Vec<u32> = (0..tenants).map(|i| WEIGHTS[i % WEIGHTS.len()]).collect();
        let total_weight: u32 = weights.iter().sum();
        let mut nominal: Vec<u32> = weights
            .iter()
            .map(|w| (u64::from(gpus) * u64::from(*w) / u64::from(total_weight.max(1))) as u32)
            .collect();
        // What the rounding left over goes to the first tenants, one each.
        let left = gpus.saturating_sub(nominal.iter().sum());
        for n in nominal.iter_mut().take(left as usize) {
            *n += 1;
        }
        let tenants: Vec<TenantPlan> = weights
            .into_iter()
            .zip(nominal)
            .enumerate()
            .map(|(i, (weight, nominal))| TenantPlan {
                name: format!("t{i}"),
                weight,
                nominal,
            })
            .collect();
        let mut draw = Draw(seed.max(1));
        let jobs = (0..jobs)
            .map(|i| {
                let tenant = i % tenants.len().max(1);
                let gpus = match draw.percent() {
                    0..40 => 1,
                    40..70 => 2,
                    70..90 => 4,
                    _ => 8,
                };
                JobPlan {
                    tenant,
                    name: format!("t{tenant}-{}", i / tenants.len().max(1)),
                    gpus,
                    high: draw.percent() < 20,
                }
            })
            .collect();
        Self { tenants, jobs }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nominal_quotas_follow_the_weights_and_add_up_to_every_gpu() {
        let plan = Plan::new(10, 0, 1600, 1);
        let weights: Vec<u32> = plan.tenants.iter().map(|t| t.weight).collect();
        assert_eq!(weights, [1, 2, 3, 4, 1, 2, 3, 4, 1, 2]);
        assert_eq!(plan.tenants.iter().map(|t| t.nominal).sum::<u32>(), 1600);
        // 1600 / 23 per unit of weight, rounded down, the rest to the first tenants
        assert_eq!(plan.tenants[3].nominal, 279);
        assert_eq!(plan.tenants[0].nominal, 70);
        assert_eq!(plan.tenants[9].nominal, 139);
    }

    #[test]
    fn jobs_are_dealt_in_turn_with_a_mix_of_sizes_and_priorities_that_a_seed_fixes() {
        let plan = Plan::new(4, 2000, 160, 7);
        assert_eq!(plan.jobs, Plan::new(4, 2000, 160, 7).jobs);
        assert_ne!(plan.jobs, Plan::new(4, 2000, 160, 8).jobs);
        assert_eq!(plan.jobs[5].tenant, 1);
        assert_eq!(plan.jobs[5].name, "t1-1");
        let share = |gpus: u32| plan.jobs.iter().filter(|j| j.gpus == gpus).count() as f64 / 2000.0;
        for (gpus, expected) in [(1, 0.4), (2, 0.3), (4, 0.2), (8, 0.1)] {
            assert!(
                (share(gpus) - expected).abs() < 0.05,
                "{gpus} GPUs: {}",
                share(gpus)
            );
        }
        let high = plan.jobs.iter().filter(|j| j.high).count() as f64 / 2000.0;
        assert!((high - 0.2).abs() < 0.05, "high priority: {high}");
    }
}

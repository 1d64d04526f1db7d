//! Tenants' GPU quotas on the harness: three tenants in one cohort share twenty simulated GPU
//! nodes; sixty jobs (trainer pods simulated by kwok, ended by the test) stay within each
//! tenant's nominal quota plus borrowing limit, idle quota is borrowed and taken back by
//! preemption; with the real trainer, a preempted job resumes from its checkpoint to the
//! weights of an uninterrupted run; references into other namespaces are refused; a namespace
//! two Tenants claim runs nothing until one lets go.

mod nodes;
mod sampler;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{
    Operator, TRAINING_WAIT, TestNamespace, done_event, intents_and_models, job, phase,
    simulated_trainers, start_event, wait_for_job,
};
use nodes::GpuNodes;
use sampler::{Sample, Sampler};

/// How long a simulated trainer runs before the test ends it.
const RUN_FOR: Duration = Duration::from_secs(4);

/// One tenant of the test: its namespace and quota, and the GPUs of the jobs it submits.
struct Team<'a> {
    ns: &'a TestNamespace,
    tenant: String,
    nominal: u32,
    limit: u32,
    jobs: Vec<u32>,
}

impl Team<'_> {
    fn ceiling(&self) -> u32 {
        self.nominal + self.limit
    }
}

/// Tenant `name` owning `ns` (created through `owner`, which deletes it at the end); its name
/// as created.
fn tenant(
    owner: &TestNamespace,
    name: &str,
    ns: &TestNamespace,
    quota: Value,
    weight: u32,
) -> String {
    let manifest = json!({
        "apiVersion": "attune.dev/v1alpha1", "kind": "Tenant",
        "metadata": { "name": name },
        "spec": { "namespaces": [ns.name], "quota": quota, "weight": weight },
    });
    let adopted = owner.adopt(&manifest);
    owner.apply(&manifest).expect_success();
    adopted["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The trainer pods of `namespaces` (all of them, in one call).
fn trainer_pods(ns: &TestNamespace, namespaces: &[&str]) -> Vec<Value> {
    ns.cluster
        .get_json(&["pods", "-A", "-l", "attune.dev/job"])
        .and_then(|l| l["items"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| namespaces.contains(&p["metadata"]["namespace"].as_str().unwrap_or_default()))
        .collect()
}

/// Ends, as a successful trainer would, every trainer pod seen running for `RUN_FOR`
/// (`seen`: when the test first saw each pod running).
fn finish_trainers(ns: &TestNamespace, pods: &[Value], seen: &mut HashMap<String, Instant>) {
    for pod in pods {
        let running =
            pod["status"]["phase"] == "Running" && pod["metadata"]["deletionTimestamp"].is_null();
        let uid = pod["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if !running || pod["metadata"]["annotations"]["attune.dev/test-outcome"].is_string() {
            continue;
        }
        if seen.entry(uid).or_insert_with(Instant::now).elapsed() < RUN_FOR {
            continue;
        }
        let namespace = pod["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = pod["metadata"]["name"].as_str().unwrap_or_default();
        let job = pod["metadata"]["annotations"]["attune.dev/job-name"]
            .as_str()
            .unwrap_or_default();
        // The pod may go (preempted) between listing and annotating: ignore that race.
        let _ = ns
            .cluster
            .kubectl(&[
                "--namespace",
                namespace,
                "annotate",
                "pod",
                name,
                "attune.dev/test-exit-code=0",
                &format!("attune.dev/test-message={}", done_event(job)),
                "attune.dev/test-outcome=succeeded",
            ])
            .into_result();
    }
}

/// GPUs held per namespace by `pods` (every pod not Succeeded or Failed).
fn held(pods: &[Value], namespace: &str) -> u32 {
    pods.iter()
        .filter(|p| p["metadata"]["namespace"] == namespace)
        .filter(|p| !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
        .filter_map(|p| {
            p["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
                .as_str()?
                .parse::<u32>()
                .ok()
        })
        .sum()
}

/// Jobs of `ns` in phase Succeeded.
fn succeeded(ns: &TestNamespace) -> usize {
    ns.get_json(&["finetunejobs"])
        .and_then(|l| l["items"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter(|j| phase(j) == "Succeeded")
        .count()
}

/// The notes of the namespace's Events of `reason`.
fn event_notes(ns: &TestNamespace, reason: &str) -> Vec<String> {
    ns.get_json(&["events", "--field-selector", &format!("reason={reason}")])
        .and_then(|l| l["items"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|e| {
            e["note"]
                .as_str()
                .or(e["message"].as_str())
                .map(str::to_owned)
        })
        .collect()
}

#[test]
fn three_tenants_share_twenty_gpu_nodes_within_quota_borrowing_and_reclaiming() {
    let Some(a) = TestNamespace::create("tenancy-a") else {
        return;
    };
    let b = TestNamespace::create("tenancy-b").expect("the cluster");
    let c = TestNamespace::create("tenancy-c").expect("the cluster");
    // 20 nodes × 2 GPUs: exactly the cohort's nominal quotas (16 + 16 + 8).
    let nodes = GpuNodes::create(&a, 20, 2);
    let cohort = a.name.clone();
    let quota = |nominal: u32, limit: u32| json!({ "nominal": nominal, "borrowingLimit": limit, "cohort": cohort });
    let sizes = |n: usize, pattern: &[u32]| {
        (0..n)
            .map(|i| pattern[i % pattern.len()])
            .collect::<Vec<u32>>()
    };
    let teams = [
        Team {
            tenant: tenant(&a, "a", &a, quota(16, 8), 2),
            ns: &a,
            nominal: 16,
            limit: 8,
            jobs: sizes(24, &[2, 1, 1]),
        },
        Team {
            tenant: tenant(&a, "b", &b, quota(16, 8), 1),
            ns: &b,
            nominal: 16,
            limit: 8,
            jobs: sizes(20, &[1, 2]),
        },
        Team {
            tenant: tenant(&a, "c", &c, quota(8, 4), 1),
            ns: &c,
            nominal: 8,
            limit: 4,
            jobs: sizes(16, &[1]),
        },
    ];
    let namespaces: Vec<&str> = teams.iter().map(|t| t.ns.name.as_str()).collect();
    let operator = Operator::start_with(&a, |config| {
        simulated_trainers(config);
        config["watchNamespaces"] = json!(namespaces);
        config["tenancy"] = json!({ "preemption": { "minimumRuntimeSeconds": 3 } });
    });
    for team in &teams {
        intents_and_models(team.ns);
    }
    let submit = |team: &Team<'_>| {
        for (i, gpus) in team.jobs.iter().enumerate() {
            let mut resources = nodes.placement();
            resources["gpus"] = json!(gpus);
            let name = format!("job-{i:02}");
            team.ns
                .apply(&job(
                    &name,
                    "intents",
                    1,
                    &json!({ "resources": resources }),
                ))
                .expect_success();
        }
    };
    let sampler = Sampler::start(
        &a,
        namespaces.iter().map(|n| (*n).to_owned()).collect(),
        teams.iter().map(|t| t.tenant.clone()).collect(),
    );
    let begin = Instant::now();
    // a and b first: together they want more than their nominal quotas, and c's are idle.
    submit(&teams[0]);
    submit(&teams[1]);
    let total: usize = teams.iter().map(|t| t.jobs.len()).sum();
    let mut c_since: Option<f64> = None;
    let mut seen = HashMap::new();
    let deadline = begin + Duration::from_secs(240);
    loop {
        let pods = trainer_pods(&a, &namespaces);
        if c_since.is_none() && held(&pods, &a.name) + held(&pods, &b.name) > 32 {
            // Borrowed: now c wants its nominal quota back.
            c_since = Some(begin.elapsed().as_secs_f64());
            submit(&teams[2]);
        }
        finish_trainers(&a, &pods, &mut seen);
        let done: usize = teams.iter().map(|t| succeeded(t.ns)).sum();
        if done == total {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{done} of {total} jobs succeeded in {:?}; c submitted at {c_since:?} s",
            begin.elapsed()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let elapsed = begin.elapsed();
    let samples = sampler.stop();
    report(&teams, &samples, elapsed);

    let c_since = c_since.expect("a and b borrowed c's idle quota");
    for sample in &samples {
        for team in &teams {
            let used = sample.pods[&team.ns.name];
            assert!(
                used <= team.ceiling(),
                "{} held {used} GPUs at {:.1} s, over nominal {} + borrowing limit {}",
                team.tenant,
                sample.at,
                team.nominal,
                team.limit
            );
        }
        let all: u32 = sample.pods.values().sum();
        assert!(
            all <= 40,
            "the cohort held {all} GPUs at {:.1} s",
            sample.at
        );
    }
    let peak = |team: &Team<'_>, after: f64| {
        samples
            .iter()
            .filter(|s| s.at >= after)
            .map(|s| s.pods[&team.ns.name])
            .max()
            .unwrap_or(0)
    };
    assert!(
        peak(&teams[0], 0.0) > 16 || peak(&teams[1], 0.0) > 16,
        "neither a nor b borrowed"
    );
    let c_peak = peak(&teams[2], c_since);
    assert!(c_peak >= 8, "c took back only {c_peak} of its 8 GPUs");
    let borrowed = samples.iter().any(|s| {
        s.tenants.get(&teams[0].tenant).is_some_and(|t| t.1 > 0)
            || s.tenants.get(&teams[1].tenant).is_some_and(|t| t.1 > 0)
    });
    let lent = samples
        .iter()
        .any(|s| s.tenants.get(&teams[2].tenant).is_some_and(|t| t.2 > 0));
    assert!(
        borrowed && lent,
        "the Tenants' status showed borrowing ({borrowed}) and lending ({lent})"
    );
    let reclaims: Vec<String> = [&a, &b]
        .iter()
        .flat_map(|ns| event_notes(ns, "Preempted"))
        .filter(|n| n.contains("takes back its nominal quota"))
        .collect();
    assert!(!reclaims.is_empty(), "no job of a or b was preempted for c");
    assert!(
        reclaims.iter().all(|n| n.contains(&teams[2].tenant)),
        "{reclaims:?}"
    );
    let borrowing = [&a, &b]
        .iter()
        .map(|ns| event_notes(ns, "Borrowing").len())
        .sum::<usize>();
    assert!(borrowing > 0, "no Borrowing Event");
    // The same story in /metrics: each Tenant's quota, and the reclaims counted on the victims'.
    let metrics = operator.metrics_text();
    for team in &teams {
        let nominal = format!(
            "attune_tenant_gpus{{tenant=\"{}\",state=\"nominal\"}} {}",
            team.tenant, team.nominal
        );
        assert!(metrics.contains(&nominal), "no `{nominal}` in:\n{metrics}");
    }
    let reclaimed = |team: &Team<'_>| {
        format!(
            "attune_preemptions_total{{tenant=\"{}\",cause=\"reclaim\"}}",
            team.tenant
        )
    };
    assert!(
        metrics.contains(&reclaimed(&teams[0])) || metrics.contains(&reclaimed(&teams[1])),
        "no reclaim counted in:\n{metrics}"
    );
    for team in &teams {
        let jobs = team.ns.get_json(&["finetunejobs"]).expect("jobs");
        for job in jobs["items"].as_array().into_iter().flatten() {
            assert_eq!(job["status"]["tenant"], team.tenant, "{}", job["status"]);
            assert_eq!(
                job["status"]["attempts"], 1,
                "a preemption is no failed attempt: {}",
                job["status"]
            );
        }
    }
}

/// Prints each tenant's peak GPUs against its quota (the numbers of the note).
fn report(teams: &[Team<'_>], samples: &[Sample], elapsed: Duration) {
    let mut rows = Vec::new();
    for team in teams {
        let pods = samples
            .iter()
            .map(|s| s.pods[&team.ns.name])
            .max()
            .unwrap_or(0);
        let status: Vec<(u64, u64, u64)> = samples
            .iter()
            .filter_map(|s| s.tenants.get(&team.tenant).copied())
            .collect();
        let max = |f: fn(&(u64, u64, u64)) -> u64| status.iter().map(f).max().unwrap_or(0);
        rows.push(format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            team.tenant.rsplit('-').next().unwrap_or_default(),
            team.jobs.len(),
            team.nominal,
            team.limit,
            team.ceiling(),
            pods,
            max(|t| t.1),
            max(|t| t.2),
        ));
    }
    let mut by_time: BTreeMap<u64, u32> = BTreeMap::new();
    for s in samples {
        by_time.insert(s.at as u64, s.pods.values().sum());
    }
    println!(
        "tenancy e2e: {} samples over {:.0} s; cohort of 40 GPUs, peak {} in use\n\
         | tenant | jobs | nominal | borrowing limit | ceiling | peak GPUs (pods) | peak borrowed (status) | peak lent (status) |\n\
         |---|---|---|---|---|---|---|---|\n{}",
        samples.len(),
        elapsed.as_secs_f64(),
        by_time.values().max().unwrap_or(&0),
        rows.join("\n")
    );
}

/// A PriorityClass of the test (cluster-scoped; deleted on drop).
struct Priority<'a> {
    ns: &'a TestNamespace,
    name: String,
}

impl<'a> Priority<'a> {
    fn create(ns: &'a TestNamespace, value: i32) -> Self {
        let name = format!("{}-high", ns.name);
        let class = json!({
            "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": { "name": name }, "value": value,
        });
        ns.cluster
            .kubectl_with_input(&["apply", "-f", "-"], Some(&class.to_string()))
            .expect_success();
        Self { ns, name }
    }
}

impl Drop for Priority<'_> {
    fn drop(&mut self) {
        let target = format!("priorityclass/{}", self.name);
        if let Err(error) = self
            .ns
            .cluster
            .kubectl(&["delete", "--ignore-not-found", &target])
            .into_result()
        {
            eprintln!("cleanup: {error}");
        }
    }
}

fn condition<'a>(job: &'a Value, type_: &str) -> &'a Value {
    job["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .unwrap_or(&Value::Null)
}

/// The SHA-256 of `model.safetensors` in the TrainedModel of job `name`.
fn weights_digest(ns: &TestNamespace, name: &str) -> String {
    let model = ns
        .get_json(&["trainedmodel", name])
        .expect("the TrainedModel");
    model["spec"]["files"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["path"] == "model.safetensors")
        .and_then(|f| f["sha256"].as_str())
        .unwrap_or_else(|| panic!("no model.safetensors in {}", model["spec"]))
        .to_owned()
}

#[test]
fn a_preempted_job_resumes_from_its_checkpoint_to_the_weights_of_an_uninterrupted_run() {
    let Some(ns) = TestNamespace::create("preempt") else {
        return;
    };
    // The uninterrupted run, in a namespace no Tenant owns (no quota applies there).
    let reference = TestNamespace::create("preempt-ref").expect("the cluster");
    let high = Priority::create(&ns, 1000);
    let solo = tenant(&ns, "solo", &ns, json!({ "nominal": 1 }), 1);
    let _operator = Operator::start_with(&ns, |config| {
        config["watchNamespaces"] = json!([ns.name, reference.name]);
        config["tenancy"] = json!({ "preemption": { "minimumRuntimeSeconds": 1 } });
    });
    intents_and_models(&ns);
    intents_and_models(&reference);
    // Same data, seed and settings; checkpoints only at epoch ends and on SIGTERM, so the
    // victim resumes from the checkpoint its preemption wrote. (The trainer's resume is exact
    // with dropout on as well: trainer/tests/training.rs.)
    let spec = json!({
        "resources": { "gpus": 1 },
        "hyperparameters": { "batchSize": 4, "checkpointEverySteps": 0, "seed": 7 },
    });
    ns.apply(&job("victim", "intents", 2, &spec))
        .expect_success();
    reference
        .apply(&job("victim", "intents", 2, &spec))
        .expect_success();
    let running = wait_for_job(&ns, "victim", "three steps", TRAINING_WAIT, |j| {
        j["status"]["progress"]["step"].as_u64().unwrap_or(0) >= 3 || phase(j) == "Failed"
    });
    assert_eq!(running["status"]["tenant"], solo, "{}", running["status"]);
    let urgent = json!({
        "resources": { "gpus": 1, "priorityClassName": high.name },
        "hyperparameters": { "batchSize": 16 },
    });
    ns.apply(&job("urgent", "intents", 1, &urgent))
        .expect_success();
    let preempted = wait_for_job(&ns, "victim", "the preemption", TRAINING_WAIT, |j| {
        condition(j, "Preempted")["status"] == "True" || matches!(phase(j), "Succeeded" | "Failed")
    });
    let message = condition(&preempted, "Preempted")["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.contains(&format!("{}/urgent", ns.name)),
        "{}",
        preempted["status"]
    );
    assert_eq!(phase(&preempted), "Queued", "{}", preempted["status"]);
    let stopped_at = preempted["status"]["progress"]["step"]
        .as_u64()
        .unwrap_or(0);

    let urgent_done = wait_for_job(&ns, "urgent", "the urgent job", TRAINING_WAIT, |j| {
        matches!(phase(j), "Succeeded" | "Failed")
    });
    assert_eq!(
        phase(&urgent_done),
        "Succeeded",
        "{}",
        urgent_done["status"]
    );
    for (space, what) in [
        (&ns, "the resumed victim"),
        (&reference, "the uninterrupted run"),
    ] {
        let done = wait_for_job(space, "victim", what, TRAINING_WAIT, |j| {
            matches!(phase(j), "Succeeded" | "Failed")
        });
        assert_eq!(phase(&done), "Succeeded", "{what}: {}", done["status"]);
        assert_eq!(done["status"]["attempts"], 1, "{what}: {}", done["status"]);
    }
    let resumed = wait_for_job(&ns, "victim", "the record", TRAINING_WAIT, |_| true);
    assert_eq!(
        condition(&resumed, "Preempted")["status"],
        "False",
        "{}",
        resumed["status"]
    );

    // The pod that finished resumed from the preemption's checkpoint.
    let pods = ns
        .get_json(&["pods", "-l", "attune.dev/job=victim"])
        .expect("pods");
    let finished = pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["status"]["phase"] == "Succeeded")
        .expect("the pod that finished");
    let start = start_event(finished);
    assert!(start["resumedFrom"].is_string(), "{start}");
    let from = start["startStep"].as_u64().expect("startStep");
    assert!(
        from >= 3 && from >= stopped_at.saturating_sub(1),
        "resumed at {from}, stopped at {stopped_at}: {start}"
    );

    assert_eq!(
        weights_digest(&ns, "victim"),
        weights_digest(&reference, "victim"),
        "the preempted and resumed run ends with other weights than the uninterrupted one"
    );
}

#[test]
fn references_into_other_namespaces_are_refused_with_the_field_and_the_fix() {
    let Some(ns) = TestNamespace::create("crossns") else {
        return;
    };
    let foreign_claim = json!({
        "output": { "destination": { "pvc": { "claimName": "team-b/models", "path": "x" } } },
    });
    let error = ns
        .apply(&job("claim", "intents", 1, &foreign_claim))
        .expect_failure();
    assert!(
        error.contains("spec.output.destination.pvc.claimName")
            && error.contains("must be the bare name of an object in this namespace"),
        "{error}"
    );
    let foreign_secret = json!({
        "model": { "credentialsSecretRef": { "name": "hf-token", "namespace": "team-b" } },
    });
    let error = ns
        .apply(&job("secret", "intents", 1, &foreign_secret))
        .expect_failure();
    assert!(error.contains("credentialsSecretRef.namespace"), "{error}");
    let foreign_data = json!({
        "dataset": { "source": { "configMap": { "name": "team-b/intents", "key": "train.jsonl" } } },
    });
    let error = ns
        .apply(&job("data", "intents", 1, &foreign_data))
        .expect_failure();
    assert!(
        error.contains("spec.dataset.source.configMap.name"),
        "{error}"
    );
}

#[test]
fn two_tenants_claiming_one_namespace_hold_its_jobs_until_one_lets_go() {
    let Some(ns) = TestNamespace::create("conflict") else {
        return;
    };
    let nodes = GpuNodes::create(&ns, 1, 1);
    let first = tenant(&ns, "first", &ns, json!({ "nominal": 1 }), 1);
    let second = tenant(&ns, "second", &ns, json!({ "nominal": 1 }), 1);
    let _operator = Operator::start_with(&ns, |config| {
        simulated_trainers(config);
        config["watchNamespaces"] = json!([ns.name]);
    });
    intents_and_models(&ns);
    let mut resources = nodes.placement();
    resources["gpus"] = json!(1);
    ns.apply(&job(
        "held",
        "intents",
        1,
        &json!({ "resources": resources }),
    ))
    .expect_success();
    let wait = Duration::from_secs(60);
    let held = wait_for_job(&ns, "held", "Queued for TenantConflict", wait, |j| {
        phase(j) == "Queued" && j["status"]["reason"] == "TenantConflict"
    });
    let message = held["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&first) && message.contains(&second) && message.contains(&ns.name),
        "the reason names both Tenants and the namespace: {message}"
    );
    // Each Tenant says so too, naming the namespace.
    let deadline = Instant::now() + wait;
    for name in [&first, &second] {
        loop {
            let tenant = ns.cluster.get_json(&["tenant", name]).unwrap_or_default();
            let conflict = condition(&tenant, "NamespaceConflict");
            if conflict["status"] == "True"
                && conflict["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(&ns.name))
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "Tenant {name} shows no NamespaceConflict for {}: {tenant}",
                ns.name
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let jobs = ns
        .get_json(&["jobs", "-l", "attune.dev/job"])
        .unwrap_or_default();
    assert_eq!(
        jobs["items"].as_array().map(Vec::len),
        Some(0),
        "a job held by a conflict has no trainer Job: {jobs}"
    );
    // One Tenant lets go: the other's quota admits the job.
    ns.cluster
        .kubectl(&["delete", "tenant", &second])
        .into_result()
        .expect("deleting a Tenant");
    let admitted = wait_for_job(
        &ns,
        "held",
        "admitted under the remaining Tenant",
        wait,
        |j| condition(j, "Admitted")["status"] == "True",
    );
    let message = condition(&admitted, "Admitted")["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains(&first),
        "admitted under {first}: {message}"
    );
    assert!(
        admitted["status"]["attempts"].as_u64() >= Some(1),
        "{admitted}"
    );
}

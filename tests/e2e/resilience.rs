//! The operator keeps its promises when things go wrong around it: killed again and again, it
//! never creates a second Job for an attempt; of two replicas one acts and the other takes
//! over; ten jobs on one model cause one download. Trainer pods are simulated by kwok here and
//! ended by the test as the trainer would end them.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{
    Operator, TRAINING_WAIT, TestNamespace, done_event, end_pod, intents_and_models, job, phase,
    request, running_trainer_pods, simulated_trainers, wait_for_job,
};

/// A copy of the seeded all-MiniLM-L6-v2 repo under a name of this test's own, so the hub's
/// request counts for it are this test's alone (symlinks to the same blobs; removed on drop).
struct PrivateRepo {
    dir: PathBuf,
    id: String,
}

impl PrivateRepo {
    fn new(ns: &TestNamespace) -> Self {
        let root = PathBuf::from(ns.cluster.setting("ATTUNE_HUB_ROOT"));
        let source = root.join("sentence-transformers/all-MiniLM-L6-v2");
        let id = format!("e2e/{}-minilm", ns.name);
        let dir = root.join(&id);
        copy_links(&source, &dir);
        Self { dir, id }
    }
}

fn copy_links(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let entry = entry.expect("an entry");
        let (path, target) = (entry.path(), to.join(entry.file_name()));
        if path.is_dir() && !path.is_symlink() {
            copy_links(&path, &target);
        } else {
            let real = std::fs::canonicalize(&path).expect("a file");
            std::os::unix::fs::symlink(real, &target).expect("a link");
        }
    }
}

impl Drop for PrivateRepo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `kubectl get <kind> -l <selector>` items.
fn items(ns: &TestNamespace, kind: &str, selector: &str) -> Vec<Value> {
    ns.get_json(&[kind, "-l", selector])
        .and_then(|l| l["items"].as_array().cloned())
        .unwrap_or_default()
}

/// Ends up to `count` running trainer pods as a successful trainer would.
fn finish_running_trainers(ns: &TestNamespace, count: usize) {
    for pod in running_trainer_pods(ns).into_iter().take(count) {
        let Some(found) = ns.get_json(&["pod", &pod]) else {
            continue;
        };
        let name = found["metadata"]["annotations"]["attune.dev/job-name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        // The pod may vanish between listing and annotating (an operator restart does not
        // delete pods, but the Job controller may): ignore such a race.
        let _ = ns
            .kubectl(&[
                "annotate",
                "pod",
                &pod,
                "attune.dev/test-exit-code=0",
                &format!("attune.dev/test-message={}", done_event(&name)),
                "attune.dev/test-outcome=succeeded",
            ])
            .into_result();
    }
}

#[test]
fn ten_jobs_on_one_model_fetch_it_once_and_survive_a_killed_operator() {
    let Some(ns) = TestNamespace::create("sigkill") else {
        return;
    };
    let repo = PrivateRepo::new(&ns);
    let mut operator = Operator::start_with(&ns, simulated_trainers);
    intents_and_models(&ns);
    let names: Vec<String> = (0..10).map(|i| format!("job-{i}")).collect();
    for name in &names {
        let spec = json!({ "model": { "source": format!("hf://{}", repo.id) }, "resources": { "gpus": 1 } });
        ns.apply(&job(name, "intents", 1, &spec)).expect_success();
    }
    let deadline = Instant::now() + TRAINING_WAIT;
    let mut last_kill = Instant::now();
    let mut kills = 0;
    loop {
        let succeeded = names
            .iter()
            .filter(|n| {
                ns.get_json(&["finetunejob", n])
                    .is_some_and(|j| phase(&j) == "Succeeded")
            })
            .count();
        if succeeded == names.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {succeeded} of 10 jobs succeeded after {kills} kills"
        );
        if last_kill.elapsed() > Duration::from_secs(3) {
            operator.restart();
            kills += 1;
            last_kill = Instant::now();
        }
        // One at a time, so the jobs finish across several operator lifetimes.
        finish_running_trainers(&ns, 1);
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(kills >= 2, "the operator was killed only {kills} times");
    for name in &names {
        let jobs = items(&ns, "jobs", &format!("attune.dev/job={name}"));
        assert_eq!(jobs.len(), 1, "{name} has {} Jobs", jobs.len());
        let done = ns.get_json(&["finetunejob", name]).expect("job");
        assert_eq!(done["status"]["attempts"], 1, "{}", done["status"]);
        assert!(
            ns.get_json(&["trainedmodel", name]).is_some(),
            "{name} published"
        );
    }
    let caches = operator.cached_models();
    assert_eq!(caches.len(), 1, "{caches:?}");
    let fetches = items(&ns, "jobs", "attune.dev/cached-model");
    assert_eq!(fetches.len(), 1, "one fetch Job: {fetches:?}");
    let hub = ns.cluster.setting("ATTUNE_HUB_ENDPOINT");
    let (_, stats) = request(
        hub.trim_start_matches("http://"),
        "GET",
        "/_attune/stats",
        &[],
        "",
    )
    .expect("the hub's stats");
    let stats: Value = serde_json::from_str(&stats).expect("stats JSON");
    let weights: Vec<(&String, &Value)> = stats
        .as_object()
        .expect("an object")
        .iter()
        .filter(|(k, _)| {
            k.starts_with(&format!("GET /{}/resolve/", repo.id)) && k.ends_with("model.safetensors")
        })
        .collect();
    assert_eq!(weights.len(), 1, "{weights:?}");
    assert_eq!(
        weights[0].1, 1,
        "the weights were downloaded {} times",
        weights[0].1
    );
}

#[test]
fn a_standby_replica_takes_over_when_the_leader_dies() {
    let Some(ns) = TestNamespace::create("failover") else {
        return;
    };
    let mut leader = Operator::start_with(&ns, simulated_trainers);
    let standby = leader.replica();
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        leader.ready() && !standby.ready(),
        "exactly one replica leads"
    );
    let lease = ns
        .get_json(&["lease", "attune-operator"])
        .expect("the Lease");
    assert!(lease["spec"]["holderIdentity"].is_string(), "{lease}");
    leader.kill();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !standby.ready() {
        assert!(
            Instant::now() < deadline,
            "the standby did not take over:\n{}",
            standby.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    intents_and_models(&ns);
    ns.apply(&job(
        "after-failover",
        "intents",
        1,
        &json!({ "resources": { "gpus": 1 } }),
    ))
    .expect_success();
    wait_for_job(
        &ns,
        "after-failover",
        "the new leader to act",
        TRAINING_WAIT,
        |j| j["status"]["attempts"] == 1,
    );
}

#[test]
fn crashes_retry_suspension_holds_and_ttl_cleans_up() {
    let Some(ns) = TestNamespace::create("lifecycle") else {
        return;
    };
    let _operator = Operator::start_with(&ns, simulated_trainers);
    intents_and_models(&ns);
    let spec = json!({ "resources": { "gpus": 1 }, "runPolicy": { "ttlSecondsAfterFinished": 3 } });
    ns.apply(&job("life", "intents", 1, &spec)).expect_success();
    let pod_of = |attempt: u32| {
        let selector = format!("attune.dev/job=life,attune.dev/attempt={attempt}");
        let deadline = Instant::now() + TRAINING_WAIT;
        loop {
            let running: Vec<String> = items(&ns, "pods", &selector)
                .iter()
                .filter(|p| {
                    p["status"]["phase"] == "Running"
                        && p["metadata"]["deletionTimestamp"].is_null()
                })
                .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned))
                .collect();
            if let Some(pod) = running.into_iter().next() {
                return pod;
            }
            assert!(
                Instant::now() < deadline,
                "no running pod of attempt {attempt}"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    };

    // A crash (SIGKILL) is retried as attempt 2.
    end_pod(&ns, &pod_of(1), 137, "");
    wait_for_job(&ns, "life", "attempt 2", TRAINING_WAIT, |j| {
        j["status"]["attempts"] == 2
    });
    // The status moves on to attempt 2; the Event keeps why attempt 1 ended.
    let events = ns
        .kubectl(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=life",
        ])
        .expect_success();
    assert!(
        events.contains("Retrying") && events.contains("attempt 1 failed (Killed"),
        "{events}"
    );

    // Suspension stops the pod and holds the Job; release starts a new pod of the same attempt.
    let first = pod_of(2);
    ns.kubectl(&[
        "patch",
        "finetunejob",
        "life",
        "--type=merge",
        "-p",
        r#"{"spec":{"runPolicy":{"suspend":true}}}"#,
    ])
    .expect_success();
    wait_for_job(&ns, "life", "Suspended", TRAINING_WAIT, |j| {
        phase(j) == "Suspended"
    });
    let held = ns.get_json(&["job", "life-2"]).expect("Job life-2");
    assert_eq!(held["spec"]["suspend"], true);
    ns.wait_for(
        &["pods", "-l", "attune.dev/job=life,attune.dev/attempt=2"],
        "the pod to go",
        |l| {
            l["items"]
                .as_array()
                .is_some_and(|i| i.iter().all(|p| p["metadata"]["name"] != first.as_str()))
        },
    );
    ns.kubectl(&[
        "patch",
        "finetunejob",
        "life",
        "--type=merge",
        "-p",
        r#"{"spec":{"runPolicy":{"suspend":false}}}"#,
    ])
    .expect_success();
    let second = pod_of(2);
    assert_ne!(first, second);
    end_pod(&ns, &second, 0, &done_event("life"));
    let done = wait_for_job(&ns, "life", "Succeeded", TRAINING_WAIT, |j| {
        phase(j) == "Succeeded"
    });
    assert_eq!(done["status"]["attempts"], 2);

    // After the TTL the children go; the job's record and the TrainedModel stay.
    wait_for_no_children(&ns, "life", "the TTL");
    assert!(ns.get_json(&["trainedmodel", "life"]).is_some());
    assert_eq!(
        phase(&ns.get_json(&["finetunejob", "life"]).expect("job")),
        "Succeeded"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        items(&ns, "jobs", "attune.dev/job=life").is_empty(),
        "a finished job's Jobs are never recreated"
    );
}

/// Waits until job `name` has no Jobs, Secrets or claims left (ignoring those
/// already being deleted).
fn wait_for_no_children(ns: &TestNamespace, name: &str, after: &str) {
    let selector = format!("attune.dev/job={name}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left: Vec<String> = ["jobs", "secrets", "pvc"]
            .iter()
            .flat_map(|kind| {
                items(ns, kind, &selector)
                    .into_iter()
                    .filter(|o| o["metadata"]["deletionTimestamp"].is_null())
                    .map(move |o| {
                        format!(
                            "{kind}/{}",
                            o["metadata"]["name"].as_str().unwrap_or_default()
                        )
                    })
            })
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "left after {after}: {left:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn deleting_a_job_deletes_its_children() {
    let Some(ns) = TestNamespace::create("deletion") else {
        return;
    };
    let _operator = Operator::start_with(&ns, simulated_trainers);
    intents_and_models(&ns);
    ns.apply(&job(
        "doomed",
        "intents",
        1,
        &json!({ "resources": { "gpus": 1 } }),
    ))
    .expect_success();
    wait_for_job(&ns, "doomed", "the attempt", TRAINING_WAIT, |j| {
        j["status"]["attempts"] == 1
    });
    for kind in ["jobs", "secrets", "pvc"] {
        assert!(
            !items(&ns, kind, "attune.dev/job=doomed").is_empty(),
            "the job has {kind}"
        );
    }
    ns.kubectl(&["delete", "finetunejob", "doomed", "--wait=false"])
        .expect_success();
    wait_for_no_children(&ns, "doomed", "the deletion");
}

#[test]
fn stalls_are_retried_and_deadlines_fail_the_job() {
    let Some(ns) = TestNamespace::create("deadlines") else {
        return;
    };
    let _operator = Operator::start_with(&ns, simulated_trainers);
    intents_and_models(&ns);
    let stalls = json!({ "resources": { "gpus": 1 }, "runPolicy": { "progressDeadlineSeconds": 3, "backoffLimit": 1 } });
    ns.apply(&job("stalls", "intents", 1, &stalls))
        .expect_success();
    let late = json!({ "resources": { "gpus": 1 }, "runPolicy": { "activeDeadlineSeconds": 4 } });
    ns.apply(&job("late", "intents", 1, &late)).expect_success();

    let failed = wait_for_job(&ns, "stalls", "two stalled attempts", TRAINING_WAIT, |j| {
        phase(j) == "Failed"
    });
    let status = &failed["status"];
    assert_eq!(status["reason"], "BackoffLimitExceeded", "{status}");
    assert_eq!(status["attempts"], 2, "{status}");
    assert!(
        status["message"]
            .as_str()
            .unwrap_or_default()
            .contains("progressDeadlineSeconds"),
        "{status}"
    );

    let failed = wait_for_job(&ns, "late", "the deadline", TRAINING_WAIT, |j| {
        phase(j) == "Failed"
    });
    assert_eq!(
        failed["status"]["reason"], "DeadlineExceeded",
        "{}",
        failed["status"]
    );
    let held = ns.get_json(&["job", "late-1"]).expect("Job late-1");
    assert_eq!(held["spec"]["suspend"], true, "the attempt is stopped");
}

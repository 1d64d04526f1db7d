//! The model cache as a platform runs it: each namespace reaches the shared files through a
//! claim of its own (Pod Security "restricted" admits no hostPath), and entries no job has used
//! for longer than `modelCache.retention` are evicted — files and CachedModel — while entries a
//! job waits for or runs on are kept and marked used.

use std::path::Path;

use serde_json::{Value, json};

use crate::support::{
    HubRepo, Operator, RESTRICTED, TRAINING_WAIT, TestNamespace, done_event, end_pod,
    intents_and_models, intents_texts, job, phase, simulated_trainers, tiny_bert_files,
    wait_for_job,
};

/// Starts job `name` on `repo` and waits until its (simulated) trainer pod runs; returns the
/// pod's name.
fn run_job(ns: &TestNamespace, name: &str, repo: &HubRepo) -> String {
    let spec = json!({ "model": { "source": repo.source() } });
    ns.apply(&job(name, "intents", 1, &spec)).expect_success();
    let pods = ns.wait_for(
        &["pods", "-l", &format!("attune.dev/job={name}")],
        "the trainer pod to run",
        |list| list["items"][0]["status"]["phase"] == "Running",
    );
    pods["items"][0]["metadata"]["name"]
        .as_str()
        .expect("a pod name")
        .to_owned()
}

/// Ends job `name`'s trainer pod `pod` as a trainer that finished, and waits for the job to
/// succeed.
fn finish_job(ns: &TestNamespace, name: &str, pod: &str) {
    end_pod(ns, pod, 0, &done_event(name));
    let done = wait_for_job(ns, name, "the job to succeed", TRAINING_WAIT, |j| {
        matches!(phase(j), "Succeeded" | "Failed")
    });
    assert_eq!(phase(&done), "Succeeded", "{}", done["status"]);
}

/// The installation's CachedModel of `repo`, if there is one.
fn entry(operator: &Operator, repo: &HubRepo) -> Option<Value> {
    operator
        .cached_models()
        .into_iter()
        .find(|c| c["spec"]["source"] == repo.source())
}

/// Waits until `repo` has no CachedModel, checking on every look that `kept` stays Ready.
fn wait_evicted(ns: &TestNamespace, repo: &HubRepo, kept: Option<&HubRepo>) {
    let selector = format!("attune.dev/instance={}", ns.name);
    ns.cluster.wait_for(
        &["cachedmodels", "-l", &selector],
        &format!("the entry of {} to be evicted", repo.id),
        |list| {
            let items = list["items"].as_array().cloned().unwrap_or_default();
            let of = |r: &HubRepo| {
                items
                    .iter()
                    .find(|c| c["spec"]["source"] == r.source())
                    .cloned()
            };
            if let Some(kept) = kept {
                let entry = of(kept).unwrap_or_else(|| panic!("the entry in use went: {items:?}"));
                assert_eq!(
                    entry["status"]["phase"], "Ready",
                    "the entry in use: {entry}"
                );
            }
            of(repo).is_none()
        },
    );
}

/// The entry's `lastUsedTime` (RFC 3339, so strings compare as times).
fn last_used(entry: &Value) -> String {
    entry["status"]["lastUsedTime"]
        .as_str()
        .unwrap_or_else(|| panic!("no lastUsedTime: {entry}"))
        .to_owned()
}

#[test]
fn entries_unused_past_retention_are_evicted_and_entries_in_use_kept() {
    let Some(ns) = TestNamespace::create("cache-gc") else {
        return;
    };
    let files = tiny_bert_files(&intents_texts());
    let kept = HubRepo::create(&ns, "kept", &files);
    let unused = HubRepo::create(&ns, "unused", &files);
    let operator = Operator::start_with(&ns, |config| {
        simulated_trainers(config);
        config["modelCache"]["retention"] =
            json!({ "maxUnusedSeconds": 3, "checkIntervalSeconds": 1 });
    });
    let cache = operator.dir.join("cache");
    intents_and_models(&ns);
    let running = run_job(&ns, "running", &kept);
    let finished = run_job(&ns, "finished", &unused);
    let snapshots = |repo: &HubRepo| cache.join(repo.cache_folder()).join("snapshots");
    assert!(
        snapshots(&unused).is_dir(),
        "{} was never fetched",
        unused.id
    );
    finish_job(&ns, "finished", &finished);
    let used_then = last_used(&entry(&operator, &kept).expect("the entry in use"));

    // The finished job's entry goes, files first; the running job's stays Ready, marked used.
    wait_evicted(&ns, &unused, Some(&kept));
    assert!(
        !cache.join(unused.cache_folder()).exists(),
        "{} is still on the volume",
        unused.id
    );
    assert!(snapshots(&kept).is_dir(), "the files in use went");
    let kept_entry = entry(&operator, &kept).expect("the entry in use");
    assert!(
        last_used(&kept_entry) > used_then,
        "lastUsedTime stood still: {kept_entry}"
    );

    // Once nothing needs it, the other entry goes too.
    finish_job(&ns, "running", &running);
    wait_evicted(&ns, &kept, None);
    assert!(!cache.join(kept.cache_folder()).exists());

    // A job on an evicted model fetches it again, into a new entry.
    let again = run_job(&ns, "again", &unused);
    let refetched = entry(&operator, &unused).expect("a new entry");
    assert_eq!(refetched["status"]["phase"], "Ready", "{refetched}");
    assert!(
        snapshots(&unused).is_dir(),
        "the model was not fetched again"
    );
    finish_job(&ns, "again", &again);
}

/// The claim `claim` of `ns`, once Bound, and its volume.
fn bound_claim(ns: &TestNamespace, claim: &str) -> (Value, Value) {
    let pvc = ns.wait_for(&["pvc", claim], "the model-cache claim to bind", |c| {
        c["status"]["phase"] == "Bound"
    });
    let volume = pvc["spec"]["volumeName"].as_str().expect("volumeName");
    let pv = ns
        .cluster
        .get_json(&["pv", volume])
        .expect("the claim's volume");
    (pvc, pv)
}

/// The entry named `model-cache` of a list of volumes or mounts.
fn model_cache<'a>(list: &'a Value, pod: &Value) -> &'a Value {
    list.as_array()
        .and_then(|l| l.iter().find(|v| v["name"] == "model-cache"))
        .unwrap_or_else(|| panic!("no model-cache volume or mount: {pod}"))
}

/// The model-cache volume of a pod's spec, and the mount of its first container.
fn cache_volume(pod: &Value) -> (&Value, &Value) {
    (
        model_cache(&pod["spec"]["volumes"], pod),
        model_cache(&pod["spec"]["containers"][0]["volumeMounts"], pod),
    )
}

#[test]
fn each_namespace_reaches_the_cache_through_its_own_claim_on_the_same_storage() {
    let Some(ns) = TestNamespace::create("cache-jobs") else {
        return;
    };
    let Some(home) = TestNamespace::create("cache-home") else {
        return;
    };
    let repo = HubRepo::create(&ns, "model", &tiny_bert_files(&intents_texts()));
    let operator = Operator::start_with(&ns, |config| {
        simulated_trainers(config);
        config["namespace"] = home.name.clone().into();
        config["modelCache"]["retention"] = json!({ "checkIntervalSeconds": 1 });
    });
    let cache = operator.dir.join("cache");
    intents_and_models(&ns);
    let trainer = run_job(&ns, "use", &repo);

    // The fetch ran in the operator's namespace, the training in the job's: each has the claim
    // `<instance>-model-cache`, bound to a volume of its own on the same files.
    let claim = format!("{}-model-cache", ns.name);
    for namespace in [&home, &ns] {
        let labels = namespace
            .cluster
            .get_json(&["namespace", &namespace.name])
            .expect("the namespace")["metadata"]["labels"]
            .clone();
        assert_eq!(labels[RESTRICTED.0], RESTRICTED.1, "{labels}");
        let (pvc, pv) = bound_claim(namespace, &claim);
        assert_eq!(
            pvc["spec"]["volumeName"],
            format!("{}-model-cache-{}", ns.name, namespace.name)
        );
        assert_eq!(
            Path::new(pv["spec"]["hostPath"]["path"].as_str().unwrap_or_default()),
            cache
        );
        assert_eq!(
            pv["spec"]["persistentVolumeReclaimPolicy"], "Retain",
            "{pv}"
        );
        assert_eq!(pv["spec"]["claimRef"]["namespace"], namespace.name, "{pv}");
        assert_eq!(
            pv["spec"]["claimRef"]["uid"], pvc["metadata"]["uid"],
            "{pv}"
        );
    }
    let fetch = home
        .get_json(&["pods", "-l", "attune.dev/cached-model"])
        .expect("the fetch pods")["items"][0]
        .clone();
    let (volume, mount) = cache_volume(&fetch);
    assert_eq!(
        volume["persistentVolumeClaim"]["claimName"], claim,
        "{fetch}"
    );
    assert_ne!(mount["readOnly"], true, "fetch pods write: {fetch}");
    let pod = ns.get_json(&["pod", &trainer]).expect("the trainer pod");
    let (volume, mount) = cache_volume(&pod);
    assert_eq!(volume["persistentVolumeClaim"]["claimName"], claim, "{pod}");
    assert_eq!(mount["readOnly"], true, "trainer pods only read: {pod}");
    assert!(cache.join(repo.cache_folder()).join("snapshots").is_dir());

    // A volume whose claim is gone is deleted; the files stay. (Finished pods still hold the
    // claim against deletion: they go first.)
    home.kubectl(&["delete", "pods", "--all", "--wait=true"])
        .expect_success();
    home.kubectl(&["delete", "pvc", &claim, "--wait=false"])
        .expect_success();
    let selector = format!(
        "attune.dev/instance={},attune.dev/namespace={}",
        ns.name, home.name
    );
    ns.cluster.wait_for(
        &["pv", "-l", &selector],
        "the volume of the deleted claim to go",
        |list| list["items"].as_array().is_some_and(Vec::is_empty),
    );
    assert!(cache.join(repo.cache_folder()).join("snapshots").is_dir());
}

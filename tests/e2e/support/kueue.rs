//! A real Kueue on the test cluster (`tests/cluster/kueue`, started once per test run), and the
//! queue a test submits to: a ResourceFlavor, a ClusterQueue with GPU quota in a cohort, and a
//! LocalQueue in the test's namespace.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{Value, json};

use super::cluster::{Cluster, running_in_ci};
use super::manifests::repo_root;
use super::namespace::TestNamespace;

/// The label that hands a Job to Kueue.
pub const QUEUE_NAME_LABEL: &str = "kueue.x-k8s.io/queue-name";

/// What `tests/cluster/kueue up --no-build` exits with when Kueue is not built.
const NOT_BUILT: i32 = 3;

/// The running Kueue manager.
#[derive(Debug)]
struct Kueue {
    /// Its log, for failure messages.
    log: String,
}

/// Kueue running against `cluster`, or `None` (the test is skipped) when it is not built outside
/// CI. One Kueue serves the whole cluster, as in a real installation: tests keep apart by naming
/// their cluster-scoped queue objects after their namespace.
fn kueue(cluster: &Cluster) -> Option<&'static Kueue> {
    static KUEUE: OnceLock<Option<Kueue>> = OnceLock::new();
    KUEUE.get_or_init(|| start(cluster)).as_ref()
}

fn start(cluster: &Cluster) -> Option<Kueue> {
    let script = repo_root().join("tests/cluster/kueue");
    let output = Command::new(&script)
        .args(["up", "--no-build"])
        .env("ATTUNE_CLUSTER_DIR", cluster.setting("ATTUNE_CLUSTER_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.code() == Some(NOT_BUILT) {
        assert!(
            !running_in_ci(),
            "CI is set but Kueue is not built: CI must run the Kueue tests (.ci/run builds it \
             with tests/tools/build kueue):\n{stderr}"
        );
        eprintln!("attune-e2e: skipped: Kueue is not built (tests/tools/build kueue)");
        return None;
    }
    assert!(
        output.status.success(),
        "`tests/cluster/kueue up` failed ({}):\n{stderr}",
        output.status
    );
    let env_file = String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .map(PathBuf::from)
        .expect("tests/cluster/kueue up prints its env file last");
    let env = std::fs::read_to_string(&env_file)
        .unwrap_or_else(|e| panic!("{}: {e}", env_file.display()));
    let log = env
        .lines()
        .find_map(|line| line.strip_prefix("ATTUNE_KUEUE_LOG="))
        .unwrap_or_else(|| panic!("{} has no ATTUNE_KUEUE_LOG", env_file.display()))
        .to_owned();
    Some(Kueue { log })
}

/// A LocalQueue in a test's namespace, backed by a ClusterQueue of its own with a GPU quota in
/// one flavor; the ClusterQueue and the ResourceFlavor are deleted when it is dropped (the
/// LocalQueue goes with the namespace).
#[derive(Debug)]
pub struct KueueQueue<'a> {
    ns: &'a TestNamespace,
    kueue: &'static Kueue,
    /// The LocalQueue, the value of a Job's [`QUEUE_NAME_LABEL`].
    pub name: String,
    /// The ClusterQueue, `<namespace>-<name>`.
    pub cluster_queue: String,
    /// The ResourceFlavor, `<namespace>-gpu`: it puts admitted pods on the GPU node pool.
    pub flavor: String,
    /// With [`Self::preempting`], the PriorityClass `<namespace>-urgent` whose jobs preempt.
    pub urgent: Option<String>,
}

impl<'a> KueueQueue<'a> {
    /// LocalQueue `name` in `ns`, whose ClusterQueue has `gpus` nvidia.com/gpu of nominal quota
    /// in cohort `<namespace>-<cohort>`; `None` when Kueue is not built (outside CI).
    pub fn create(ns: &'a TestNamespace, name: &str, gpus: u32, cohort: &str) -> Option<Self> {
        Self::create_with(ns, name, gpus, cohort, false)
    }

    /// As [`Self::create`], with a ClusterQueue that preempts lower-priority workloads for a
    /// higher one, and a PriorityClass [`Self::urgent`] (value 1000) for the jobs that preempt.
    pub fn preempting(ns: &'a TestNamespace, name: &str, gpus: u32, cohort: &str) -> Option<Self> {
        Self::create_with(ns, name, gpus, cohort, true)
    }

    fn create_with(
        ns: &'a TestNamespace,
        name: &str,
        gpus: u32,
        cohort: &str,
        preempting: bool,
    ) -> Option<Self> {
        let kueue = kueue(ns.cluster)?;
        let queue = Self {
            ns,
            kueue,
            name: name.to_owned(),
            cluster_queue: format!("{}-{name}", ns.name),
            flavor: format!("{}-gpu", ns.name),
            urgent: preempting.then(|| format!("{}-urgent", ns.name)),
        };
        let mut objects = json!({ "apiVersion": "v1", "kind": "List", "items": [
            {
                "apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ResourceFlavor",
                "metadata": { "name": queue.flavor },
                "spec": { "nodeLabels": { "attune.dev/node-pool": "gpu" } },
            },
            {
                "apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ClusterQueue",
                "metadata": { "name": queue.cluster_queue },
                "spec": {
                    "cohortName": format!("{}-{cohort}", ns.name),
                    "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": ns.name } },
                    "resourceGroups": [{
                        "coveredResources": ["nvidia.com/gpu"],
                        "flavors": [{
                            "name": queue.flavor,
                            "resources": [{ "name": "nvidia.com/gpu", "nominalQuota": gpus }],
                        }],
                    }],
                },
            },
            {
                "apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue",
                "metadata": { "name": name, "namespace": ns.name },
                "spec": { "clusterQueue": queue.cluster_queue },
            },
        ]});
        if let (Some(urgent), Some(items)) = (&queue.urgent, objects["items"].as_array_mut()) {
            items[1]["spec"]["preemption"] = json!({ "withinClusterQueue": "LowerPriority" });
            items.push(json!({
                "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                "metadata": { "name": urgent }, "value": 1000,
            }));
        }
        ns.cluster
            .kubectl_with_input(&["apply", "-f", "-"], Some(&objects.to_string()))
            .expect_success();
        Some(queue)
    }

    /// Waits until the Workload Kueue made for Job `job` satisfies `done`, and returns it; fails
    /// with `what`, the last state seen and where Kueue's log is.
    pub fn wait_for_workload(&self, job: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let what = format!("{what} (Kueue's log: {})", self.kueue.log);
        let list = self.ns.wait_for(&["workloads"], &what, |list| {
            workload_of(list, job).is_some_and(&done)
        });
        workload_of(&list, job)
            .cloned()
            .expect("the workload just seen")
    }
}

/// The Workload of Job `job` in a `kubectl get workloads` list (Kueue owns it by the Job).
fn workload_of<'v>(list: &'v Value, job: &str) -> Option<&'v Value> {
    list["items"].as_array()?.iter().find(|w| {
        w["metadata"]["ownerReferences"]
            .as_array()
            .is_some_and(|owners| {
                owners
                    .iter()
                    .any(|o| o["kind"] == "Job" && o["name"] == job)
            })
    })
}

/// The condition `kind` of a Kubernetes object's status.
pub fn condition<'v>(object: &'v Value, kind: &str) -> Option<&'v Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

impl Drop for KueueQueue<'_> {
    fn drop(&mut self) {
        // Kueue keeps its finalizers until the namespace's Workloads are gone: don't wait.
        let mut targets = vec![
            format!("clusterqueue/{}", self.cluster_queue),
            format!("resourceflavor/{}", self.flavor),
        ];
        targets.extend(self.urgent.iter().map(|p| format!("priorityclass/{p}")));
        let args = ["delete", "--ignore-not-found", "--wait=false"]
            .into_iter()
            .chain(targets.iter().map(String::as_str))
            .collect::<Vec<_>>();
        if let Err(error) = self.ns.cluster.kubectl(&args).into_result() {
            eprintln!("cleanup: {error}");
        }
    }
}

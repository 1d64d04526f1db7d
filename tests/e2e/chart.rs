//! The Helm chart (`charts/attune`): `helm lint --strict`, the values schema's verdicts, what it
//! renders accepted by the API server (server-side dry run, under Pod Security "restricted"), and
//! install → a real FineTuneJob → upgrade → uninstall on the harness. There the operator runs in
//! its pod on the local-runner node with its pod's ServiceAccount token, so the chart's RBAC is
//! all it has: a missing verb fails the job or shows as "forbidden" in its log.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};

use crate::support::{
    Run, TRAINING_WAIT, TestNamespace, chart_dir, free_port, helm, intents_and_models, job, phase,
    request, wait_for_job, workspace_binary,
};

/// The label Helm's objects of a release carry (the chart's `attune.labels`).
const RELEASE_LABEL: &str = "app.kubernetes.io/instance";

/// How long the operator pod gets to start and lead.
const OPERATOR_WAIT: Duration = Duration::from_secs(60);

fn chart() -> String {
    chart_dir().display().to_string()
}

fn values_file(name: &str) -> String {
    chart_dir().join("ci").join(name).display().to_string()
}

/// The YAML documents of `helm template` output, as JSON.
fn documents(rendered: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(rendered)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("helm rendered bad YAML: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

fn find<'a>(documents: &'a [Value], kind: &str, name: &str) -> &'a Value {
    documents
        .iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

/// The operator configuration in the rendered ConfigMap.
fn operator_config(documents: &[Value], name: &str) -> Value {
    let text = find(documents, "ConfigMap", name)["data"]["config.yaml"]
        .as_str()
        .expect("config.yaml in the ConfigMap")
        .to_owned();
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("config.yaml: {e}\n{text}"))
}

/// Runs `attune-operator --config` on `config` with no cluster to reach: it reads and checks the
/// file first, so failing on the connection (not the file) means the operator accepts it.
fn assert_operator_accepts(config: &Value, dir: &Path) {
    std::fs::create_dir_all(dir).expect("scratch folder");
    let file = dir.join("config.yaml");
    std::fs::write(&file, config.to_string()).expect("writing the config");
    let output = std::process::Command::new(workspace_binary("attune-operator"))
        .arg("--config")
        .arg(&file)
        .args(["--log-format", "text"])
        .env("KUBECONFIG", dir.join("no-such-kubeconfig"))
        .env("HOME", dir)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("starting attune-operator");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("connecting to the Kubernetes API"),
        "the operator rejects the rendered configuration:\n{stderr}\n{config}"
    );
}

#[test]
fn lint_passes_strictly_with_default_harness_and_full_values() {
    let Some(helm) = helm() else {
        return;
    };
    let chart = chart();
    for values in [None, Some("harness-values.yaml"), Some("full-values.yaml")] {
        let mut args = vec!["lint", "--strict", chart.as_str()];
        let file = values.map(values_file);
        if let Some(file) = &file {
            args.extend(["-f", file.as_str()]);
        }
        let out = helm.run(&args).expect_success();
        assert!(
            out.contains("1 chart(s) linted, 0 chart(s) failed"),
            "{values:?}: {out}"
        );
    }
}

#[test]
fn bad_values_fail_naming_the_value() {
    let Some(helm) = helm() else {
        return;
    };
    let chart = chart();
    let cases = [
        ("replicas=0", "at '/replicas': minimum: got 0, want 1"),
        ("replicas=two", "at '/replicas': got string, want integer"),
        ("replica=2", "additional properties 'replica' not allowed"),
        (
            "logFormat=xml",
            "at '/logFormat': value must be one of 'json', 'text'",
        ),
        (
            "metrics.listen=8080",
            "at '/metrics/listen': got number, want string",
        ),
        ("progress.url=https://attune:8081", "at '/progress/url'"),
        ("trainer.gpuDevice=gpu", "at '/trainer/gpuDevice'"),
        ("watchNamespaces[0]=Team_A", "at '/watchNamespaces/0'"),
        (
            "modelCache.volume.hostpath.path=/cache",
            "at '/modelCache/volume': additional properties 'hostpath' not allowed",
        ),
    ];
    for (value, expected) in cases {
        let error = helm
            .run(&["template", "attune", &chart, "--set", value])
            .expect_failure();
        assert!(
            error.contains("values don't meet the specifications of the schema")
                && error.contains(expected),
            "--set {value}: expected {expected:?} in:\n{error}"
        );
    }
}

#[test]
fn default_and_full_values_render_what_the_api_server_accepts() {
    let Some(helm) = helm() else {
        return;
    };
    let Some(ns) = TestNamespace::create("chart-render") else {
        return;
    };
    // The operator's pod must pass Pod Security "restricted" (a Deployment only warns).
    ns.kubectl(&[
        "label",
        "namespace",
        &ns.name,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/warn=restricted",
    ])
    .expect_success();
    let (team_a, team_b) = match (
        TestNamespace::create("chart-team-a"),
        TestNamespace::create("chart-team-b"),
    ) {
        (Some(a), Some(b)) => (a, b),
        _ => return,
    };
    let chart = chart();
    let release = ns.name.as_str();
    let operator = format!("{release}-attune-operator");
    let scratch = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(&ns.name);

    let render = |extra: &[&str]| {
        let mut args = vec![
            "template",
            release,
            chart.as_str(),
            "--namespace",
            &ns.name,
            "--include-crds",
        ];
        args.extend(extra);
        documents(&helm.run(&args).expect_success())
    };
    let dry_run = |objects: &[Value]| {
        let list = json!({ "apiVersion": "v1", "kind": "List", "items": objects });
        let run = ns.cluster.kubectl_with_input(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=attune-e2e",
                "--dry-run=server",
                "-f",
                "-",
            ],
            Some(&list.to_string()),
        );
        let warnings = run.stderr.clone();
        let out = run.expect_success();
        assert!(
            !warnings.contains("would violate PodSecurity"),
            "{warnings}"
        );
        out
    };

    // Default values: CRDs, ServiceAccount, ConfigMap, RBAC, Service, Deployment.
    let defaults = render(&[]);
    let kinds: Vec<&str> = defaults.iter().filter_map(|d| d["kind"].as_str()).collect();
    for kind in [
        "CustomResourceDefinition",
        "ServiceAccount",
        "ConfigMap",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Service",
        "Deployment",
    ] {
        assert!(kinds.contains(&kind), "no {kind} in {kinds:?}");
    }
    assert!(!kinds.contains(&"ServiceMonitor"), "{kinds:?}");
    let applied = dry_run(&defaults);
    assert!(
        applied.contains(&format!("deployment.apps/{operator} serverside-applied")),
        "{applied}"
    );
    let deployment = find(&defaults, "Deployment", &operator);
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(
        pod["containers"][0]["image"],
        format!(
            "ghcr.io/attune/attune-operator:{}",
            env!("CARGO_PKG_VERSION")
        )
    );
    let config = operator_config(&defaults, &operator);
    assert_eq!(config["instance"], release);
    assert_eq!(config["namespace"], ns.name.as_str());
    assert_eq!(
        config["progress"]["url"],
        format!("http://{operator}.{}.svc:8081", ns.name)
    );
    assert_eq!(
        config["modelCache"]["volume"]["hostPath"]["path"],
        "/var/lib/attune/model-cache"
    );
    assert_operator_accepts(&config, &scratch.join("default"));

    // The cache's other form, a PersistentVolume per namespace, replaces the default volume.
    let persistent = render(&[
        "--set-json",
        r#"modelCache.persistentVolume={"capacity":{"storage":"100Gi"},"accessModes":["ReadWriteMany"],"nfs":{"server":"nfs.example.com","path":"/models"}}"#,
    ]);
    let config = operator_config(&persistent, &operator);
    assert_eq!(
        config["modelCache"]["persistentVolume"]["nfs"]["path"],
        "/models"
    );
    assert!(config["modelCache"]["volume"].is_null(), "{config}");
    assert_operator_accepts(&config, &scratch.join("persistent"));

    // Every value set (watching the two team namespaces); the ServiceMonitor's CRD is not in
    // the harness, so it is checked here and left out of the dry run.
    let watched = json!([team_a.name, team_b.name]).to_string();
    let full_values = values_file("full-values.yaml");
    let full = render(&[
        "-f",
        &full_values,
        "--set-json",
        &format!("watchNamespaces={watched}"),
    ]);
    let (monitors, objects): (Vec<Value>, Vec<Value>) = full
        .into_iter()
        .partition(|d| d["kind"] == "ServiceMonitor");
    assert_eq!(monitors.len(), 1, "one ServiceMonitor");
    let monitor = &monitors[0];
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    dry_run(&objects);
    let service = find(&objects, "Service", &operator);
    for (key, value) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels")
    {
        assert_eq!(&service["metadata"]["labels"][key], value, "{key}");
    }
    for team in [&team_a, &team_b] {
        let role = objects
            .iter()
            .find(|d| d["kind"] == "Role" && d["metadata"]["namespace"] == team.name.as_str())
            .unwrap_or_else(|| panic!("no Role in {}", team.name));
        assert!(role["rules"].to_string().contains("secrets"), "{role}");
    }
    let cluster_role = find(&objects, "ClusterRole", &operator);
    assert!(
        !cluster_role["rules"].to_string().contains("secrets"),
        "with watchNamespaces, Secrets only through Roles: {cluster_role}"
    );
    let deployment = find(&objects, "Deployment", &operator);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["image"],
        "registry.example.com/attune/attune-operator:0.1.0-rc.1"
    );
    assert_eq!(container["ports"][0]["containerPort"], 9090);
    assert_eq!(container["ports"][1]["containerPort"], 9091);
    let config = operator_config(&objects, &operator);
    assert_eq!(config["instance"], "attune-full");
    assert_eq!(config["leaderElection"]["leaseName"], "attune-full-leader");
    assert_eq!(
        config["modelCache"]["volume"],
        json!({ "persistentVolumeClaim": { "claimName": "model-cache" } })
    );
    assert_eq!(config["modelCache"]["retention"]["maxTotalSize"], "500Gi");
    assert_eq!(config["tenancy"]["unownedNamespaces"]["tenant"], "platform");
    assert_operator_accepts(&config, &scratch.join("full"));
}

/// A release of the chart on the harness; uninstalled (if the test did not) on drop, with the
/// CachedModels and model-cache PersistentVolumes of its installation, which are cluster-scoped
/// and outlive it.
struct Release<'a> {
    name: String,
    ns: &'a TestNamespace,
    dir: PathBuf,
    installed: bool,
}

impl Release<'_> {
    /// `helm install` or `helm upgrade` with the harness values and `values` over them.
    fn deploy(&mut self, verb: &str, values: &Value) {
        let file = self.dir.join(format!("{verb}-values.json"));
        std::fs::write(&file, values.to_string()).expect("writing the values");
        let (chart, harness, file) = (
            chart(),
            values_file("harness-values.yaml"),
            file.display().to_string(),
        );
        let helm = helm().expect("helm");
        helm.on(
            self.ns.cluster,
            &[
                verb,
                &self.name,
                &chart,
                "--namespace",
                &self.ns.name,
                "-f",
                &harness,
                "-f",
                &file,
            ],
        )
        .expect_success();
        self.installed = true;
    }

    fn helm_uninstall(&self) -> Run {
        helm().expect("helm").on(
            self.ns.cluster,
            &["uninstall", &self.name, "--namespace", &self.ns.name],
        )
    }

    fn uninstall(&mut self) {
        self.installed = false;
        self.helm_uninstall().expect_success();
    }

    /// The one running operator pod other than `previous`, once the local runner runs it.
    fn operator_pod(&self, previous: Option<&str>) -> Value {
        let selector = format!("{RELEASE_LABEL}={}", self.name);
        let live = |list: &Value| -> Vec<Value> {
            list["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                .cloned()
                .collect()
        };
        let pods = self.ns.wait_for(
            &["pods", "-l", &selector],
            "the operator pod on the local runner",
            |list| {
                let live = live(list);
                live.len() == 1
                    && live[0]["metadata"]["uid"].as_str() != previous
                    && live[0]["metadata"]["annotations"]["attune.dev/local-runner-dir"].is_string()
            },
        );
        live(&pods).swap_remove(0)
    }
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        if self.installed
            && let Err(error) = self.helm_uninstall().into_result()
        {
            eprintln!("cleanup: {error}");
        }
        let instance = format!("attune.dev/instance={}", self.name);
        for kind in ["cachedmodels", "persistentvolumes"] {
            if let Err(error) = self
                .ns
                .cluster
                .kubectl(&["delete", kind, "-l", &instance, "--wait=false"])
                .into_result()
            {
                eprintln!("cleanup: {error}");
            }
        }
    }
}

/// The operator container's log, as the local runner keeps it.
fn operator_log(pod: &Value) -> String {
    let dir = pod["metadata"]["annotations"]["attune.dev/local-runner-dir"]
        .as_str()
        .unwrap_or_default();
    std::fs::read_to_string(Path::new(dir).join("operator.log")).unwrap_or_default()
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().rev().take(40).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// Waits until the operator in `pod` answers `/readyz` with 200 on `metrics` (it leads).
fn wait_leading(pod: &Value, metrics: &str) {
    let deadline = Instant::now() + OPERATOR_WAIT;
    while !request(metrics, "GET", "/readyz", &[], "").is_ok_and(|(status, _)| status == 200) {
        assert_never_forbidden(pod);
        assert!(
            Instant::now() < deadline,
            "the operator pod did not lead within {OPERATOR_WAIT:?}; its log:\n{}",
            tail(&operator_log(pod))
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// No API call of the operator was refused: every verb it used is in the chart's RBAC.
fn assert_never_forbidden(pod: &Value) {
    let log = operator_log(pod);
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| {
            let l = l.to_lowercase();
            l.contains("forbidden") || l.contains("unauthorized")
        })
        .collect();
    assert!(
        refused.is_empty(),
        "the API server refused the operator (RBAC of the chart):\n{}",
        refused.join("\n")
    );
}

/// The harness values that depend on the machine and the test: the built binaries, free ports,
/// the hub, the cache folder and the watched namespace.
fn machine_values(
    ns: &TestNamespace,
    watched: &str,
    dir: &Path,
    metrics: &str,
    progress: &str,
) -> Value {
    json!({
        "command": [workspace_binary("attune-operator")],
        "watchNamespaces": [watched],
        "trainer": { "command": [workspace_binary("attune-trainer")] },
        "metrics": { "listen": metrics },
        "progress": { "listen": progress, "url": format!("http://{progress}") },
        "hub": { "endpoint": ns.cluster.setting("ATTUNE_HUB_ENDPOINT") },
        // A claim per namespace, which "restricted" admits (a hostPath volume it does not).
        "modelCache": { "persistentVolume": {
            "hostPath": { "path": dir.join("cache"), "type": "DirectoryOrCreate" },
            "capacity": { "storage": "1Gi" },
        } },
    })
}

fn lease_holder(ns: &TestNamespace, lease: &str) -> String {
    ns.get_json(&["lease", lease]).expect("the leader Lease")["spec"]["holderIdentity"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn install_trains_a_job_through_the_operator_pod_then_upgrade_and_uninstall_clean_up() {
    if helm().is_none() {
        return;
    }
    let Some(ns) = TestNamespace::create("chart") else {
        return;
    };
    let Some(team) = TestNamespace::create("chart-jobs") else {
        return;
    };
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("charts")
        .join(&ns.name);
    std::fs::create_dir_all(dir.join("cache")).expect("the release's folder");
    let mut release = Release {
        name: ns.name.clone(),
        ns: &ns,
        dir: dir.clone(),
        installed: false,
    };
    let operator = format!("{}-attune-operator", release.name);

    // Install: the operator pod runs on the local runner and leads.
    let metrics = format!("127.0.0.1:{}", free_port());
    let progress = format!("127.0.0.1:{}", free_port());
    release.deploy(
        "install",
        &machine_values(&ns, &team.name, &dir, &metrics, &progress),
    );
    let pod = release.operator_pod(None);
    assert_eq!(pod["spec"]["nodeName"], "attune-local-runner", "{pod}");
    assert_eq!(
        pod["spec"]["serviceAccountName"], operator,
        "the chart's ServiceAccount"
    );
    wait_leading(&pod, &metrics);
    let pod_name = pod["metadata"]["name"].as_str().expect("name").to_owned();
    assert_eq!(lease_holder(&ns, &operator), pod_name);
    assert!(
        ns.get_json(&["secret", &format!("{}-progress-key", release.name)])
            .is_some(),
        "the operator created its progress-token key"
    );

    // A real job, through that operator and only its RBAC.
    intents_and_models(&team);
    team.apply(&job("intents", "intents", 1, &json!({})))
        .expect_success();
    // A refused call fails the test at once (a controller whose watch is refused never acts).
    let done = wait_for_job(&team, "intents", "the job to finish", TRAINING_WAIT, |j| {
        assert_never_forbidden(&pod);
        matches!(phase(j), "Succeeded" | "Failed")
    });
    assert_eq!(
        phase(&done),
        "Succeeded",
        "status: {}\noperator log:\n{}",
        done["status"],
        tail(&operator_log(&pod))
    );
    assert_eq!(done["status"]["attempts"], 1, "{}", done["status"]);
    let model = team
        .get_json(&["trainedmodel", "intents"])
        .expect("the published TrainedModel");
    assert_eq!(model["spec"]["producer"]["jobUid"], done["metadata"]["uid"]);
    let events = team
        .get_json(&[
            "events",
            "--field-selector",
            "involvedObject.kind=FineTuneJob,involvedObject.name=intents",
        ])
        .expect("events");
    assert!(
        events["items"].as_array().is_some_and(|e| e
            .iter()
            .any(|e| e["reportingComponent"] == "attune-operator")),
        "the operator's Events on the job: {events}"
    );
    assert!(
        operator_log(&pod).contains("leading"),
        "the log read is the operator's"
    );
    assert_never_forbidden(&pod);

    // Upgrade: a changed value (the ports: the old process may still be shutting down) rolls
    // the pod; the new operator leads and leaves the finished job as it was.
    let metrics_2 = format!("127.0.0.1:{}", free_port());
    let progress_2 = format!("127.0.0.1:{}", free_port());
    release.deploy(
        "upgrade",
        &machine_values(&ns, &team.name, &dir, &metrics_2, &progress_2),
    );
    let rolled = release.operator_pod(pod["metadata"]["uid"].as_str());
    assert_ne!(
        rolled["metadata"]["annotations"]["checksum/config"],
        pod["metadata"]["annotations"]["checksum/config"]
    );
    wait_leading(&rolled, &metrics_2);
    assert_eq!(
        lease_holder(&ns, &operator),
        rolled["metadata"]["name"].as_str().unwrap_or_default()
    );
    let deadline = Instant::now() + OPERATOR_WAIT;
    let reconciled = || {
        request(&metrics_2, "GET", "/metrics", &[], "").is_ok_and(|(_, body)| {
            body.lines().any(|l| {
                l.strip_prefix("attune_reconciles_total{controller=\"finetunejob\"} ")
                    .and_then(|n| n.trim().parse::<f64>().ok())
                    .is_some_and(|n| n >= 1.0)
            })
        })
    };
    while !reconciled() {
        assert!(
            Instant::now() < deadline,
            "the new operator never reconciled the job; its log:\n{}",
            tail(&operator_log(&rolled))
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let after = team.get_json(&["finetunejob", "intents"]).expect("the job");
    assert_eq!(phase(&after), "Succeeded", "{}", after["status"]);
    assert_eq!(after["status"]["attempts"], 1, "{}", after["status"]);
    let trainer_jobs = team
        .get_json(&["jobs", "-l", "attune.dev/job=intents"])
        .expect("jobs");
    assert_eq!(
        trainer_jobs["items"].as_array().map(Vec::len),
        Some(1),
        "no attempt after the upgrade: {trainer_jobs}"
    );
    assert_never_forbidden(&rolled);

    // Uninstall: nothing labelled with the release is left, in any namespace or cluster-wide;
    // the operator process stops; the CRDs and the published model stay.
    release.uninstall();
    let kinds = ns
        .cluster
        .kubectl(&["api-resources", "--verbs=list", "-o", "name"])
        .expect_success()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(",");
    let selector = format!("{RELEASE_LABEL}={}", release.name);
    let deadline = Instant::now() + OPERATOR_WAIT;
    loop {
        let left = ns
            .cluster
            .kubectl(&[
                "get",
                &kinds,
                "--all-namespaces",
                "-l",
                &selector,
                "-o",
                "name",
            ])
            .expect_success();
        if left.trim().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left after helm uninstall:\n{left}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    while request(&metrics_2, "GET", "/healthz", &[], "").is_ok() {
        assert!(
            Instant::now() < deadline,
            "the operator process still runs after helm uninstall"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        ns.cluster
            .get_json(&["crd", "finetunejobs.attune.dev"])
            .is_some()
    );
    assert!(team.get_json(&["trainedmodel", "intents"]).is_some());
}

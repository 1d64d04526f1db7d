//! The local-runner node really runs a pod's command and reports how it ended.

use serde_json::{Value, json};

use crate::support::{TestNamespace, pod};

/// Runs `script` with `sh -c` in a pod on the local runner and returns the finished pod.
fn run_on_local_runner(ns: &TestNamespace, name: &str, script: &str) -> Value {
    let spec = json!({
        "restartPolicy": "Never",
        "nodeSelector": { "attune.dev/local-runner": "true" },
        "tolerations": [{ "key": "attune.dev/local-runner", "operator": "Exists", "effect": "NoSchedule" }],
        "containers": [{ "name": "main", "image": "attune-e2e/local", "command": ["sh", "-c", script] }],
    });
    ns.apply(&pod(name, spec)).expect_success();
    ns.wait_for(&["pod", name], "the pod to finish", |p| {
        matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
    })
}

fn exit_code(pod: &Value) -> &Value {
    &pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"]
}

/// What the container printed, from the runner's log file (`kubectl logs` does not work there).
fn output(pod: &Value) -> String {
    let dir = pod["metadata"]["annotations"]["attune.dev/local-runner-dir"]
        .as_str()
        .unwrap_or_else(|| {
            panic!(
                "no attune.dev/local-runner-dir annotation: {}",
                pod["metadata"]
            )
        });
    let log = std::path::Path::new(dir).join("main.log");
    std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()))
}

#[test]
fn failing_command_fails_the_pod_with_its_exit_code() {
    let Some(ns) = TestNamespace::create("runner-fail") else {
        return;
    };
    let pod = run_on_local_runner(&ns, "exit-3", "echo hi; exit 3");
    assert_eq!(
        pod["status"]["phase"], "Failed",
        "status: {}",
        pod["status"]
    );
    assert_eq!(exit_code(&pod), 3, "status: {}", pod["status"]);
    assert_eq!(pod["spec"]["nodeName"], "attune-local-runner");
    assert_eq!(output(&pod).trim(), "hi");
}

#[test]
fn succeeding_command_succeeds_the_pod() {
    let Some(ns) = TestNamespace::create("runner-ok") else {
        return;
    };
    let pod = run_on_local_runner(&ns, "exit-0", "echo hi; exit 0");
    assert_eq!(
        pod["status"]["phase"], "Succeeded",
        "status: {}",
        pod["status"]
    );
    assert_eq!(exit_code(&pod), 0, "status: {}", pod["status"]);
    assert_eq!(output(&pod).trim(), "hi");
}

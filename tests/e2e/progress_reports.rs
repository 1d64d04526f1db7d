//! The progress endpoint accepts a report only with the token of the job it is about.

use serde_json::json;

use crate::support::{
    Operator, TRAINING_WAIT, TestNamespace, intents_and_models, job, request, wait_for_job,
};

#[test]
fn a_report_is_accepted_only_with_its_own_jobs_token() {
    let Some(ns) = TestNamespace::create("tokens") else {
        return;
    };
    let operator = Operator::start(&ns);
    intents_and_models(&ns);
    // Unschedulable on purpose: the tokens exist once the attempt is created, and nothing trains.
    for name in ["alpha", "beta"] {
        ns.apply(&job(
            name,
            "intents",
            1,
            &json!({ "resources": { "gpus": 16 } }),
        ))
        .expect_success();
        wait_for_job(&ns, name, "the attempt", TRAINING_WAIT, |j| {
            j["status"]["attempts"] == 1
        });
    }
    let token = |name: &str| {
        ns.kubectl(&[
            "get",
            "secret",
            &format!("{name}-trainer"),
            "-o",
            "go-template={{.data.token | base64decode}}",
        ])
        .expect_success()
    };
    let (alpha, beta) = (token("alpha"), token("beta"));
    assert_ne!(alpha, beta);
    let post = |name: &str, token: Option<&str>| {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = bearer
            .as_deref()
            .map(|b| vec![("Authorization", b), ("Content-Type", "application/json")])
            .unwrap_or_default();
        let event = json!({ "event": "step", "step": 3, "totalSteps": 10, "epoch": 0.3, "loss": 0.5,
            "lr": 1e-5, "gradNorm": 1.0, "samplesPerSec": 9.0, "etaSec": 12.0 });
        request(
            &operator.progress,
            "POST",
            &format!("/v1/namespaces/{}/finetunejobs/{name}/progress", ns.name),
            &headers,
            &event.to_string(),
        )
        .expect("the progress endpoint answers")
        .0
    };
    assert_eq!(post("beta", Some(&alpha)), 403, "alpha's token for beta");
    assert_eq!(post("beta", None), 401, "no token");
    assert_eq!(post("gamma", Some(&alpha)), 404, "no such job");
    assert_eq!(post("alpha", Some(&alpha)), 204, "alpha's own token");
    let reported = wait_for_job(&ns, "alpha", "the report in status", TRAINING_WAIT, |j| {
        j["status"]["progress"]["step"] == 3
    });
    assert_eq!(reported["status"]["progress"]["percent"], 30);
    let beta_job = ns.get_json(&["finetunejob", "beta"]).expect("beta");
    assert!(
        beta_job["status"]["progress"].is_null(),
        "{}",
        beta_job["status"]
    );
    let metrics = operator.metrics_text();
    for line in [
        "attune_progress_reports_total{result=\"wrong_token\"} 1",
        "attune_progress_reports_total{result=\"accepted\"} 1",
        "attune_progress_reports_total{result=\"no_token\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in:\n{metrics}");
    }
}

//! The happy path on the tiny test model: a FineTuneJob on a tiny BERT that the test serves
//! from the cluster's hub runs the real trainer through the local runner, fetched over HTTP
//! like any model, and succeeds with progress, metrics, a TrainedModel, and files whose
//! digests match.

use serde_json::json;

use crate::support::{
    HubRepo, Operator, TestNamespace, assert_published, intents_and_models, intents_texts, job,
    tiny_bert_files, wait_succeeded,
};

#[test]
fn a_job_on_the_tiny_model_trains_and_publishes_files_whose_digests_match() {
    let Some(ns) = TestNamespace::create("tiny") else {
        return;
    };
    let repo = HubRepo::create(&ns, "tiny-bert", &tiny_bert_files(&intents_texts()));
    let operator = Operator::start(&ns);
    intents_and_models(&ns);
    let spec = json!({
        "model": { "source": repo.source() },
        "hyperparameters": { "learningRate": 0.003, "batchSize": 8, "checkpointEverySteps": 20 },
    });
    ns.apply(&job("tiny", "intents", 20, &spec))
        .expect_success();

    let done = wait_succeeded(&ns, &operator, "tiny");
    let status = &done["status"];
    assert!(
        status["progress"]["step"].as_u64().unwrap_or(0) > 0,
        "{status}"
    );
    assert!(
        status["metrics"]["trainLoss"]
            .as_f64()
            .is_some_and(f64::is_finite),
        "{status}"
    );

    // It learnt: better than chance among the four intents on the held-out fifth.
    let accuracy = status["metrics"]["evalAccuracy"].as_f64().unwrap_or(0.0);
    assert!(accuracy > 0.25, "accuracy {accuracy}: {status}");

    // The entry holds the commit the hub serves, and the record names it.
    let commit = repo.commit();
    let caches = operator.cached_models();
    assert_eq!(caches.len(), 1, "{caches:?}");
    assert_eq!(caches[0]["spec"]["source"], repo.source());
    assert_eq!(caches[0]["status"]["resolvedRevision"], commit);
    let labels = json!(["book_flight", "check_weather", "play_music", "set_alarm"]);
    let model = assert_published(&ns, &done, &commit, &labels);
    assert_eq!(model["spec"]["baseModel"]["source"], repo.source());
}

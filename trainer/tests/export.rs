//! Export and predict tests: the folder has what transformers needs, the manifest digests match,
//! and predict reproduces the trained model's validation accuracy.

use attune_trainer::digest::sha256_file;
use attune_trainer::export::{Manifest, export_checkpoint};
use attune_trainer::predict::Predictor;
use attune_trainer::train::{Outcome, Progress, run};
use candle_core::Device;

use crate::common::workspace;
use crate::training::{exported_weights, job, opts};

#[test]
fn export_is_transformers_shaped_and_predict_matches_training() {
    let ws = workspace("bert", 48);
    let out = ws.tmp.path().join("out");
    let mut j = job(&ws, &out);
    j.training.epochs = 3;
    let Outcome::Finished {
        metrics,
        export_dir,
        ..
    } = run(&opts(j), &mut Progress::sink()).unwrap()
    else {
        panic!("not finished")
    };
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(export_dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["architectures"][0], "BertForSequenceClassification");
    assert_eq!(config["id2label"]["0"], "neg");
    assert_eq!(config["id2label"]["1"], "pos");
    assert_eq!(config["label2id"]["pos"], 1);
    let manifest: Manifest =
        serde_json::from_slice(&std::fs::read(export_dir.join("manifest.json")).unwrap()).unwrap();
    for f in ["model.safetensors", "config.json", "tokenizer.json"] {
        assert_eq!(
            manifest.files[f],
            sha256_file(&export_dir.join(f)).unwrap(),
            "{f}"
        );
    }
    assert!(manifest.provenance.dataset_digest.starts_with("sha256:"));
    assert_eq!(manifest.provenance.hyperparameters["batchSize"], 8);
    assert_eq!(manifest.metrics.unwrap().accuracy, metrics.accuracy);
    let names = exported_weights(&export_dir);
    assert!(names.contains_key("bert.embeddings.word_embeddings.weight"));
    assert!(names.contains_key("classifier.weight"));

    // predict on the validation texts reproduces the accuracy.
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&ws.validation)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let texts: Vec<String> = rows
        .iter()
        .map(|r| r["text"].as_str().unwrap().into())
        .collect();
    let p = Predictor::load(&export_dir, 512, &Device::Cpu).unwrap();
    let logits = p.logits(&texts, 5).unwrap();
    let preds = p.top(&logits).unwrap();
    let correct = preds
        .iter()
        .zip(&rows)
        .filter(|(p, r)| p.label == r["label"].as_str().unwrap())
        .count();
    assert!((correct as f64 / rows.len() as f64 - metrics.accuracy).abs() < 1e-9);
    assert!(preds.iter().all(|p| p.score > 0.0 && p.score <= 1.0));

    // Exporting the final checkpoint gives the same weights.
    let again = ws.tmp.path().join("again");
    export_checkpoint(&out.join("checkpoints"), &again).unwrap();
    assert_eq!(exported_weights(&again), names);
}

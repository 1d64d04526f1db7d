//! Throughput of one training step (forward + backward + fused AdamW) and of inference, in
//! samples/s, on a tiny random model and — when ATTUNE_ASSETS is set — on all-MiniLM-L6-v2
//! (batch 16 × 128 tokens, the benchmark shape). `cargo bench -p attune-trainer`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Instant;

use attune_trainer::data::{Encoded, batch::collate};
use attune_trainer::model::{Classifier, ModelConfig};
use attune_trainer::rng::TrainRng;
use attune_trainer::train::optimizer::{AdamW, AdamWConfig};
use attune_trainer::train::shards::Step;
use candle_core::Device;

// The same allocator (and, in `main`, the same process tuning) as the attune-trainer binary, so
// the numbers are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `size` random rows of `seq` tokens (a [CLS]-like id first), labels cycling over 5 classes.
fn examples(size: usize, seq: usize, vocab: usize, rng: &mut TrainRng) -> Vec<Encoded> {
    (0..size)
        .map(|r| {
            let mut input_ids: Vec<u32> =
                (0..seq).map(|_| 5 + rng.below(vocab - 5) as u32).collect();
            input_ids[0] = 2;
            Encoded {
                input_ids,
                token_type_ids: vec![0; seq],
                label: (r % 5) as u32,
            }
        })
        .collect()
}

/// A training step as the runner takes it (the batch's shards side by side, then AdamW), and
/// inference as predict runs it (one batch per thread).
fn bench(name: &str, model: &Classifier, size: usize, seq: usize, steps: usize) {
    let mut rng = TrainRng::new(1, 1);
    let examples = examples(size, seq, model.config.vocab_size, &mut rng);
    let idx: Vec<usize> = (0..size).collect();
    let vars = model.params.vars().unwrap();
    let decay: Vec<bool> = model.params.specs.iter().map(|s| s.decay).collect();
    let mut opt = AdamW::new(AdamWConfig::default(), vars.clone(), &decay);
    let weights = model.weights().unwrap();
    let step = Step {
        model,
        weights: &weights,
        vars: &vars,
        examples: &examples,
        pad_id: 0,
        loss_scale: 1.0,
    };
    // Medians, not means: a shared VM's noise spikes would otherwise decide the numbers.
    let mut fwd_bwd = Vec::with_capacity(steps);
    let mut opt_time = Vec::with_capacity(steps);
    for i in 0..=steps {
        let t = Instant::now();
        let mut grads = vec![None; vars.len()];
        step.accumulate(&idx, Some(&mut rng), &mut grads).unwrap();
        let t1 = Instant::now();
        opt.step(&grads, 1e-5, 1.0).unwrap();
        if i > 0 {
            fwd_bwd.push((t1 - t).as_secs_f64());
            opt_time.push(t1.elapsed().as_secs_f64());
        }
    }
    let detached = model.detached().unwrap();
    let batches = vec![idx; rayon::current_num_threads()];
    let mut infer = Vec::with_capacity(steps);
    for _ in 0..steps {
        let t = Instant::now();
        model
            .map_batches(&batches, |idx| {
                let inputs = model.inputs(&collate(&examples, idx, 0))?;
                model.forward(&detached, &inputs, None)
            })
            .unwrap();
        infer.push(t.elapsed().as_secs_f64());
    }
    let (fwd_bwd, opt_time, infer) = (median(fwd_bwd), median(opt_time), median(infer));
    let n = size as f64;
    println!(
        "{name}: train {:.1} samples/s (fwd+bwd {:.3} s/step, adamw {:.3} s/step), inference {:.1} samples/s ({} batches side by side; medians of {steps} steps)",
        n / (fwd_bwd + opt_time),
        fwd_bwd,
        opt_time,
        n * batches.len() as f64 / infer,
        batches.len()
    );
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    attune_trainer::alloc::tune();
    attune_trainer::threads::tune_candle();
    let config = serde_json::json!({
        "model_type": "bert", "vocab_size": 1000, "hidden_size": 16, "num_hidden_layers": 2,
        "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 128,
        "hidden_act": "gelu"
    });
    let cfg = ModelConfig::from_value(&config).unwrap();
    let mut rng = TrainRng::new(0, 0);
    let tiny = Classifier::from_source(cfg, 5, &HashMap::new(), &mut rng, &Device::Cpu).unwrap();
    bench("tiny (h16, 2 layers, 16x32)", &tiny, 16, 32, 50);

    if let Some(assets) = std::env::var_os("ATTUNE_ASSETS") {
        let cache = std::path::Path::new(&assets).join("hf-cache");
        let r =
            attune_trainer::hub::resolve("sentence-transformers/all-MiniLM-L6-v2", "main", &cache)
                .unwrap();
        let model = Classifier::from_dir(&r.dir, 5, &mut rng, &Device::Cpu).unwrap();
        bench("all-MiniLM-L6-v2 (16x128)", &model, 16, 128, 10);
    } else {
        println!("ATTUNE_ASSETS not set: skipping the all-MiniLM-L6-v2 benchmark");
    }
}

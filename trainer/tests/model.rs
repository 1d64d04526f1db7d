//! Model tests: gradients reach every parameter, autograd agrees with finite differences,
//! prefix-less checkpoints load, dropout only in training mode.

use std::collections::HashMap;

use attune_trainer::data::Batch;
use attune_trainer::model::{Classifier, ModelConfig, WeightMap, layers::cross_entropy};
use attune_trainer::rng::TrainRng;
use candle_core::{DType, Device, Tensor, Var};

use crate::common::{random_encoder, tiny_config};

fn tiny(family: &str, std: f64) -> Classifier {
    let config = tiny_config(family, std);
    let source = random_encoder(&config, 3, true);
    let cfg = ModelConfig::from_value(&config).unwrap();
    let mut rng = TrainRng::new(1, 1);
    Classifier::from_source(cfg, 3, &source, &mut rng, &Device::Cpu).unwrap()
}

fn batch(pad: u32) -> Batch {
    // Two rows, the second padded.
    let ids = vec![2, 4, 5, 15, 9, 3, 2, 10, 3, pad, pad, pad];
    Batch {
        size: 2,
        seq_len: 6,
        input_ids: ids,
        token_type_ids: vec![0; 12],
        attention_mask: vec![1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
        labels: vec![2, 0],
    }
}

fn loss(model: &Classifier, weights: &WeightMap, rng: Option<&mut TrainRng>) -> Tensor {
    let b = batch(model.config.pad_token_id);
    let inputs = model.inputs(&b).unwrap();
    let logits = model.forward(weights, &inputs, rng).unwrap();
    let labels = Tensor::from_slice(&b.labels, 2, &Device::Cpu).unwrap();
    cross_entropy(&logits, &labels).unwrap()
}

#[test]
fn every_variable_gets_a_nonzero_gradient() {
    for family in ["bert", "roberta", "distilbert"] {
        let model = tiny(family, 0.2);
        let weights = model.weights().unwrap();
        let mut rng = TrainRng::new(9, 9);
        let l = loss(&model, &weights, Some(&mut rng));
        let grads = l.backward().unwrap();
        let vars = model.params.vars().unwrap();
        assert!(vars.len() > 30, "{family}: only {} vars", vars.len());
        for (spec, var) in model.params.specs.iter().zip(&vars) {
            let g = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{family}: no gradient for {}", spec.name));
            let norm = g
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(norm > 0.0, "{family}: zero gradient for {}", spec.name);
        }
    }
}

/// Autograd's directional derivative along a random direction over *all* parameters equals the
/// central finite difference, in f64.
#[test]
fn finite_differences_agree_with_autograd() {
    for family in ["bert", "roberta", "distilbert"] {
        let model = tiny(family, 0.3);
        let vars: HashMap<String, Var> = model
            .weights()
            .unwrap()
            .into_iter()
            .map(|(k, t)| {
                (
                    k,
                    Var::from_tensor(&t.to_dtype(DType::F64).unwrap()).unwrap(),
                )
            })
            .collect();
        let weights: WeightMap = vars
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect();
        let l = loss(&model, &weights, None);
        let grads = l.backward().unwrap();
        let mut rng = TrainRng::new(4, 4);
        let mut analytic = 0f64;
        let mut dirs = HashMap::new();
        for (k, v) in &vars {
            let d: Vec<f64> = (0..v.elem_count())
                .map(|_| f64::from(rng.normal()))
                .collect();
            let d = Tensor::from_vec(d, v.shape(), &Device::Cpu).unwrap();
            let g = grads.get(v.as_tensor()).unwrap();
            analytic += (g * &d)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap();
            dirs.insert(k.clone(), d);
        }
        let h = 1e-6;
        let shifted = |sign: f64| -> f64 {
            let w: WeightMap = vars
                .iter()
                .map(|(k, v)| {
                    let t = (v.as_tensor().detach() + (&dirs[k] * (sign * h)).unwrap()).unwrap();
                    (k.clone(), t)
                })
                .collect();
            loss(&model, &w, None).to_scalar::<f64>().unwrap()
        };
        let numeric = (shifted(1.0) - shifted(-1.0)) / (2.0 * h);
        let rel = (numeric - analytic).abs() / analytic.abs().max(1e-8);
        assert!(
            rel < 1e-5,
            "{family}: numeric {numeric} vs autograd {analytic} (rel {rel})"
        );
    }
}

#[test]
fn prefixless_checkpoint_loads_and_head_is_initialised() {
    let config = tiny_config("bert", 0.02);
    let source = random_encoder(&config, 5, false);
    assert!(source.contains_key("embeddings.word_embeddings.weight"));
    let cfg = ModelConfig::from_value(&config).unwrap();
    let mut rng = TrainRng::new(1, 1);
    let model = Classifier::from_source(cfg, 4, &source, &mut rng, &Device::Cpu).unwrap();
    let mut init = model.params.initialised.clone();
    init.sort();
    // The pooler is in the file (as in all-MiniLM-L6-v2); only the classifier is new.
    assert_eq!(init, vec!["classifier.bias", "classifier.weight"]);
    let w = model.weights().unwrap();
    let loaded = w["bert.encoder.layer.1.output.dense.weight"]
        .to_vec2::<f32>()
        .unwrap();
    let file = source["encoder.layer.1.output.dense.weight"]
        .to_vec2::<f32>()
        .unwrap();
    assert_eq!(loaded, file);
    let bias = w["classifier.bias"].to_vec1::<f32>().unwrap();
    assert_eq!(bias, vec![0.0; 4]);
    assert_eq!(w["classifier.weight"].dims(), &[4, 16]);
}

#[test]
fn dropout_only_in_training_mode() {
    let model = tiny("bert", 0.2);
    let w = model.detached().unwrap();
    let eval1 = loss(&model, &w, None).to_scalar::<f32>().unwrap();
    let eval2 = loss(&model, &w, None).to_scalar::<f32>().unwrap();
    assert_eq!(eval1, eval2);
    let mut rng = TrainRng::new(1, 2);
    let t1 = loss(&model, &w, Some(&mut rng)).to_scalar::<f32>().unwrap();
    let t2 = loss(&model, &w, Some(&mut rng)).to_scalar::<f32>().unwrap();
    assert_ne!(t1, t2);
    assert_ne!(t1, eval1);
}

#[test]
fn padding_does_not_change_logits() {
    let model = tiny("bert", 0.2);
    let w = model.detached().unwrap();
    let b = batch(0);
    let logits = model
        .forward(&w, &model.inputs(&b).unwrap(), None)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let single = Batch {
        size: 1,
        seq_len: 3,
        input_ids: vec![2, 10, 3],
        token_type_ids: vec![0; 3],
        attention_mask: vec![1; 3],
        labels: vec![0],
    };
    let alone = model
        .forward(&w, &model.inputs(&single).unwrap(), None)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    for (a, b) in logits[1].iter().zip(&alone[0]) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
}

/// Max |a − b| over all elements.
fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

fn random_var(rng: &mut TrainRng, shape: &[usize], scale: f32) -> Var {
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|_| rng.normal() * scale).collect();
    Var::from_vec(data, shape, &Device::Cpu).unwrap()
}

/// Forward values and the gradients of a weighted sum (so every output position gets a
/// different upstream gradient) for one op on `inputs`.
fn value_and_grads(
    inputs: &[&Var],
    weights: &Tensor,
    op: impl Fn(&[&Tensor]) -> Tensor,
) -> (Tensor, Vec<Option<Tensor>>) {
    let ts: Vec<&Tensor> = inputs.iter().map(|v| v.as_tensor()).collect();
    let y = op(&ts);
    let grads = (&y * weights)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let g = ts.iter().map(|t| grads.get(t).cloned()).collect();
    (y, g)
}

#[test]
fn fused_kernels_match_composed_ops_forward_and_backward() {
    use attune_trainer::model::dropout::{DropoutMask, dropout_mask};
    use attune_trainer::model::layers::{
        attention, attention_composed, gelu, gelu_composed, layer_norm, layer_norm_composed,
        linear, linear_composed, masked_softmax, masked_softmax_composed, softmax_last,
        softmax_last_composed,
    };
    let mut rng = TrainRng::new(8, 8);
    // 2 × 700 rows of 24: more rows than one parallel task takes, so the threaded paths run.
    let x = random_var(&mut rng, &[2, 700, 24], 3.0);
    let g = random_var(&mut rng, &[24], 1.0);
    let b = random_var(&mut rng, &[24], 1.0);
    let w = random_var(&mut rng, &[2, 700, 24], 1.0).as_tensor().clone();
    let lin_w = random_var(&mut rng, &[24, 24], 0.3);
    // Attention scores (batch 2, heads 3, 40 × 24) and a mask hiding some keys of each sequence.
    let scores = random_var(&mut rng, &[2, 3, 40, 24], 3.0);
    let sw = random_var(&mut rng, &[2, 3, 40, 24], 1.0)
        .as_tensor()
        .clone();
    let mask: Vec<f32> = (0..2 * 24)
        .map(|i| {
            if i % 24 >= 20 - 5 * (i / 24) {
                f32::MIN
            } else {
                0.0
            }
        })
        .collect();
    let mask = Var::from_vec(mask, (2, 1, 1, 24), &Device::Cpu).unwrap();
    let (y1, g1) = value_and_grads(&[&scores, &mask], &sw, |t| {
        masked_softmax(t[0], t[1]).unwrap()
    });
    let (y2, g2) = value_and_grads(&[&scores, &mask], &sw, |t| {
        masked_softmax_composed(t[0], t[1]).unwrap()
    });
    assert!(max_diff(&y1, &y2) < 1e-6, "masked softmax forward");
    let (Some(a), Some(c)) = (&g1[0], &g2[0]) else {
        panic!("masked softmax: no gradient for the scores")
    };
    assert!(max_diff(a, c) < 1e-5, "masked softmax gradient");
    // Attention (batch 2, seq 24, hidden 12 = 3 heads of 4), with and without dropout.
    let qkv: Vec<Var> = (0..3)
        .map(|_| random_var(&mut rng, &[2, 24, 12], 1.0))
        .collect();
    let aw = random_var(&mut rng, &[2, 24, 12], 1.0).as_tensor().clone();
    let amask = mask.as_tensor().detach();
    for dropout in [None, Some(0.3f32)] {
        let drop = dropout
            .map(|p| dropout_mask(2 * 3 * 24 * 24, p, &mut rng))
            .map(DropoutMask::Host);
        let inputs: Vec<&Var> = qkv.iter().collect();
        let (y1, g1) = value_and_grads(&inputs, &aw, |t| {
            attention(t[0], t[1], t[2], &amask, 3, drop.clone()).unwrap()
        });
        let (y2, g2) = value_and_grads(&inputs, &aw, |t| {
            attention_composed(t[0], t[1], t[2], &amask, 3, drop.clone()).unwrap()
        });
        let d = max_diff(&y1, &y2);
        assert!(d < 1e-5, "attention ({dropout:?}): forward differs by {d}");
        for (i, (a, c)) in g1.iter().zip(&g2).enumerate() {
            let (Some(a), Some(c)) = (a, c) else {
                panic!("attention: no gradient for input {i}")
            };
            let d = max_diff(a, c);
            assert!(
                d < 1e-4,
                "attention ({dropout:?}): gradient {i} differs by {d}"
            );
        }
    }
    type Op = fn(&[&Tensor]) -> Tensor;
    let cases: [(&str, Op, Op, Vec<&Var>); 4] = [
        (
            "linear",
            |t| linear(t[0], t[1], t[2]).unwrap(),
            |t| linear_composed(t[0], t[1], t[2]).unwrap(),
            vec![&x, &lin_w, &b],
        ),
        (
            "softmax",
            |t| softmax_last(t[0]).unwrap(),
            |t| softmax_last_composed(t[0]).unwrap(),
            vec![&x],
        ),
        (
            "layer norm",
            |t| layer_norm(t[0], t[1], t[2], 1e-12).unwrap(),
            |t| layer_norm_composed(t[0], t[1], t[2], 1e-12).unwrap(),
            vec![&x, &g, &b],
        ),
        (
            "gelu",
            |t| gelu(t[0]).unwrap(),
            |t| gelu_composed(t[0]).unwrap(),
            vec![&x],
        ),
    ];
    for (name, fused, composed, inputs) in cases {
        let (y1, g1) = value_and_grads(&inputs, &w, fused);
        let (y2, g2) = value_and_grads(&inputs, &w, composed);
        let d = max_diff(&y1, &y2);
        assert!(d < 1e-5, "{name}: forward differs by {d}");
        for (i, (a, c)) in g1.iter().zip(&g2).enumerate() {
            let (Some(a), Some(c)) = (a, c) else {
                panic!("{name}: no gradient for input {i}")
            };
            assert_eq!(a.shape(), c.shape(), "{name}: gradient {i} shape");
            // Gradient sums run over up to 1,400 rows in f32: relative tolerance.
            let scale = c
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            let d = max_diff(a, c);
            assert!(
                d <= 1e-4 * f64::from(scale.max(1.0)),
                "{name}: gradient {i} differs by {d} (scale {scale})"
            );
        }
    }
}

/// Seeded training must give the same bits on every run and with any number of threads, so no
/// fused kernel may let its parallel reductions follow how rayon happens to split the work.
#[test]
fn fused_gradients_do_not_depend_on_the_thread_count() {
    use attune_trainer::model::layers::{attention, gelu, layer_norm, linear};
    let mut rng = TrainRng::new(10, 10);
    // 4 × 512 × 48: dozens of parallel tasks per kernel.
    let x = random_var(&mut rng, &[4, 512, 48], 1.0);
    let gamma = random_var(&mut rng, &[48], 1.0);
    let beta = random_var(&mut rng, &[48], 1.0);
    let w = random_var(&mut rng, &[48, 48], 0.2);
    let up = random_var(&mut rng, &[4, 512, 48], 1.0).as_tensor().clone();
    let mask = Tensor::zeros((4, 1, 1, 512), DType::F32, &Device::Cpu).unwrap();
    let inputs = [&x, &gamma, &beta, &w];
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let (y, grads) = value_and_grads(&inputs, &up, |t| {
                let h = layer_norm(t[0], t[1], t[2], 1e-12).unwrap();
                let h = gelu(&linear(&h, t[3], t[2]).unwrap()).unwrap();
                attention(&h, &h, &h, &mask, 4, None).unwrap()
            });
            let mut bits = vec![y.flatten_all().unwrap().to_vec1::<f32>().unwrap()];
            for g in grads {
                bits.push(g.unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap());
            }
            bits
        })
    };
    let one = run(1);
    for threads in [2, 3] {
        assert!(
            one == run(threads),
            "{threads} threads changed the result bits"
        );
    }
}

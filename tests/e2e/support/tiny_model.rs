//! A tiny BERT that the real trainer fine-tunes in seconds on two cores: 2 layers of width 32
//! over a word-level vocabulary of the texts it will see, with fixed pseudo-random weights, as
//! a Hub repo holds it (config, safetensors weights, tokenizer, vocab). Every weight the
//! trainer's BERT has is in the file, so only the classifier head starts fresh.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

const SPECIALS: [&str; 4] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"];
const HIDDEN: usize = 32;
const LAYERS: usize = 2;
const INTERMEDIATE: usize = 64;
const POSITIONS: usize = 64;
const TYPES: usize = 2;

/// The words of `texts` as the tokenizer's pre-tokenizer splits them (lowercased, runs of word
/// characters and runs of punctuation), sorted.
fn words(texts: &[String]) -> BTreeSet<String> {
    let mut words = BTreeSet::new();
    for text in texts {
        let mut word = String::new();
        let mut word_chars = false;
        for c in text.to_lowercase().chars() {
            let is_word = c.is_alphanumeric() || c == '_';
            if c.is_whitespace() || (!word.is_empty() && is_word != word_chars) {
                words.extend((!word.is_empty()).then(|| std::mem::take(&mut word)));
            }
            if !c.is_whitespace() {
                word.push(c);
                word_chars = is_word;
            }
        }
        words.extend((!word.is_empty()).then_some(word));
    }
    words
}

/// A BERT tokenizer.json: lowercase, whitespace/punctuation split, word-level vocabulary,
/// `[CLS] … [SEP]` around each text.
fn tokenizer(vocab: &[String]) -> Value {
    let ids: Map<String, Value> = vocab
        .iter()
        .enumerate()
        .map(|(i, w)| (w.clone(), json!(i)))
        .collect();
    let added: Vec<Value> = SPECIALS
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({"id": i, "content": t, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}
            }
        },
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": ids, "unk_token": "[UNK]"}
    })
}

/// Every weight of the encoder, with its shape, under transformers' names (no `bert.` prefix,
/// as sentence-transformers checkpoints have them).
fn shapes(vocab: usize) -> Vec<(String, Vec<usize>)> {
    let mut shapes = vec![
        (
            "embeddings.word_embeddings.weight".to_owned(),
            vec![vocab, HIDDEN],
        ),
        (
            "embeddings.position_embeddings.weight".to_owned(),
            vec![POSITIONS, HIDDEN],
        ),
        (
            "embeddings.token_type_embeddings.weight".to_owned(),
            vec![TYPES, HIDDEN],
        ),
    ];
    let norm = |shapes: &mut Vec<(String, Vec<usize>)>, name: &str| {
        shapes.push((format!("{name}.LayerNorm.weight"), vec![HIDDEN]));
        shapes.push((format!("{name}.LayerNorm.bias"), vec![HIDDEN]));
    };
    let linear = |shapes: &mut Vec<(String, Vec<usize>)>, name: &str, out: usize, inputs: usize| {
        shapes.push((format!("{name}.weight"), vec![out, inputs]));
        shapes.push((format!("{name}.bias"), vec![out]));
    };
    norm(&mut shapes, "embeddings");
    for i in 0..LAYERS {
        let layer = format!("encoder.layer.{i}");
        for part in ["query", "key", "value"] {
            linear(
                &mut shapes,
                &format!("{layer}.attention.self.{part}"),
                HIDDEN,
                HIDDEN,
            );
        }
        linear(
            &mut shapes,
            &format!("{layer}.attention.output.dense"),
            HIDDEN,
            HIDDEN,
        );
        norm(&mut shapes, &format!("{layer}.attention.output"));
        linear(
            &mut shapes,
            &format!("{layer}.intermediate.dense"),
            INTERMEDIATE,
            HIDDEN,
        );
        linear(
            &mut shapes,
            &format!("{layer}.output.dense"),
            HIDDEN,
            INTERMEDIATE,
        );
        norm(&mut shapes, &format!("{layer}.output"));
    }
    linear(&mut shapes, "pooler.dense", HIDDEN, HIDDEN);
    shapes
}

/// The safetensors file of `tensors` (f32): a little-endian u64 header length, the JSON header
/// (padded with spaces to a multiple of 8), then the data in header order.
fn safetensors(tensors: &[(String, Vec<usize>, Vec<f32>)]) -> Vec<u8> {
    let mut header = Map::new();
    let mut offset = 0;
    for (name, shape, values) in tensors {
        let end = offset + values.len() * 4;
        header.insert(
            name.clone(),
            json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut header = Value::Object(header).to_string();
    while !header.len().is_multiple_of(8) {
        header.push(' ');
    }
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    for (_, _, values) in tensors {
        for value in values {
            bytes.extend_from_slice(&value.to_le_bytes());
        }
    }
    bytes
}

/// The files of the tiny model whose vocabulary covers `texts`.
pub fn tiny_bert_files(texts: &[String]) -> Vec<(String, Vec<u8>)> {
    let vocab: Vec<String> = SPECIALS
        .iter()
        .map(|s| (*s).to_owned())
        .chain(words(texts))
        .collect();
    let config = json!({
        "model_type": "bert", "architectures": ["BertModel"], "vocab_size": vocab.len(),
        "hidden_size": HIDDEN, "num_hidden_layers": LAYERS, "num_attention_heads": 2,
        "intermediate_size": INTERMEDIATE, "max_position_embeddings": POSITIONS,
        "type_vocab_size": TYPES, "layer_norm_eps": 1e-12, "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1, "initializer_range": 0.2, "hidden_act": "gelu",
        "pad_token_id": 0
    });
    // xorshift64: the same weights on every run, uniform in ±0.35 (std 0.2: as the trainer's
    // own tiny test models, wide enough that a random encoder's [CLS] tells words apart).
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.7
    };
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = shapes(vocab.len())
        .into_iter()
        .map(|(name, shape)| {
            let count = shape.iter().product();
            let values = if name.ends_with("LayerNorm.weight") {
                vec![1.0; count]
            } else if name.ends_with(".bias") {
                vec![0.0; count]
            } else {
                (0..count).map(|_| next()).collect()
            };
            (name, shape, values)
        })
        .collect();
    vec![
        ("config.json".to_owned(), config.to_string().into_bytes()),
        ("model.safetensors".to_owned(), safetensors(&tensors)),
        (
            "tokenizer.json".to_owned(),
            tokenizer(&vocab).to_string().into_bytes(),
        ),
        (
            "vocab.txt".to_owned(),
            format!("{}\n", vocab.join("\n")).into_bytes(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::words;

    #[test]
    fn words_split_like_the_whitespace_pre_tokenizer() {
        let texts = ["What's the weather, today?".to_owned()];
        let expected = ["'", ",", "?", "s", "the", "today", "weather", "what"];
        assert_eq!(words(&texts).into_iter().collect::<Vec<_>>(), expected);
    }
}

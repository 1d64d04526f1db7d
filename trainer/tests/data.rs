//! Data tests: formats, labels, errors with file and line, split, batching.

use attune_trainer::Error;
use attune_trainer::data::{Batcher, DataConfig, Encoded, batch::collate, load_dataset};

fn cfg(path: &std::path::Path) -> DataConfig {
    DataConfig::new(path)
}

#[test]
fn jsonl_labels_are_discovered_sorted_and_split_is_seeded() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("d.jsonl");
    let rows: String = (0..20)
        .map(|i| {
            format!(
                "{{\"text\":\"t{i}\",\"label\":\"{}\"}}\n",
                ["z", "a", "m"][i % 3]
            )
        })
        .collect();
    std::fs::write(&p, format!("{rows}\n")).unwrap();
    let mut c = cfg(&p);
    c.validation_split = 0.25;
    let a = load_dataset(&c, 1).unwrap();
    assert_eq!(a.labels.names(), &["a", "m", "z"]);
    assert_eq!((a.train.len(), a.validation.len()), (15, 5));
    let b = load_dataset(&c, 1).unwrap();
    assert_eq!(a.validation, b.validation);
    let other = load_dataset(&c, 2).unwrap();
    assert_ne!(a.validation, other.validation);
    assert!(a.digest.starts_with("sha256:"));
}

#[test]
fn csv_with_pair_and_configured_labels() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("d.csv");
    std::fs::write(&p, "q,a,y\n\"hi, there\",yo,yes\nfoo,bar,no\nx,y,yes\n").unwrap();
    let mut c = cfg(&p);
    c.text_field = "q".into();
    c.text_pair_field = Some("a".into());
    c.label_field = "y".into();
    c.labels = Some(vec!["yes".into(), "no".into()]);
    c.validation_split = 0.0;
    let d = load_dataset(&c, 0).unwrap();
    assert_eq!(d.train.len(), 3);
    let first = d.train.iter().find(|e| e.text == "hi, there").unwrap();
    assert_eq!(first.text_pair.as_deref(), Some("yo"));
    assert_eq!(first.label, 0);
}

fn data_err(body: &str, ext: &str, tweak: impl Fn(&mut DataConfig)) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join(format!("d.{ext}"));
    std::fs::write(&p, body).unwrap();
    let mut c = cfg(&p);
    tweak(&mut c);
    match load_dataset(&c, 0) {
        Err(Error::Data(m)) => m,
        other => panic!("expected a data error, got {other:?}"),
    }
}

#[test]
fn bad_rows_name_file_line_and_reason() {
    let m = data_err(
        "{\"text\":\"a\",\"label\":\"x\"}\n\n{\"text\":\"b\"}\n",
        "jsonl",
        |_| {},
    );
    assert!(m.contains("d.jsonl:3: missing field `label`"), "{m}");
    let m = data_err(
        "{\"text\":\"a\",\"label\":\"x\"}\nnot json\n",
        "jsonl",
        |_| {},
    );
    assert!(m.contains("d.jsonl:2: invalid JSON"), "{m}");
    let m = data_err("text,label\na,x\n", "csv", |c| c.label_field = "y".into());
    assert!(m.contains("no column `y`"), "{m}");
}

#[test]
fn bad_rows_can_be_skipped_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("d.jsonl");
    std::fs::write(
        &p,
        "{\"text\":\"a\",\"label\":\"x\"}\nbroken\n{\"text\":\"b\",\"label\":\"y\"}\n",
    )
    .unwrap();
    let mut c = cfg(&p);
    c.skip_bad_rows = true;
    c.validation_split = 0.0;
    let d = load_dataset(&c, 0).unwrap();
    assert_eq!((d.train.len(), d.skipped), (2, 1));
}

#[test]
fn empty_single_class_and_unknown_label_fail_early() {
    let m = data_err("", "jsonl", |_| {});
    assert!(
        m.contains("no usable rows") || m.contains("distinct label"),
        "{m}"
    );
    let m = data_err(
        "{\"text\":\"a\",\"label\":\"x\"}\n{\"text\":\"b\",\"label\":\"x\"}\n",
        "jsonl",
        |_| {},
    );
    assert!(m.contains("1 distinct label"), "{m}");
    let m = data_err(
        "{\"text\":\"a\",\"label\":\"x\"}\n{\"text\":\"b\",\"label\":\"q\"}\n",
        "jsonl",
        |c| c.labels = Some(vec!["x".into(), "y".into()]),
    );
    assert!(m.contains("d.jsonl:2: unknown label `q`"), "{m}");
}

fn enc(len: usize, label: u32) -> Encoded {
    Encoded {
        input_ids: (0..len as u32).map(|i| i + 10).collect(),
        token_type_ids: vec![0; len],
        label,
    }
}

#[test]
fn batches_are_padded_per_batch_bucketed_and_seeded() {
    let examples: Vec<Encoded> = (0..100).map(|i| enc(1 + (i * 37) % 50, 0)).collect();
    let b = Batcher {
        seed: 3,
        batch_size: 8,
    };
    let e0 = b.epoch(&examples, 0);
    assert_eq!(e0, b.epoch(&examples, 0));
    assert_ne!(e0, b.epoch(&examples, 1));
    let mut all: Vec<usize> = e0.iter().flatten().copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..100).collect::<Vec<_>>());
    // Bucketing: batches are sorted by length inside, so the padding is small.
    let padded: usize = e0
        .iter()
        .map(|idx| collate(&examples, idx, 0))
        .map(|b| b.attention_mask.iter().filter(|&&m| m == 0).count())
        .sum();
    assert!(padded < 400, "padding {padded}");
    let batch = collate(&examples, &[0, 1], 7);
    assert_eq!(batch.seq_len, 38);
    assert_eq!(batch.input_ids[37], 7);
    assert_eq!(batch.attention_mask[0], 1);
    assert_eq!(batch.attention_mask[37], 0);
    assert_eq!(batch.attention_mask[38 + 37], 1);
}

//! Reading JSONL and CSV rows. A bad row is an error naming file, line and reason, or is skipped
//! and counted when the config says so.

use std::path::Path;

use super::{DataConfig, Format};
use crate::error::{Error, Result};

/// One row as read, label still a string.
#[derive(Debug, Clone, PartialEq)]
pub struct RawRow {
    /// 1-based line number in the file (for error messages).
    pub line: usize,
    pub text: String,
    pub text_pair: Option<String>,
    pub label: String,
}

/// Reads all rows; returns them and the number skipped.
pub fn read_rows(path: &Path, format: Format, cfg: &DataConfig) -> Result<(Vec<RawRow>, usize)> {
    let rows = match format {
        Format::Jsonl => read_jsonl(path, cfg)?,
        Format::Csv => read_csv(path, cfg)?,
    };
    let mut out = Vec::with_capacity(rows.len());
    let mut skipped = 0;
    for (line, row) in rows {
        match row {
            Ok(r) => out.push(r),
            Err(reason) if cfg.skip_bad_rows => {
                tracing::warn!(file = %path.display(), line, %reason, "skipping bad row");
                skipped += 1;
            }
            Err(reason) => {
                return Err(Error::Data(format!("{}:{line}: {reason}", path.display())));
            }
        }
    }
    Ok((out, skipped))
}

type Rows = Vec<(usize, std::result::Result<RawRow, String>)>;

fn field_string(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn read_jsonl(path: &Path, cfg: &DataConfig) -> Result<Rows> {
    let text = String::from_utf8(crate::error::read_file(path)?)
        .map_err(|e| Error::Data(format!("{}: not UTF-8: {e}", path.display())))?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row = parse_json_row(line, cfg).map(|(text, text_pair, label)| RawRow {
            line: i + 1,
            text,
            text_pair,
            label,
        });
        rows.push((i + 1, row));
    }
    Ok(rows)
}

fn parse_json_row(
    line: &str,
    cfg: &DataConfig,
) -> std::result::Result<(String, Option<String>, String), String> {
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    let get = |field: &str| -> std::result::Result<String, String> {
        let f = v
            .get(field)
            .ok_or_else(|| format!("missing field `{field}`"))?;
        field_string(f).ok_or_else(|| format!("field `{field}` is not a string or number"))
    };
    let text = get(&cfg.text_field)?;
    let pair = match &cfg.text_pair_field {
        Some(f) => Some(get(f)?),
        None => None,
    };
    let label = get(&cfg.label_field)?;
    Ok((text, pair, label))
}

fn read_csv(path: &Path, cfg: &DataConfig) -> Result<Rows> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .map_err(|e| Error::Data(format!("{}: {e}", path.display())))?;
    let headers = reader
        .headers()
        .map_err(|e| Error::Data(format!("{}:1: {e}", path.display())))?
        .clone();
    let col = |name: &str| -> Result<usize> {
        headers.iter().position(|h| h == name).ok_or_else(|| {
            Error::Data(format!(
                "{}:1: no column `{name}` (columns: {})",
                path.display(),
                headers.iter().collect::<Vec<_>>().join(", ")
            ))
        })
    };
    let text_col = col(&cfg.text_field)?;
    let label_col = col(&cfg.label_field)?;
    let pair_col = cfg.text_pair_field.as_deref().map(col).transpose()?;
    let mut rows = Vec::new();
    for record in reader.records() {
        let (line, row) = match record {
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line() as usize);
                (line, Err(e.to_string()))
            }
            Ok(r) => {
                let line = r.position().map_or(0, |p| p.line() as usize);
                let get = |c: usize, name: &str| {
                    r.get(c)
                        .map(String::from)
                        .ok_or_else(|| format!("missing column `{name}`"))
                };
                let row = (|| -> std::result::Result<RawRow, String> {
                    Ok(RawRow {
                        line,
                        text: get(text_col, &cfg.text_field)?,
                        text_pair: match (pair_col, &cfg.text_pair_field) {
                            (Some(c), Some(n)) => Some(get(c, n)?),
                            _ => None,
                        },
                        label: get(label_col, &cfg.label_field)?,
                    })
                })();
                (line, row)
            }
        };
        rows.push((line, row));
    }
    Ok(rows)
}

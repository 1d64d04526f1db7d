//! Two counts of API writes: every write the API server served (its `apiserver_request_total`)
//! and the operator's (the audit log `tests/cluster/up` writes with `ATTUNE_AUDIT_WRITES=1`,
//! which names the user of each request).

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::process::Command;

use anyhow::bail;
use serde_json::Value;

use crate::common::cluster::setting;

/// The user the operator authenticates as (a static token of `tests/cluster/up`).
const OPERATOR_USER: &str = "attune-operator";

/// Where the counts come from: kubectl (for the API server's `/metrics`) and the audit log of
/// `cluster.env`'s cluster.
pub struct WriteCounter {
    kubectl: PathBuf,
    audit_log: PathBuf,
}

impl WriteCounter {
    /// The counter of the environment's cluster (`ATTUNE_KUBECTL`, `ATTUNE_CLUSTER_DIR`), which
    /// must keep an audit log.
    pub fn from_env() -> anyhow::Result<Self> {
        let audit_log = PathBuf::from(setting("ATTUNE_CLUSTER_DIR")?).join("logs/audit.log");
        if !audit_log.is_file() {
            bail!(
                "{} is missing: start the cluster with ATTUNE_AUDIT_WRITES=1 (tests/bench/footprint does)",
                audit_log.display()
            );
        }
        Ok(Self {
            kubectl: setting("ATTUNE_KUBECTL")?.into(),
            audit_log,
        })
    }

    /// Counts of the writes so far.
    pub async fn snapshot(&self) -> anyhow::Result<Writes> {
        let kubectl = self.kubectl.clone();
        let metrics = tokio::task::spawn_blocking(move || {
            Command::new(kubectl)
                .args(["get", "--raw", "/metrics"])
                .output()
        })
        .await??;
        if !metrics.status.success() {
            bail!(
                "kubectl get --raw /metrics: {}",
                String::from_utf8_lossy(&metrics.stderr)
            );
        }
        let text = String::from_utf8_lossy(&metrics.stdout);
        let audit_end = std::fs::metadata(&self.audit_log)?.len();
        Ok(Writes {
            served: served_writes(&text),
            audit_log: self.audit_log.clone(),
            audit_end,
        })
    }
}

/// What a write did, as both sources can say it: `create`, `update`, `patch` (server-side
/// apply included), `delete`.
fn kind_of_write(verb: &str) -> Option<&'static str> {
    match verb.to_ascii_lowercase().as_str() {
        "post" | "create" => Some("create"),
        "put" | "update" => Some("update"),
        "patch" | "apply" => Some("patch"),
        "delete" | "deletecollection" => Some("delete"),
        _ => None,
    }
}

/// `resource[.group][/subresource]`, as kubectl names resources.
fn resource_name(resource: &str, group: &str, subresource: &str) -> String {
    let mut name = resource.to_owned();
    if !group.is_empty() {
        name = format!("{name}.{group}");
    }
    if !subresource.is_empty() {
        name = format!("{name}/{subresource}");
    }
    name
}

/// Writes by (resource, kind of write).
pub type WriteKey = (String, &'static str);

/// The write requests of `apiserver_request_total` in a `/metrics` text.
fn served_writes(metrics: &str) -> BTreeMap<WriteKey, u64> {
    let mut counts = BTreeMap::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split("\",")
                .find_map(|pair| pair.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('"'))
                .unwrap_or_default()
        };
        let Some(kind) = kind_of_write(label("verb")) else {
            continue;
        };
        let resource = resource_name(label("resource"), label("group"), label("subresource"));
        let count = value.trim().parse::<f64>().unwrap_or(0.0) as u64;
        *counts.entry((resource, kind)).or_default() += count;
    }
    counts
}

/// A snapshot of the write counts.
pub struct Writes {
    served: BTreeMap<WriteKey, u64>,
    audit_log: PathBuf,
    audit_end: u64,
}

/// Writes between two snapshots: by all clients, and by the operator.
#[derive(Clone, Debug, Default)]
pub struct WriteDelta {
    /// (all clients, the operator) per resource and kind of write.
    pub rows: BTreeMap<WriteKey, (u64, u64)>,
}

impl WriteDelta {
    /// The operator's writes.
    pub fn operator(&self) -> u64 {
        self.rows.values().map(|(_, operator)| operator).sum()
    }

    /// Adds `other`'s counts.
    pub fn add(&mut self, other: &Self) {
        for (key, (all, operator)) in &other.rows {
            let row = self.rows.entry(key.clone()).or_default();
            row.0 += all;
            row.1 += operator;
        }
    }
}

impl Writes {
    /// The writes since `earlier`.
    pub fn since(&self, earlier: &Self) -> anyhow::Result<WriteDelta> {
        let mut delta = WriteDelta::default();
        for (key, count) in &self.served {
            let before = earlier.served.get(key).copied().unwrap_or(0);
            if *count > before {
                delta.rows.entry(key.clone()).or_default().0 = count - before;
            }
        }
        let mut log = std::fs::File::open(&self.audit_log)?;
        log.seek(SeekFrom::Start(earlier.audit_end))?;
        let mut text = String::new();
        log.take(self.audit_end.saturating_sub(earlier.audit_end))
            .read_to_string(&mut text)?;
        for event in text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        {
            if event["stage"] != "ResponseComplete" || event["user"]["username"] != OPERATOR_USER {
                continue;
            }
            let Some(kind) = event["verb"].as_str().and_then(kind_of_write) else {
                continue;
            };
            let object = &event["objectRef"];
            let field = |name: &str| object[name].as_str().unwrap_or_default();
            let resource =
                resource_name(field("resource"), field("apiGroup"), field("subresource"));
            delta.rows.entry((resource, kind)).or_default().1 += 1;
        }
        Ok(delta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_write_verbs_by_resource_and_ignores_reads() {
        let metrics = r#"
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="binding",verb="POST",version="v1"} 7
apiserver_request_total{code="200",component="apiserver",dry_run="",group="batch",resource="jobs",scope="resource",subresource="",verb="APPLY",version="v1"} 3
apiserver_request_total{code="409",component="apiserver",dry_run="",group="batch",resource="jobs",scope="resource",subresource="",verb="PATCH",version="v1"} 2
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="namespace",subresource="",verb="LIST",version="v1"} 99
"#;
        let counts = served_writes(metrics);
        assert_eq!(counts[&("pods/binding".to_owned(), "create")], 7);
        assert_eq!(counts[&("jobs.batch".to_owned(), "patch")], 5);
        assert_eq!(counts.len(), 2, "{counts:?}");
    }
}

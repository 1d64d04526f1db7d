//! `modelCache` of the configuration file: the volume every fetch and trainer pod mounts — one
//! the platform names (`volume`), or a PersistentVolume the operator binds to a claim in each
//! namespace that runs its pods (`persistentVolume`, the form Pod Security "restricted" admits) —
//! and when unused entries are evicted (`retention`).

use k8s_openapi::api::core::v1::{PersistentVolumeClaimVolumeSource, PersistentVolumeSpec, Volume};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde::{Deserialize, Deserializer};

use crate::config::PodDefaults;

/// Name of the model-cache volume in every pod.
pub const MODEL_CACHE_VOLUME: &str = "model-cache";

/// The shared model cache.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ModelCacheConfig {
    /// The volume fetch pods mount writable and trainer pods read-only: `volume` as the file
    /// sets it (default: the hostPath below), or, with `persistentVolume`, the claim
    /// [`claim_name`] the operator creates in each namespace. Set by [`Self::resolve`].
    #[serde(skip)]
    pub volume: Volume,
    /// `volume` as the file sets it: any core/v1 volume source.
    #[serde(rename = "volume", deserialize_with = "volume_source")]
    configured_volume: Option<Volume>,
    /// A core/v1 PersistentVolumeSpec (a volume source such as `nfs`, `csi` or `hostPath`, with
    /// `capacity`, `accessModes`, `storageClassName`, `mountOptions`, `nodeAffinity`): for each
    /// namespace that runs fetch, eviction or trainer pods the operator creates a
    /// PersistentVolume from it, pre-bound to claim [`claim_name`] that it creates there, so
    /// every namespace's pods see the same files through a claim.
    #[serde(deserialize_with = "persistent_volume_spec")]
    pub persistent_volume: Option<PersistentVolumeSpec>,
    /// When unused entries are evicted.
    pub retention: RetentionConfig,
    /// Placement of fetch and eviction pods (they need the hub, not a GPU); unset:
    /// `trainer.podDefaults`.
    pub fetch_pod_defaults: Option<PodDefaults>,
}

impl Default for ModelCacheConfig {
    fn default() -> Self {
        Self {
            volume: default_volume(),
            configured_volume: None,
            persistent_volume: None,
            retention: RetentionConfig::default(),
            fetch_pod_defaults: None,
        }
    }
}

/// The claim of installation `instance` in every namespace that runs its pods
/// (`persistentVolume` mode).
pub fn claim_name(instance: &str) -> String {
    format!("{instance}-model-cache")
}

/// The default volume: a node-local hostPath.
fn default_volume() -> Volume {
    let source = serde_json::json!({
        "hostPath": { "path": "/var/lib/attune/model-cache", "type": "DirectoryOrCreate" }
    });
    volume_from(source).unwrap_or_default()
}

/// Garbage collection of cache entries.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// An entry no waiting or running job needs, unused for longer than this, is evicted;
    /// `0` keeps entries however long they are unused.
    pub max_unused_seconds: u64,
    /// A budget for the entries' sizes added up: above it, the least recently used entries no
    /// job needs are evicted until the rest fit. Unset: no budget.
    pub max_total_size: Option<Quantity>,
    /// Seconds between two passes of the collector.
    pub check_interval_seconds: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            max_unused_seconds: 30 * 24 * 3600,
            max_total_size: None,
            check_interval_seconds: 300,
        }
    }
}

impl RetentionConfig {
    /// The size budget in bytes, if any.
    ///
    /// # Errors
    /// `maxTotalSize` is not a whole number of bytes with an optional SI or binary suffix.
    pub fn max_total_bytes(&self) -> Result<Option<u64>, String> {
        self.max_total_size
            .as_ref()
            .map(|q| {
                bytes(&q.0).ok_or_else(|| {
                    format!(
                        "modelCache.retention.maxTotalSize: `{}` is no size: write e.g. 500Gi, \
                         2T or 1000000000",
                        q.0
                    )
                })
            })
            .transpose()
    }
}

/// Bytes of a quantity such as `500Gi`, `2T` or `1000000`: a whole number with an optional
/// binary (Ki…Ei) or decimal (k…E) suffix; `None` for anything else.
fn bytes(quantity: &str) -> Option<u64> {
    let split = quantity
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(quantity.len());
    let (number, suffix) = quantity.split_at(split);
    let multiplier: u64 = match suffix {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "E" => 1_000_000_000_000_000_000,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(multiplier)
}

impl ModelCacheConfig {
    /// Sets [`Self::volume`] from the file's choice, and checks that choice.
    ///
    /// # Errors
    /// Both forms set, or a `persistentVolume` the operator cannot use; the message names the
    /// field.
    pub fn resolve(&mut self, instance: &str) -> Result<(), String> {
        self.retention.max_total_bytes()?;
        if self.retention.check_interval_seconds == 0 {
            return Err("modelCache.retention.checkIntervalSeconds: must be at least 1".into());
        }
        let Some(spec) = &self.persistent_volume else {
            self.volume = self
                .configured_volume
                .clone()
                .unwrap_or_else(default_volume);
            return Ok(());
        };
        if self.configured_volume.is_some() {
            return Err(
                "modelCache: set either `volume` (one volume source for every pod) or \
                 `persistentVolume` (a claim per namespace), not both"
                    .into(),
            );
        }
        check_persistent_volume(spec)?;
        self.volume = Volume {
            name: MODEL_CACHE_VOLUME.to_owned(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name(instance),
                read_only: None,
            }),
            ..Volume::default()
        };
        Ok(())
    }
}

/// Fields of a PersistentVolumeSpec that are no volume source.
const NOT_A_SOURCE: &[&str] = &[
    "accessModes",
    "capacity",
    "claimRef",
    "mountOptions",
    "nodeAffinity",
    "persistentVolumeReclaimPolicy",
    "storageClassName",
    "volumeAttributesClassName",
    "volumeMode",
];

fn check_persistent_volume(spec: &PersistentVolumeSpec) -> Result<(), String> {
    let field = "modelCache.persistentVolume";
    if spec.claim_ref.is_some() {
        return Err(format!(
            "{field}.claimRef: the operator binds each volume to its own claim; remove it"
        ));
    }
    if let Some(policy) = spec
        .persistent_volume_reclaim_policy
        .as_deref()
        .filter(|p| *p != "Retain")
    {
        return Err(format!(
            "{field}.persistentVolumeReclaimPolicy: `{policy}` would let Kubernetes delete or \
             scrub the shared files when one namespace's claim goes; remove it (Retain)"
        ));
    }
    let json = serde_json::to_value(spec).map_err(|e| e.to_string())?;
    let has_source = json
        .as_object()
        .is_some_and(|m| m.keys().any(|k| !NOT_A_SOURCE.contains(&k.as_str())));
    if !has_source {
        return Err(format!(
            "{field}: names no volume source: set e.g. nfs, csi or hostPath"
        ));
    }
    Ok(())
}

/// Reads a volume source (a core/v1 `Volume` without its name) and names it.
fn volume_source<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Volume>, D::Error> {
    let source = serde_json::Value::deserialize(deserializer)?;
    volume_from(source)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

fn volume_from(mut source: serde_json::Value) -> Result<Volume, String> {
    let map = source
        .as_object_mut()
        .ok_or("must be a volume source, e.g. `hostPath: {path: /var/lib/attune/model-cache}`")?;
    if map.is_empty() {
        return Err(
            "names no volume source: set e.g. hostPath, persistentVolumeClaim or nfs".into(),
        );
    }
    map.insert("name".into(), MODEL_CACHE_VOLUME.into());
    serde_json::from_value(source).map_err(|e| e.to_string())
}

/// Reads a PersistentVolumeSpec; a top-level field it does not know is an error (k8s-openapi
/// would drop it silently, and a misspelt `nfs` must not become "no source").
fn persistent_volume_spec<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<PersistentVolumeSpec>, D::Error> {
    let given = serde_json::Value::deserialize(deserializer)?;
    let spec: PersistentVolumeSpec =
        serde_json::from_value(given.clone()).map_err(serde::de::Error::custom)?;
    let known = serde_json::to_value(&spec).map_err(serde::de::Error::custom)?;
    if let Some(unknown) = given
        .as_object()
        .into_iter()
        .flat_map(|m| m.keys())
        .find(|k| known.get(k.as_str()).is_none())
    {
        return Err(serde::de::Error::custom(format!(
            "unknown field `{unknown}` (a core/v1 PersistentVolumeSpec field)"
        )));
    }
    Ok(Some(spec))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(yaml: &str) -> Result<ModelCacheConfig, String> {
        let mut config: ModelCacheConfig =
            serde_norway::from_str(yaml).map_err(|e| e.to_string())?;
        config.resolve("attune").map(|()| config)
    }

    #[test]
    fn a_persistent_volume_gives_pods_the_namespace_claim() {
        let config = resolved(
            "persistentVolume:\n  nfs: {server: nfs.local, path: /exports/models}\n  capacity: {storage: 1Ti}\n",
        )
        .expect("valid");
        let claim = config.volume.persistent_volume_claim.expect("a claim");
        assert_eq!(claim.claim_name, "attune-model-cache");
        assert_eq!(config.volume.name, MODEL_CACHE_VOLUME);
        assert!(config.volume.host_path.is_none());
    }

    #[test]
    fn without_either_form_pods_get_the_host_path() {
        let config = resolved("{}").expect("defaults");
        let host_path = config.volume.host_path.expect("hostPath");
        assert_eq!(host_path.path, "/var/lib/attune/model-cache");
        assert_eq!(config.retention.max_unused_seconds, 2_592_000);
        assert_eq!(config.retention.check_interval_seconds, 300);
        assert_eq!(config.retention.max_total_bytes(), Ok(None));
    }

    #[test]
    fn mistakes_in_the_persistent_volume_name_their_field() {
        for (yaml, expected) in [
            (
                "volume: {hostPath: {path: /x}}\npersistentVolume: {hostPath: {path: /x}}\n",
                "not both",
            ),
            (
                "persistentVolume: {capacity: {storage: 1Gi}}\n",
                "modelCache.persistentVolume: names no volume source",
            ),
            (
                "persistentVolume: {nfs: {server: s, path: /p}, claimRef: {name: c}}\n",
                "modelCache.persistentVolume.claimRef",
            ),
            (
                "persistentVolume: {nfs: {server: s, path: /p}, persistentVolumeReclaimPolicy: Delete}\n",
                "persistentVolumeReclaimPolicy: `Delete`",
            ),
            (
                "persistentVolume: {nsf: {server: s, path: /p}}\n",
                "unknown field `nsf`",
            ),
            (
                "retention: {maxTotalSize: 1.5Gi}\n",
                "modelCache.retention.maxTotalSize: `1.5Gi` is no size",
            ),
            (
                "retention: {checkIntervalSeconds: 0}\n",
                "modelCache.retention.checkIntervalSeconds",
            ),
        ] {
            let error = resolved(yaml).expect_err(yaml);
            assert!(error.contains(expected), "{yaml}: {error}");
        }
    }

    #[test]
    fn sizes_read_like_kubernetes_quantities() {
        for (text, expected) in [
            ("1000", Some(1000)),
            ("500Gi", Some(500 << 30)),
            ("2T", Some(2_000_000_000_000)),
            ("3k", Some(3000)),
            ("1.5G", None),
            ("12Q", None),
            ("Gi", None),
            ("99999999999Ei", None),
        ] {
            assert_eq!(bytes(text), expected, "{text}");
        }
    }
}

//! `tenancy` in the operator's configuration file: what happens to jobs of namespaces no
//! Tenant owns, preemption, and when a waiting job reserves its place.

use serde::Deserialize;

/// The `tenancy` section.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TenancyConfig {
    /// Jobs in namespaces that no Tenant owns.
    pub unowned_namespaces: UnownedNamespaces,
    /// Whether and when waiting jobs stop running ones.
    pub preemption: PreemptionConfig,
    /// A job that has waited this many seconds reserves its place: no later job of its tenant
    /// is admitted, and no later job of its cohort borrows, until it runs.
    pub reserve_after_seconds: u64,
}

impl Default for TenancyConfig {
    fn default() -> Self {
        Self {
            unowned_namespaces: UnownedNamespaces::Admit,
            preemption: PreemptionConfig::default(),
            reserve_after_seconds: 600,
        }
    }
}

/// What happens to a job in a namespace that no Tenant owns: `Admit`, `Reject` or
/// `{tenant: NAME}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "serde_json::Value")]
pub enum UnownedNamespaces {
    /// It runs without a quota, as before any Tenant existed: a first installation works at
    /// once, and Tenants bring quotas to the namespaces they own.
    #[default]
    Admit,
    /// It fails (`NoTenant`), with a message saying which Tenant to create.
    Reject,
    /// It runs under this Tenant's quota.
    Tenant(String),
}

impl TryFrom<serde_json::Value> for UnownedNamespaces {
    type Error = String;

    fn try_from(value: serde_json::Value) -> Result<Self, String> {
        let bad = || {
            format!(
                "tenancy.unownedNamespaces: `{value}` is none of `Admit`, `Reject` or \
                 `{{tenant: NAME}}`"
            )
        };
        match &value {
            serde_json::Value::String(word) if word == "Admit" => Ok(Self::Admit),
            serde_json::Value::String(word) if word == "Reject" => Ok(Self::Reject),
            serde_json::Value::Object(map) if map.len() == 1 => match map.get("tenant") {
                Some(serde_json::Value::String(name)) => Ok(Self::Tenant(name.clone())),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }
}

/// Preemption of running jobs by waiting ones.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PreemptionConfig {
    /// Off: jobs wait for GPUs to be given back and never stop others.
    pub enabled: bool,
    /// A job that has run for less than this many seconds (since it was admitted or resumed)
    /// is never preempted, so every admission makes progress and no pair of jobs can take
    /// turns preempting each other faster than this.
    pub minimum_runtime_seconds: u64,
}

impl Default for PreemptionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            minimum_runtime_seconds: 120,
        }
    }
}

impl TenancyConfig {
    /// Checks what serde cannot.
    ///
    /// # Errors
    /// A message naming the field.
    pub fn check(&self) -> Result<(), String> {
        if let UnownedNamespaces::Tenant(name) = &self.unowned_namespaces {
            let valid = !name.is_empty()
                && name.len() <= 253
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
            if !valid {
                return Err(format!(
                    "tenancy.unownedNamespaces.tenant: `{name}` is not a Tenant name (lowercase \
                     letters, digits, '-' and '.')"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<TenancyConfig, String> {
        let config: TenancyConfig = serde_norway::from_str(yaml).map_err(|e| e.to_string())?;
        config.check()?;
        Ok(config)
    }

    #[test]
    fn the_three_policies_for_unowned_namespaces_parse() {
        assert_eq!(
            parse("{}").expect("defaults").unowned_namespaces,
            UnownedNamespaces::Admit
        );
        assert_eq!(
            parse("unownedNamespaces: Reject")
                .expect("reject")
                .unowned_namespaces,
            UnownedNamespaces::Reject
        );
        assert_eq!(
            parse("unownedNamespaces: {tenant: shared}")
                .expect("tenant")
                .unowned_namespaces,
            UnownedNamespaces::Tenant("shared".to_owned())
        );
        let error = parse("unownedNamespaces: Deny").expect_err("unknown");
        assert!(error.contains("Deny"), "{error}");
        let error = parse("unownedNamespaces: {tenant: Team_A}").expect_err("bad name");
        assert!(
            error.starts_with("tenancy.unownedNamespaces.tenant:"),
            "{error}"
        );
    }

    #[test]
    fn preemption_defaults_and_overrides() {
        let config = parse("{}").expect("defaults");
        assert!(config.preemption.enabled);
        assert_eq!(config.preemption.minimum_runtime_seconds, 120);
        assert_eq!(config.reserve_after_seconds, 600);
        let config = parse(
            "preemption: {enabled: false, minimumRuntimeSeconds: 5}\nreserveAfterSeconds: 30",
        )
        .expect("overrides");
        assert!(!config.preemption.enabled);
        assert_eq!(config.preemption.minimum_runtime_seconds, 5);
        assert_eq!(config.reserve_after_seconds, 30);
        let error = parse("preemption: {minRuntime: 5}").expect_err("typo");
        assert!(error.contains("minRuntime"), "{error}");
    }
}

//! A namespace of one test, deleted (with the cluster-scoped objects it applied) at its end. It
//! enforces Pod Security "restricted", so the API server's admission plugin checks every pod
//! the test and the operator create there.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::cluster::{Cluster, Run, cluster_with_crds};
use super::crds::crds;

/// The label that makes the API server admit only pods of Pod Security "restricted".
pub const RESTRICTED: (&str, &str) = ("pod-security.kubernetes.io/enforce", "restricted");

#[derive(Debug)]
pub struct TestNamespace {
    pub name: String,
    pub cluster: &'static Cluster,
    /// `<resource>/<name>` of the cluster-scoped objects applied through [`Self::apply`].
    cluster_scoped: Mutex<Vec<String>>,
}

impl TestNamespace {
    /// A new namespace `e2e-<test>-<unique>` that enforces Pod Security "restricted" and whose
    /// default ServiceAccount exists (pods need it), or `None` when the test is skipped for want
    /// of a cluster.
    pub fn create(test: &str) -> Option<Self> {
        static SEQUENCE: AtomicU32 = AtomicU32::new(0);
        let cluster = cluster_with_crds()?;
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() % 1_000_000_000);
        let name = format!(
            "e2e-{test}-{millis:x}-{}",
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        let namespace = json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": { "name": name, "labels": { (RESTRICTED.0): RESTRICTED.1 } },
        });
        cluster
            .kubectl_with_input(&["create", "-f", "-"], Some(&namespace.to_string()))
            .expect_success();
        let namespace = Self {
            name,
            cluster,
            cluster_scoped: Mutex::default(),
        };
        namespace.wait_for(
            &["serviceaccount", "default"],
            "the default ServiceAccount",
            |_| true,
        );
        Some(namespace)
    }

    /// Runs kubectl with `args` in this namespace.
    pub fn kubectl(&self, args: &[&str]) -> Run {
        self.cluster
            .kubectl(&[&["--namespace", &self.name], args].concat())
    }

    /// `kubectl apply` of `manifest`, moved into this test: a namespaced object into this
    /// namespace, a cluster-scoped one (an Attune kind whose CRD says so) renamed
    /// `<namespace>-<name>` and deleted with the namespace.
    pub fn apply(&self, manifest: &Value) -> Run {
        let manifest = self.adopt(manifest);
        self.cluster
            .kubectl_with_input(&["apply", "-f", "-"], Some(&manifest.to_string()))
    }

    /// `manifest` moved into this test (see [`Self::apply`]).
    pub fn adopt(&self, manifest: &Value) -> Value {
        let mut manifest = manifest.clone();
        let kind = manifest["kind"].as_str().unwrap_or_default().to_owned();
        let metadata = manifest["metadata"]
            .as_object_mut()
            .unwrap_or_else(|| panic!("a {kind} without metadata"));
        match crds()
            .iter()
            .find(|crd| crd.kind == kind && crd.cluster_scoped)
        {
            Some(crd) => {
                let name = format!(
                    "{}-{}",
                    self.name,
                    metadata["name"].as_str().unwrap_or_default()
                );
                self.cluster_scoped
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(format!("{}/{name}", crd.name));
                metadata.insert("name".into(), name.into());
            }
            None => {
                metadata.insert("namespace".into(), self.name.clone().into());
            }
        }
        manifest
    }

    /// `kubectl get <target> -o json` in this namespace; `None` while it does not exist.
    pub fn get_json(&self, target: &[&str]) -> Option<Value> {
        self.cluster
            .get_json(&[&["--namespace", &self.name], target].concat())
    }

    /// See [`Cluster::wait_for`]; in this namespace.
    pub fn wait_for(&self, target: &[&str], what: &str, done: impl Fn(&Value) -> bool) -> Value {
        self.cluster
            .wait_for(&[&["--namespace", &self.name], target].concat(), what, done)
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let cluster_scoped = std::mem::take(
            self.cluster_scoped
                .get_mut()
                .unwrap_or_else(|e| e.into_inner()),
        );
        let namespace = format!("namespace/{}", self.name);
        for object in cluster_scoped.iter().chain([&namespace]) {
            if let Err(error) = self
                .cluster
                .kubectl(&["delete", "--ignore-not-found", "--wait=false", object])
                .into_result()
            {
                eprintln!("cleanup: {error}");
            }
        }
    }
}

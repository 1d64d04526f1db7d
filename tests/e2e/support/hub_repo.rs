//! Repos of the cluster's test hub (`tests/cluster/hub`): a repo is a folder
//! `$ATTUNE_HUB_ROOT/<org>/<name>/` of files, served over the Hub's HTTP API; a test writes its
//! own, named after its namespace, and removes it at its end.

use std::path::PathBuf;

use serde_json::Value;

use super::http::request;
use super::namespace::TestNamespace;

/// A repo in the hub's root, removed on drop.
#[derive(Debug)]
pub struct HubRepo {
    /// `org/name`.
    pub id: String,
    dir: PathBuf,
    endpoint: String,
}

impl HubRepo {
    /// Repo `e2e/<namespace>-<suffix>` holding `files` (path, content), written under a hidden
    /// name and renamed into place, so the hub never serves half of it.
    pub fn create(ns: &TestNamespace, suffix: &str, files: &[(String, Vec<u8>)]) -> Self {
        let root = PathBuf::from(ns.cluster.setting("ATTUNE_HUB_ROOT"));
        let id = format!("e2e/{}-{suffix}", ns.name);
        let dir = root.join(&id);
        let tmp = root.join("e2e").join(format!(".{}-{suffix}.tmp", ns.name));
        for (name, content) in files {
            let path = tmp.join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .unwrap_or_else(|e| panic!("{}: {e}", parent.display()));
            }
            std::fs::write(&path, content).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
        std::fs::rename(&tmp, &dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        Self {
            id,
            dir,
            endpoint: ns.cluster.setting("ATTUNE_HUB_ENDPOINT"),
        }
    }

    /// The repo as a FineTuneJob names it: `hf://<id>`.
    pub fn source(&self) -> String {
        format!("hf://{}", self.id)
    }

    /// The repo's folder in a HuggingFace cache: `models--<org>--<name>`.
    pub fn cache_folder(&self) -> String {
        format!("models--{}", self.id.replace('/', "--"))
    }

    /// The commit `main` resolves to, as the hub answers it.
    pub fn commit(&self) -> String {
        let address = self
            .endpoint
            .strip_prefix("http://")
            .unwrap_or_else(|| panic!("hub endpoint {} is not http://", self.endpoint));
        let path = format!("/api/models/{}/revision/main", self.id);
        let (status, body) =
            request(address, "GET", &path, &[], "").unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(status, 200, "GET {path}: {body}");
        let info: Value = serde_json::from_str(&body).expect("repo info JSON");
        info["sha"]
            .as_str()
            .expect("repo info has a sha")
            .to_owned()
    }
}

impl Drop for HubRepo {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("cleanup: {}: {e}", self.dir.display());
        }
    }
}

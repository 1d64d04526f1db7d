//! Per-job progress tokens. A job's token is the HMAC-SHA256 of its identity (namespace, name,
//! UID) under one key kept in a Secret of the operator's namespace: every replica can check a
//! report without reading the job's Secret, a recreated job of the same name gets a new token,
//! and a token for one job is worthless for any other.

use hmac::{Hmac, Mac};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::{Api, Client};
use rand::RngCore;
use sha2::Sha256;

use crate::error::Result;

/// The key in the key Secret (and the token in a job's Secret).
const KEY_FIELD: &str = "key";
/// The token's key in a job's progress Secret.
pub const TOKEN_FIELD: &str = "token";

/// The signing key.
#[derive(Clone)]
pub struct TokenKey(Vec<u8>);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    /// A key from raw bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The key stored in Secret `name` of `namespace`, created with 32 random bytes when missing
    /// (two replicas racing: one create wins, the other reads it).
    ///
    /// # Errors
    /// The API server refused to read or create the Secret.
    pub async fn load_or_create(client: Client, namespace: &str, name: &str) -> Result<Self> {
        let api: Api<Secret> = Api::namespaced(client, namespace);
        if let Some(key) = api.get_opt(name).await?.and_then(|s| key_of(&s)) {
            return Ok(key);
        }
        let mut bytes = vec![0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..ObjectMeta::default()
            },
            data: Some([(KEY_FIELD.to_owned(), ByteString(bytes))].into()),
            ..Secret::default()
        };
        match api.create(&PostParams::default(), &secret).await {
            Ok(created) => Ok(key_of(&created).unwrap_or_else(|| Self(Vec::new()))),
            Err(kube::Error::Api(status)) if status.is_conflict() || status.code == 409 => {
                let existing = api.get(name).await?;
                Ok(key_of(&existing).unwrap_or_else(|| Self(Vec::new())))
            }
            Err(error) => Err(error.into()),
        }
    }

    /// The token of the job `namespace/name` with UID `uid`, as lowercase hex.
    pub fn token(&self, namespace: &str, name: &str, uid: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(format!("{namespace}\n{name}\n{uid}").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Whether `token` is the token of that job (compared in constant time).
    pub fn verify(&self, namespace: &str, name: &str, uid: &str, token: &str) -> bool {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(format!("{namespace}\n{name}\n{uid}").as_bytes());
        hex::decode(token).is_ok_and(|bytes| mac.verify_slice(&bytes).is_ok())
    }
}

fn key_of(secret: &Secret) -> Option<TokenKey> {
    let bytes = secret.data.as_ref()?.get(KEY_FIELD)?.0.clone();
    (!bytes.is_empty()).then_some(TokenKey(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_good_for_its_own_job_only() {
        let key = TokenKey::new(b"k".to_vec());
        let token = key.token("team-a", "news", "uid-1");
        assert_eq!(token.len(), 64);
        assert!(key.verify("team-a", "news", "uid-1", &token));
        assert!(!key.verify("team-a", "other", "uid-1", &token));
        assert!(!key.verify("team-b", "news", "uid-1", &token));
        assert!(
            !key.verify("team-a", "news", "uid-2", &token),
            "a recreated job"
        );
        assert!(!key.verify("team-a", "news", "uid-1", "not hex"));
        let other_key = TokenKey::new(b"other".to_vec());
        assert!(!other_key.verify("team-a", "news", "uid-1", &token));
    }
}

//! `spec.model`: which base model to fine-tune.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::SecretReference;
use crate::rules;

/// The base model: a HuggingFace Hub repository at one revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelSpec {
    /// Repository of the base model, as `hf://org/name` (e.g.
    /// `hf://sentence-transformers/all-MiniLM-L6-v2`) or `hf://name` for legacy ids such as
    /// `hf://bert-base-uncased`. BERT, DistilBERT, RoBERTa and XLM-RoBERTa encoders are supported.
    #[schemars(extend("x-kubernetes-validations" = [{"rule": rules::HF_SOURCE, "message": rules::HF_SOURCE_MESSAGE}]))]
    #[schemars(length(min = 6, max = 256))]
    pub source: String,
    /// Branch, tag or commit of the repository. The operator resolves it to a commit once and
    /// records that commit in the job's provenance.
    #[serde(default = "default_revision")]
    #[schemars(length(min = 1, max = 256), regex(pattern = r"^[A-Za-z0-9._/-]+$"))]
    pub revision: String,
    /// Secret in this namespace whose key `HF_TOKEN` holds a Hub token, for gated or private
    /// models. A model fetched with a credential is cached for this tenant only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretReference>,
}

fn default_revision() -> String {
    "main".to_owned()
}

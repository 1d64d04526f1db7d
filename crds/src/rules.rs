//! CEL expressions shared by several fields.
//!
//! The API server evaluates these at `kubectl apply` time; keeping each expression in one
//! place means a fix to (say) the path check reaches every path field at once.

/// A path inside a volume or bucket: relative, and never climbing out with `..`.
pub const RELATIVE_PATH: &str = "!self.startsWith('/') && self != '..' && !self.startsWith('../') \
     && !self.endsWith('/..') && !self.contains('/../')";

/// Message for [`RELATIVE_PATH`].
pub const RELATIVE_PATH_MESSAGE: &str =
    "must be a relative path inside the volume: remove the leading '/' and any '..' segment";

/// A bare object name (RFC 1123 subdomain), which keeps a reference inside the object's own
/// namespace: `other-namespace/secret` or `secret.other` style cross-namespace tricks fail here.
pub const BARE_NAME: &str =
    "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')";

/// Message for [`BARE_NAME`].
pub const BARE_NAME_MESSAGE: &str = "must be the bare name of an object in this namespace \
     (lowercase letters, digits, '-' and '.'; no 'namespace/' prefix)";

/// A HuggingFace Hub repository id behind the `hf://` scheme: `hf://org/name` or `hf://name`.
pub const HF_SOURCE: &str = "self.matches('^hf://([A-Za-z0-9][A-Za-z0-9._-]*/)?[A-Za-z0-9][A-Za-z0-9._-]*$') \
     && !self.contains('..') && !self.contains('--')";

/// Message for [`HF_SOURCE`].
pub const HF_SOURCE_MESSAGE: &str = "must be a HuggingFace repository as 'hf://org/name' or \
     'hf://name', e.g. 'hf://sentence-transformers/all-MiniLM-L6-v2' (no '..' or '--')";

/// An object-store URI with a scheme that `object_store` understands.
pub const OBJECT_STORE_URI: &str =
    "self.matches('^(s3|gs|az|abfs|https?)://[^/]+(/.*)?$') && !self.contains('/../')";

/// Message for [`OBJECT_STORE_URI`].
pub const OBJECT_STORE_URI_MESSAGE: &str = "must be an object-store URI such as \
     's3://bucket/prefix', 'gs://bucket/prefix', 'az://container/prefix' or 'https://host/path', \
     without '..' segments";

/// A rule that holds when exactly one of the optional `fields` of an object is set: the way a
/// one-of ("pick one source") is spelled in a structural schema.
#[must_use]
pub fn exactly_one_of(fields: &[&str]) -> String {
    let terms: Vec<String> = fields
        .iter()
        .map(|f| format!("(has(self.{f}) ? 1 : 0)"))
        .collect();
    format!("{} == 1", terms.join(" + "))
}

/// Message for [`exactly_one_of`], naming the choices.
#[must_use]
pub fn exactly_one_of_message(fields: &[&str]) -> String {
    format!("set exactly one of: {}", fields.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_of_counts_every_field() {
        assert_eq!(
            exactly_one_of(&["a", "b"]),
            "(has(self.a) ? 1 : 0) + (has(self.b) ? 1 : 0) == 1"
        );
        assert_eq!(
            exactly_one_of_message(&["a", "b"]),
            "set exactly one of: a, b"
        );
    }
}

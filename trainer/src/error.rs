//! One error type for the library; `main.rs` maps each kind to a documented exit code.

use std::path::PathBuf;

/// Everything the trainer library can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Tensor maths failed (shape mismatch, unsupported op, device error).
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// Reading or writing a file failed; the path says which.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The job configuration is invalid (bad value, missing field, conflicting options).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The dataset cannot be used: a bad row (file, line, reason), empty, single class, unknown label.
    #[error("invalid data: {0}")]
    Data(String),
    /// The model folder or checkpoint is missing or unusable.
    #[error("model: {0}")]
    Model(String),
    /// The model is not in the cache (offline) or could not be fetched.
    #[error("hub: {0}")]
    Hub(String),
    /// The tokenizer failed to load or to encode.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Training diverged: the loss or the gradients stopped being finite.
    #[error("training diverged: {0}")]
    Diverged(String),
    /// JSON (de)serialisation failed.
    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// Result alias for the trainer library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an IO error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// Reads a whole file, naming the path in the error.
pub fn read_file(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// Reads and parses a JSON file, naming the path in the error.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Result<T> {
    let bytes = read_file(path)?;
    serde_json::from_slice(&bytes).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })
}

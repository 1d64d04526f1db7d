//! Model source: the HuggingFace cache layout (`models--org--name/snapshots/<commit>/…`).
//!
//! `train` and `predict` only *read* the cache (the training pod mounts it read-only) and never
//! touch the network; `fetch` (run once per model by the operator) downloads through `hf-hub`
//! under a file lock, then verifies every blob against its content hash and reports every file's
//! sha256 and size.

pub mod cache;
pub mod fetch;

pub use cache::{ResolvedModel, cache_dir, resolve};
pub use fetch::{FetchOptions, Fetched, fetch};

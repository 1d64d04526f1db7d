//! Model source: the HuggingFace cache layout (`models--org--name/snapshots/<commit>/…`).
//!
//! `train` and `predict` only *read* the cache (the training pod mounts it read-only) and never
//! touch the network; `fetch` (run once per model by the operator) downloads through `hf-hub`
//! under a file lock, then verifies every blob against its content hash and reports every file's
//! sha256 and size; `evict` (run by the operator's garbage collector) removes a revision no job
//! has used for long.

pub mod cache;
pub mod evict;
pub mod fetch;
pub mod lock;

pub use cache::{ResolvedModel, cache_dir, resolve};
pub use evict::{EvictOptions, Evicted, evict};
pub use fetch::{FetchOptions, Fetched, fetch};

//! The Attune trainer: fine-tunes BERT-family encoders (BERT, MiniLM, DistilBERT, RoBERTa,
//! XLM-RoBERTa) for text classification on candle, with checkpoints that resume bit for bit,
//! HuggingFace-compatible exports and a read-only view of the shared HF cache.
//!
//! Module map: `model` (differentiable encoders + heads under HF weight names), `data` (rows,
//! labels, tokenization, batching), `train` (AdamW, schedule, loop, progress), `checkpoint`,
//! `export`, `predict`, `hub` (cache + fetch), `config` (the job file), `termination` (the final
//! message Kubernetes shows in the pod status).

pub mod alloc;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod device;
pub mod digest;
pub mod error;
pub mod export;
pub mod hub;
pub mod model;
pub mod predict;
pub mod rng;
pub mod termination;
pub mod threads;
pub mod train;

pub use error::{Error, Result};

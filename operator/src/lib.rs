//! The Attune operator: reconciles FineTuneJobs into a cached base model, trainer Jobs, a
//! truthful status and a published TrainedModel. ARCHITECTURE.md has the map; `main.rs` wires
//! these modules into the process.

pub mod cache;
pub mod conditions;
pub mod config;
pub mod context;
pub mod error;
pub mod finetunejob;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod names;
pub mod pod;
pub mod progress;
pub mod slim;
pub mod telemetry;
pub mod tenancy;
pub mod token;
pub mod watches;

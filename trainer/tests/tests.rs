//! All integration tests of attune-trainer, in one binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

mod cli;
mod data;
mod export;
mod hub;
mod model;
mod progress;
mod real;
mod termination;
mod training;

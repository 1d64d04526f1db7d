//! Tests of the generated API: the committed CRD YAML is current, documented, and accepts and
//! rejects the manifests a user would write, as the API server will.
//!
//! The schema checks here run client-side (OpenAPI structure plus the CEL rules); the same
//! manifests go through a real API server in the end-to-end tests.

mod descriptions;
mod examples;
mod invalid;
mod printer_columns;
mod support;
mod sync;
mod transitions;

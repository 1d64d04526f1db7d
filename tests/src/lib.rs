//! End-to-end tests of Attune; the cluster tests arrive with the harness.

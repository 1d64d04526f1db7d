//! Writes the CRD YAML files of the `attune.dev` API into `crds/` and the Helm chart's
//! `charts/attune/crds/` (the same files in both), and removes any other `.yaml` file there.
//!
//! `crdgen --check` compares instead of writing and fails when a folder is stale.

use std::path::Path;
use std::process::ExitCode;

const USAGE: &str = "usage: crdgen [--check]  (writes crds/*.yaml and charts/attune/crds/*.yaml)";

fn main() -> ExitCode {
    let mut check = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--check" => check = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("crdgen: unknown argument {other:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    // The crate sits one folder below the repository root.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new(".."));
    if check {
        match attune_crds::stale_crd_files(root) {
            Ok(stale) if stale.is_empty() => ExitCode::SUCCESS,
            Ok(stale) => {
                eprintln!("crdgen: stale CRD files, run `cargo run -p attune-crds --bin crdgen`:");
                for file in stale {
                    eprintln!("  {file}");
                }
                ExitCode::FAILURE
            }
            Err(err) => {
                eprintln!("crdgen: {err}");
                ExitCode::FAILURE
            }
        }
    } else {
        match attune_crds::write_crd_folders(root) {
            Ok(done) => {
                for line in done {
                    println!("{line}");
                }
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("crdgen: {err}");
                ExitCode::FAILURE
            }
        }
    }
}

//! The workspace's own binaries (`attune-operator`, `attune-trainer`), as built by the same
//! `cargo test --workspace` run that built this test binary.

use std::path::PathBuf;

/// The path of the workspace binary `name`: `ATTUNE_<NAME>_BIN` when set (e.g. a release
/// build), else the file of that name beside the test binary's `deps/` folder, where
/// `cargo test --workspace` puts every binary of the workspace.
pub fn workspace_binary(name: &str) -> PathBuf {
    let variable = format!("{}_BIN", name.to_uppercase().replace('-', "_"));
    if let Some(path) = std::env::var_os(&variable).filter(|v| !v.is_empty()) {
        return path.into();
    }
    let test_binary = std::env::current_exe().expect("the test binary's path");
    let path = test_binary
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile_dir| profile_dir.join(name))
        .unwrap_or_else(|| panic!("no profile folder above {}", test_binary.display()));
    assert!(
        path.is_file(),
        "{} is missing: build it (`cargo build -p {name}`, or `cargo test --workspace`) or set \
         {variable}",
        path.display()
    );
    path
}

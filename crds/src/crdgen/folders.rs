//! The generated files on disk: written into, and compared with, every one of [`CRD_FOLDERS`].

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use super::{CRD_FOLDERS, generated_crds};

/// Why the generated files could not be rendered, read or written.
#[derive(Debug, thiserror::Error)]
pub enum CrdFilesError {
    /// A definition did not serialize: a bug in the types.
    #[error("cannot render {file}: {source}")]
    Render {
        file: String,
        source: serde_norway::Error,
    },
    /// A folder or file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A file in one of the folders that is not what the generator writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StaleFile {
    /// The file exists with other content.
    Differs(PathBuf),
    /// A generated file is not there.
    Missing(PathBuf),
    /// A `.yaml` file the generator does not write (a chart installs every one as a CRD).
    NotGenerated(PathBuf),
}

impl fmt::Display for StaleFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Differs(path) => write!(f, "{} differs", path.display()),
            Self::Missing(path) => write!(f, "{} is missing", path.display()),
            Self::NotGenerated(path) => write!(f, "{} is not generated", path.display()),
        }
    }
}

/// Every generated file as (file name, YAML text).
fn rendered() -> Result<Vec<(String, String)>, CrdFilesError> {
    generated_crds()
        .into_iter()
        .map(|g| match g.to_yaml() {
            Ok(yaml) => Ok((g.file_name, yaml)),
            Err(source) => Err(CrdFilesError::Render {
                file: g.file_name,
                source,
            }),
        })
        .collect()
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> CrdFilesError + '_ {
    move |source| CrdFilesError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The names of the `.yaml` files directly inside `dir` (none when it does not exist).
fn yaml_files(dir: &Path) -> Result<BTreeSet<String>, CrdFilesError> {
    let entries = match std::fs::read_dir(dir) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        other => other.map_err(io_error(dir))?,
    };
    let mut names = BTreeSet::new();
    for entry in entries {
        let name = entry.map_err(io_error(dir))?.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".yaml") {
            names.insert(name.into_owned());
        }
    }
    Ok(names)
}

/// Writes the generated files into each of [`CRD_FOLDERS`] under the repository root `root`
/// (creating the folders) and removes every other `.yaml` file there. Returns the paths
/// written and removed, for the generator to print.
///
/// # Errors
/// A definition that does not render, or a folder or file that cannot be written.
pub fn write_crd_folders(root: &Path) -> Result<Vec<String>, CrdFilesError> {
    let files = rendered()?;
    let mut done = Vec::new();
    for folder in CRD_FOLDERS {
        let dir = root.join(folder);
        std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        let mut extra = yaml_files(&dir)?;
        for (name, yaml) in &files {
            extra.remove(name);
            let path = dir.join(name);
            std::fs::write(&path, yaml).map_err(io_error(&path))?;
            done.push(format!("wrote {}", path.display()));
        }
        for name in extra {
            let path = dir.join(name);
            std::fs::remove_file(&path).map_err(io_error(&path))?;
            done.push(format!("removed {}", path.display()));
        }
    }
    Ok(done)
}

/// What differs between the generated files and each of [`CRD_FOLDERS`] under the repository
/// root `root`; empty when every folder holds exactly the generated `.yaml` files.
///
/// # Errors
/// A definition that does not render, or a folder that cannot be listed.
pub fn stale_crd_files(root: &Path) -> Result<Vec<StaleFile>, CrdFilesError> {
    let files = rendered()?;
    let mut stale = Vec::new();
    for folder in CRD_FOLDERS {
        let dir = root.join(folder);
        let mut extra = yaml_files(&dir)?;
        for (name, yaml) in &files {
            extra.remove(name);
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(text) if text == *yaml => {}
                Ok(_) => stale.push(StaleFile::Differs(path)),
                Err(_) => stale.push(StaleFile::Missing(path)),
            }
        }
        stale.extend(
            extra
                .into_iter()
                .map(|name| StaleFile::NotGenerated(dir.join(name))),
        );
    }
    Ok(stale)
}

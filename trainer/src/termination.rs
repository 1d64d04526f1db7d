//! The termination message: how a subcommand ended, written to the file that
//! `ATTUNE_TERMINATION_LOG` names just before the process exits. The operator points it at the
//! container's `terminationMessagePath`, so Kubernetes copies it into the pod status
//! (`state.terminated.message`) and the operator learns the outcome, and the files it must
//! publish, without reading logs. Kubernetes keeps 4096 bytes of it: text is cut there on a
//! character boundary, and JSON messages first drop their long lists (saying which in `omitted`)
//! so that they stay parseable. The format is documented in trainer/README.md.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::hub::Fetched;
use crate::train::Event;

/// The variable naming the file.
pub const ENV: &str = "ATTUNE_TERMINATION_LOG";

/// What Kubernetes keeps of a termination message.
pub const MAX_BYTES: usize = 4096;

/// Dropped, in order, from the done event's copy while it is too long: the file list (also in
/// the progress URL's copy and in the export's manifest.json), then the labels (also in the
/// export's config.json).
const DONE_DROPPABLE: &[&str] = &["/model/files", "/model/labels"];

/// Dropped from the fetched message while it is too long (the snapshot is in the cache to list).
const FETCHED_DROPPABLE: &[&str] = &["/files"];

/// The file the final message goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminationLog {
    path: PathBuf,
}

impl TerminationLog {
    /// The file `ATTUNE_TERMINATION_LOG` names, if set and not empty.
    pub fn from_env() -> Option<Self> {
        std::env::var_os(ENV)
            .filter(|p| !p.is_empty())
            .map(Self::new)
    }

    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the file's content with `message`, cut to [`MAX_BYTES`].
    pub fn write(&self, message: &str) -> Result<()> {
        std::fs::write(&self.path, truncate(message, MAX_BYTES))
            .map_err(|e| Error::io(&self.path, e))
    }
}

/// The longest prefix of `s` of at most `max` bytes that is still valid UTF-8.
pub fn truncate(s: &str, max: usize) -> &str {
    // `str::floor_char_boundary` is newer than the workspace's MSRV.
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `train`'s message: the done event, as on stdout unless that is over [`MAX_BYTES`].
pub fn done_message(done: &Event) -> serde_json::Result<String> {
    fit_json(done, DONE_DROPPABLE)
}

/// `fetch`'s message: the fetched report, as on stdout unless that is over [`MAX_BYTES`].
pub fn fetched_message(fetched: &Fetched) -> serde_json::Result<String> {
    fit_json(fetched, FETCHED_DROPPABLE)
}

/// `value` as one line of JSON within [`MAX_BYTES`]: while it is longer, the fields at
/// `droppable` (JSON pointers) are removed in order and named, dotted, in a top-level `omitted`
/// array (the keys then come sorted). Still too long after all of them, it is returned whole
/// (and cut, no longer JSON, when written), with a warning.
fn fit_json(value: &impl Serialize, droppable: &[&str]) -> serde_json::Result<String> {
    // Serialised directly, a message that fits is byte for byte the stdout line (a `Value`
    // would sort the keys).
    let text = serde_json::to_string(value)?;
    if text.len() <= MAX_BYTES {
        return Ok(text);
    }
    let mut value = serde_json::to_value(value)?;
    let mut omitted = Vec::new();
    for pointer in droppable {
        if !remove(&mut value, pointer) {
            continue;
        }
        omitted.push(Value::from(
            pointer.trim_start_matches('/').replace('/', "."),
        ));
        if let Some(object) = value.as_object_mut() {
            object.insert("omitted".into(), Value::Array(omitted.clone()));
        }
        let text = value.to_string();
        if text.len() <= MAX_BYTES {
            return Ok(text);
        }
    }
    let text = value.to_string();
    tracing::warn!(
        bytes = text.len(),
        "the termination message is over {MAX_BYTES} bytes even without {droppable:?}: it will \
         be cut and no longer parse"
    );
    Ok(text)
}

/// Removes the field at `pointer` (`/a/b`); false when there is none.
fn remove(value: &mut Value, pointer: &str) -> bool {
    let Some((parent, key)) = pointer.rsplit_once('/') else {
        return false;
    };
    value
        .pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .and_then(|object| object.remove(key))
        .is_some()
}

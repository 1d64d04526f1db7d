//! The label vocabulary: class names ↔ ids, stable across runs.

use std::collections::{BTreeSet, HashMap};

use crate::error::{Error, Result};

/// Ordered class names; the index is the class id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSet {
    names: Vec<String>,
    ids: HashMap<String, u32>,
}

impl LabelSet {
    /// From a configured list (order kept); duplicates and fewer than two labels are errors.
    pub fn new(names: Vec<String>) -> Result<Self> {
        if names.len() < 2 {
            return Err(Error::Data(format!(
                "need at least two labels, got {names:?}"
            )));
        }
        let mut ids = HashMap::new();
        for (i, n) in names.iter().enumerate() {
            if ids.insert(n.clone(), i as u32).is_some() {
                return Err(Error::Config(format!("label `{n}` listed twice")));
            }
        }
        Ok(Self { names, ids })
    }

    /// Discovered from the data, sorted, so the same data always gives the same ids.
    pub fn discover<'a>(labels: impl Iterator<Item = &'a str>) -> Result<Self> {
        let set: BTreeSet<&str> = labels.collect();
        if set.len() < 2 {
            return Err(Error::Data(format!(
                "the data has {} distinct label(s) ({:?}); need at least two",
                set.len(),
                set
            )));
        }
        Self::new(set.into_iter().map(String::from).collect())
    }

    pub fn id(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

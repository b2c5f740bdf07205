//! The emulator's data (sessions, filters, rules, in creation order) and its optional persistence.
//!
//! Every mutation runs on a copy of the data; the copy is written to the state file (temporary
//! file + `rename`, so a crash leaves either the old or the new file) and only then replaces the
//! live data. A failed write therefore changes nothing, and a restart loses nothing that was
//! answered as a success.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use super::errors::ApiError;
use super::records::Data;

/// Why the state file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The state file exists but could not be read.
    #[error("reading state file {path}: {source}")]
    Read {
        /// The state file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The state file is not valid emulator state.
    #[error("parsing state file {path}: {source}")]
    Parse {
        /// The state file.
        path: PathBuf,
        /// The JSON error.
        source: serde_json::Error,
    },
}

/// Thread-safe data with optional write-through persistence.
#[derive(Debug)]
pub struct Store {
    data: Mutex<Data>,
    state_file: Option<PathBuf>,
}

impl Store {
    /// A store, loaded from `state_file` when that file exists (a missing file means empty data).
    pub fn open(state_file: Option<PathBuf>) -> Result<Self, StoreError> {
        let data = match &state_file {
            Some(path) if path.exists() => {
                let text = std::fs::read(path).map_err(|source| StoreError::Read {
                    path: path.clone(),
                    source,
                })?;
                serde_json::from_slice(&text).map_err(|source| StoreError::Parse {
                    path: path.clone(),
                    source,
                })?
            }
            _ => Data::default(),
        };
        Ok(Self {
            data: Mutex::new(data),
            state_file,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Data> {
        // A panic while holding the lock cannot leave half-applied data (mutations run on a copy).
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Run `f` on the current data.
    pub fn read<R>(&self, f: impl FnOnce(&Data) -> R) -> R {
        f(&self.lock())
    }

    /// Run `f` on a copy of the data; if it succeeds, persist the copy and make it current.
    pub fn mutate<R>(
        &self,
        f: impl FnOnce(&mut Data) -> Result<R, ApiError>,
    ) -> Result<R, ApiError> {
        let mut guard = self.lock();
        let mut next = guard.clone();
        let out = f(&mut next)?;
        self.persist(&next)?;
        *guard = next;
        Ok(out)
    }

    /// Replace all data (used by the admin reset).
    pub fn replace(&self, data: Data) -> Result<(), ApiError> {
        self.mutate(|d| {
            *d = data;
            Ok(())
        })
    }

    fn persist(&self, data: &Data) -> Result<(), ApiError> {
        let Some(path) = &self.state_file else {
            return Ok(());
        };
        let bytes = serde_json::to_vec_pretty(data)
            .map_err(|e| ApiError::internal(format!("serialising state: {e}")))?;
        write_atomically(path, &bytes).map_err(|e| {
            tracing::error!(path = %path.display(), error = %e, "writing state file failed");
            ApiError::internal(format!("writing state file {}: {e}", path.display()))
        })
    }
}

/// Write `bytes` to `path` via a temporary file in the same directory, fsync, then rename.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::records::{Filter, fixtures};

    fn filter(id: &str) -> Filter {
        fixtures::filter("p", id)
    }

    #[test]
    fn mutations_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let store = Store::open(Some(path.clone())).unwrap();
        store
            .mutate(|d| {
                d.filters.push(filter("f1"));
                Ok(())
            })
            .unwrap();
        let reopened = Store::open(Some(path.clone())).unwrap();
        assert_eq!(reopened.read(|d| d.filters.len()), 1);
        assert!(!dir.path().join("state.json.tmp").exists());
    }

    #[test]
    fn failed_mutation_changes_nothing() {
        let store = Store::open(None).unwrap();
        let r: Result<(), _> = store.mutate(|d| {
            d.filters.push(filter("f1"));
            Err(ApiError::invalid("no"))
        });
        assert!(r.is_err());
        assert_eq!(store.read(|d| d.filters.len()), 0);
    }

    #[test]
    fn failed_write_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: the rename fails.
        let path = dir.path().join("state.json");
        std::fs::create_dir(&path).unwrap();
        let store = Store {
            data: Mutex::new(Data::default()),
            state_file: Some(path),
        };
        let e = store
            .mutate(|d| {
                d.filters.push(filter("f1"));
                Ok(())
            })
            .unwrap_err();
        assert_eq!(e.code, "VPC.0500");
        assert_eq!(store.read(|d| d.filters.len()), 0);
    }

    #[test]
    fn corrupt_state_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, b"{nope").unwrap();
        assert!(matches!(
            Store::open(Some(path)),
            Err(StoreError::Parse { .. })
        ));
    }
}

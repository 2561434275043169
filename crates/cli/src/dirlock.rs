//! One process at a time owns a data directory: `pchat serve`, and the
//! commands that replace its databases (`db restore`, `admin import-data`).
//! Other commands share it safely through SQLite and take no lock.

use anyhow::{bail, Context};
use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

/// Held while the directory is owned; released when dropped (or when the
/// process dies, however it dies).
pub struct DirLock {
    _file: File,
}

pub fn lock(dir: &Path, what: &str) -> anyhow::Result<DirLock> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(".pchat.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(DirLock { _file: file }),
        Err(TryLockError::WouldBlock) => bail!(
            "{} is in use by another pchat process (a running server?); {what} needs it to itself",
            dir.display()
        ),
        Err(TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

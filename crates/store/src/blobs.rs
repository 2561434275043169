//! Uploaded files' content, content-addressed: [`Blobs`] is where a chat
//! server keeps it, [`LocalBlobs`] a folder of the chat server's own (the
//! embedded engine's data directory) or of the database server, and the
//! network client of `pchat-wire` the database server's.
//!
//! On disk: `DIR/sha256/ab/cdef...` (see [`crate::blob_path`]). A file is
//! written under a temporary name, fsynced, renamed into place and its
//! directory fsynced, so a crash never leaves a partial file under a real
//! name; the same content stored twice is stored once.

use crate::{BoxFuture, StoreError};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

pub trait Blobs: Send + Sync {
    /// Stores `bytes` durably; answers their SHA-256 (lowercase hex).
    fn put(&self, bytes: Vec<u8>) -> BoxFuture<'static, Result<String, StoreError>>;
    /// The content stored under `sha256`, if any.
    fn get(&self, sha256: String) -> BoxFuture<'static, Result<Option<Vec<u8>>, StoreError>>;
}

impl std::fmt::Debug for dyn Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Blobs")
    }
}

/// The lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn io(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("file store: {e}"))
}

/// Blobs in a folder.
#[derive(Debug, Clone)]
pub struct LocalBlobs {
    dir: PathBuf,
}

impl LocalBlobs {
    pub fn new(dir: PathBuf) -> LocalBlobs {
        LocalBlobs { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stores `bytes` (blocking).
    pub fn put_now(&self, bytes: &[u8]) -> Result<String, StoreError> {
        use std::io::Write;
        let sha = sha256_hex(bytes);
        let target = crate::blob_path(&self.dir, &sha).ok_or_else(|| io("bad digest"))?;
        if target.exists() {
            return Ok(sha);
        }
        let tmp_dir = self.dir.join("tmp");
        std::fs::create_dir_all(&tmp_dir).map_err(io)?;
        let mut nonce = [0u8; 8];
        let _ = getrandom::fill(&mut nonce);
        let tmp = tmp_dir.join(format!(
            "{sha}-{}-{}",
            std::process::id(),
            u64::from_le_bytes(nonce)
        ));
        let written = (|| -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            let parent = target.parent().unwrap_or(&self.dir);
            std::fs::create_dir_all(parent)?;
            std::fs::rename(&tmp, &target)?;
            std::fs::File::open(parent)?.sync_all()
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.map_err(io)?;
        Ok(sha)
    }

    /// Up to `len` bytes of a blob from `offset`, and its size (blocking).
    pub fn read_range(
        &self,
        sha256: &str,
        offset: u64,
        len: u64,
    ) -> Result<Option<(Vec<u8>, u64)>, StoreError> {
        use std::io::{Read, Seek, SeekFrom};
        let Some(path) = crate::blob_path(&self.dir, sha256) else {
            return Ok(None);
        };
        let mut f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        let size = f.metadata().map_err(io)?.len();
        f.seek(SeekFrom::Start(offset)).map_err(io)?;
        let mut out = Vec::new();
        f.take(len).read_to_end(&mut out).map_err(io)?;
        Ok(Some((out, size)))
    }
}

impl Blobs for LocalBlobs {
    fn put(&self, bytes: Vec<u8>) -> BoxFuture<'static, Result<String, StoreError>> {
        let this = self.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || this.put_now(&bytes))
                .await
                .map_err(io)?
        })
    }

    fn get(&self, sha256: String) -> BoxFuture<'static, Result<Option<Vec<u8>>, StoreError>> {
        let this = self.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                Ok(this.read_range(&sha256, 0, u64::MAX)?.map(|(b, _)| b))
            })
            .await
            .map_err(io)?
        })
    }
}

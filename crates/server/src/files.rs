//! Uploaded files, content-addressed on disk: `DIR/sha256/ab/cdef...` (the
//! SHA-256 of the content, split after two characters). A file is written
//! under a temporary name, fsynced, renamed into place and its directory
//! fsynced, so a crash never leaves a partial file under a real name; the
//! same content uploaded twice is stored once. `mgc` is the manifest: each
//! message that posts a file names its SHA-256, size, name and type.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Why a file could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    #[error("the file is larger than {0} bytes")]
    TooLarge(u64),
    #[error("storing the file failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the upload was interrupted: {0}")]
    Body(String),
}

pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    pub fn new(dir: PathBuf) -> FileStore {
        FileStore { dir }
    }

    /// Where a file's content lives.
    pub fn path(&self, sha256: &str) -> Option<PathBuf> {
        pchat_store::blob_path(&self.dir, sha256)
    }

    /// Streams `body` to disk, at most `max` bytes; answers (sha256, size).
    pub async fn put(&self, body: axum::body::Body, max: u64) -> Result<(String, u64), PutError> {
        use futures_util::StreamExt;
        let tmp_dir = self.dir.join("tmp");
        tokio::fs::create_dir_all(&tmp_dir).await?;
        let tmp = tmp_dir.join(format!(
            "upload-{}-{}",
            std::process::id(),
            crate::auth::new_token()
                .map(|(t, _)| t)
                .unwrap_or_else(|_| "x".into())
        ));
        let result = async {
            use tokio::io::AsyncWriteExt;
            let mut file = tokio::fs::File::create(&tmp).await?;
            let mut hasher = Sha256::new();
            let mut size: u64 = 0;
            let mut stream = body.into_data_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| PutError::Body(e.to_string()))?;
                size += chunk.len() as u64;
                if size > max {
                    return Err(PutError::TooLarge(max));
                }
                hasher.update(&chunk);
                file.write_all(&chunk).await?;
            }
            file.sync_all().await?;
            drop(file);
            let sha = hex(&hasher.finalize());
            let target = self
                .path(&sha)
                .ok_or_else(|| PutError::Body("bad digest".into()))?;
            let parent = target.parent().unwrap_or(&self.dir).to_path_buf();
            tokio::fs::create_dir_all(&parent).await?;
            tokio::fs::rename(&tmp, &target).await?;
            tokio::task::spawn_blocking(move || sync_dir(&parent))
                .await
                .map_err(|e| PutError::Body(e.to_string()))??;
            Ok((sha, size))
        }
        .await;
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

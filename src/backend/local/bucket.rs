//! A bucket that is a directory.
//!
//! Keys map to relative paths. `put` writes a temporary file beside the
//! target and renames it into place, so a reader never sees half an object.
//! It does not fsync: like the local PostgreSQL server (`synchronous_commit
//! = off`), these directories favour speed over surviving a power cut,
//! since everything in them can be made again (see `put`).

use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::backend::{Body, Bucket, ObjectMeta, Source};

pub struct LocalBucket {
    role: String,
    root: PathBuf,
}

impl LocalBucket {
    pub fn new(role: &str, root: PathBuf) -> LocalBucket {
        LocalBucket {
            role: role.to_owned(),
            root,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of `key`, refusing keys that would leave the bucket.
    pub fn path(&self, key: &str) -> Result<PathBuf> {
        let relative = Path::new(key);
        if key.is_empty()
            || !relative
                .components()
                .all(|c| matches!(c, Component::Normal(_)))
        {
            bail!("invalid object key `{key}` in bucket {}", self.role);
        }
        Ok(self.root.join(relative))
    }
}

#[async_trait]
impl Bucket for LocalBucket {
    fn role(&self) -> &str {
        &self.role
    }

    fn uri(&self, key: &str) -> String {
        format!("file://{}", self.root.join(key).display())
    }

    async fn get(&self, key: &str) -> Result<Body> {
        let path = self.path(key)?;
        let file = tokio::fs::File::open(&path).await.with_context(|| {
            format!(
                "cannot read {key} from the {} bucket ({})",
                self.role,
                path.display()
            )
        })?;
        Ok(Box::new(file))
    }

    async fn put(&self, key: &str, body: Source<'_>) -> Result<u64> {
        let path = self.path(key)?;
        let dir = path.parent().expect("a key has a parent: the bucket root");
        tokio::fs::create_dir_all(dir)
            .await
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let tmp = dir.join(format!(
            ".{}.partial-{}",
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("object"),
            std::process::id()
        ));
        let write = async {
            let mut file = tokio::fs::File::create(&tmp).await?;
            let size = copy_in_chunks(body, &mut file).await?;
            file.flush().await?;
            // No fsync: the rename alone keeps readers from ever seeing
            // half an object, which is the promise. Everything in these
            // buckets can be made again (inputs from --data, staging by
            // the steps, code by `up`), every reader checks its row counts
            // against the step that wrote the object, and waiting for the
            // disk cost step 1 15-60 ms of its ~350 (as much as psql's
            // whole margin), more on a disk busy with other writes.
            tokio::fs::rename(&tmp, &path).await?;
            Ok::<_, std::io::Error>(size)
        };
        match write.await {
            Ok(size) => Ok(size),
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                Err(e).with_context(|| {
                    format!(
                        "cannot write {key} to the {} bucket ({})",
                        self.role,
                        path.display()
                    )
                })
            }
        }
    }

    /// A rename, atomic as `put` is, when `path` is on the bucket's
    /// filesystem; a copy through `put` when it is not.
    async fn move_file(&self, key: &str, path: &Path) -> Result<u64> {
        let target = self.path(key)?;
        let moved = async {
            let size = tokio::fs::metadata(path)
                .await
                .with_context(|| format!("cannot read {}", path.display()))?
                .len();
            let dir = target
                .parent()
                .expect("a key has a parent: the bucket root");
            tokio::fs::create_dir_all(dir)
                .await
                .with_context(|| format!("cannot create {}", dir.display()))?;
            match tokio::fs::rename(path, &target).await {
                Ok(()) => Ok(size),
                Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => {
                    self.put_file(key, path).await
                }
                Err(e) => Err(e).with_context(|| {
                    format!(
                        "cannot move {} to {key} in the {} bucket",
                        path.display(),
                        self.role
                    )
                }),
            }
        };
        let moved = moved.await;
        let _ = tokio::fs::remove_file(path).await;
        moved
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let root = self.root.clone();
        let prefix = prefix.to_owned();
        tokio::task::spawn_blocking(move || list_blocking(&root, &prefix)).await?
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match tokio::fs::remove_file(&path).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("cannot delete {key} from the {} bucket", self.role))
            }
            _ => Ok(()),
        }
    }
}

/// How much `put` gathers before each write.
const CHUNK_BYTES: usize = 1 << 20;

/// Copies `body` to `file` in writes of [`CHUNK_BYTES`] (the last one
/// shorter). Streams such as COPY TO STDOUT arrive a row at a time, and
/// `tokio::io::copy` flushes its writer whenever the reader has nothing
/// ready: the dump then went to the blocking pool in some 2,000 small
/// writes, and the thread hand-offs cost more CPU than the writes.
async fn copy_in_chunks(body: Source<'_>, file: &mut tokio::fs::File) -> std::io::Result<u64> {
    let mut chunk = vec![0u8; CHUNK_BYTES];
    let mut size = 0u64;
    loop {
        let mut filled = 0;
        while filled < chunk.len() {
            match body.read(&mut chunk[filled..]).await? {
                0 => break,
                n => filled += n,
            }
        }
        file.write_all(&chunk[..filled]).await?;
        size += filled as u64;
        if filled < chunk.len() {
            return Ok(size);
        }
    }
}

fn list_blocking(root: &Path, prefix: &str) -> Result<Vec<ObjectMeta>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
        };
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push(path);
                continue;
            }
            let key = path
                .strip_prefix(root)
                .expect("listed under root")
                .to_string_lossy()
                .into_owned();
            let hidden = key.split('/').any(|part| part.starts_with("."));
            if key.starts_with(prefix) && !hidden {
                out.push(ObjectMeta {
                    key,
                    size: meta.len(),
                });
            }
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body that arrives in rows of 1,000 bytes, as a COPY does, in
    /// sizes just under, at and over a multiple of the write chunk.
    #[tokio::test]
    async fn put_keeps_every_byte_of_a_body_that_arrives_a_row_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let bucket = LocalBucket::new("staging", dir.path().to_path_buf());
        for len in [0, 999, 2 * CHUNK_BYTES, 2 * CHUNK_BYTES + 12_345] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let rows = data
                .chunks(1000)
                .map(|row| Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(row)))
                .collect::<Vec<_>>();
            let mut body = tokio_util::io::StreamReader::new(futures_util::stream::iter(rows));
            let size = bucket.put("dump.csv", &mut body).await.unwrap();
            assert_eq!(size, len as u64);
            assert!(
                std::fs::read(dir.path().join("dump.csv")).unwrap() == data,
                "{len} bytes came back different"
            );
        }
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "a temporary file was left behind");
    }
}

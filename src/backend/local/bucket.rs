//! A bucket that is a directory.
//!
//! Keys map to relative paths. `put` writes a temporary file beside the
//! target and renames it into place, so a reader never sees half an object.

use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use tokio::io::AsyncWriteExt;

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
            // Streams such as COPY TO STDOUT arrive a row at a time: buffer
            // them, or every row costs a trip to the blocking pool.
            let mut file =
                tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::create(&tmp).await?);
            let size = tokio::io::copy(body, &mut file).await?;
            file.flush().await?;
            file.get_ref().sync_all().await?;
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

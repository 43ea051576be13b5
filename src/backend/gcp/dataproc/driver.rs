//! Follows a job's driver output files (`driveroutput.000000000`, …) in
//! Cloud Storage, handing each complete line to a sink as it appears and
//! keeping the last lines for the error message of a failed job.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use tokio::io::AsyncReadExt as _;

use crate::backend::gcp::storage::GcsClient;
use crate::process::Tail;

pub(super) struct DriverOutput {
    storage: GcsClient,
    bucket: String,
    prefix: String,
    read: BTreeMap<String, u64>,
    partial: Vec<u8>,
    tail: Tail,
}

impl DriverOutput {
    pub(super) fn new(storage: GcsClient, uri: &str) -> Result<DriverOutput> {
        let rest = uri
            .strip_prefix("gs://")
            .with_context(|| format!("driver output at {uri} is not in Cloud Storage"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        Ok(DriverOutput {
            storage,
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            read: BTreeMap::new(),
            partial: Vec::new(),
            tail: Tail::default(),
        })
    }

    /// Reads what was appended since the last poll.
    pub(super) async fn poll(&mut self, sink: &(dyn Fn(&str) + Send + Sync)) -> Result<()> {
        for object in self.storage.list(&self.bucket, &self.prefix).await? {
            let done = self.read.get(&object.key).copied().unwrap_or(0);
            if object.size <= done {
                continue;
            }
            let mut body = self
                .storage
                .get(&self.bucket, &object.key, Some(done..object.size))
                .await?;
            let mut bytes = Vec::new();
            body.read_to_end(&mut bytes).await?;
            self.read.insert(object.key, done + bytes.len() as u64);
            self.partial.extend_from_slice(&bytes);
            while let Some(end) = self.partial.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.partial.drain(..=end).collect();
                self.line(
                    String::from_utf8_lossy(&line[..end]).trim_end_matches('\r'),
                    sink,
                );
            }
        }
        Ok(())
    }

    fn line(&mut self, line: &str, sink: &(dyn Fn(&str) + Send + Sync)) {
        sink(line);
        self.tail.push(line);
    }

    /// Hands over a last line that had no newline.
    pub(super) fn finish(&mut self, sink: &(dyn Fn(&str) + Send + Sync)) {
        if !self.partial.is_empty() {
            let line = String::from_utf8_lossy(&std::mem::take(&mut self.partial)).into_owned();
            self.line(&line, sink);
        }
    }

    pub(super) fn tail(&self) -> String {
        self.tail.quote("the driver")
    }
}

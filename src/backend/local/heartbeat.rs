//! Whether the local Spark Connect server is alive and answering, watched
//! while a step waits on it.
//!
//! A job is a pyspark client of the server. When the server dies, the
//! client retries for about ten minutes (pyspark's default retry policy)
//! before it gives up, and a server that is alive but stuck (stopped with
//! SIGSTOP, a JVM that no longer schedules its threads) is waited on
//! forever. So while a job runs, `run` watches the server itself:
//!
//! - its process, every [`PROCESS_EVERY`]: gone means died;
//! - a heartbeat: an HTTP/2 PING on a fresh connection to its gRPC port.
//!   The server's transport (Netty) answers it without authentication and
//!   without touching Spark, so a busy server answers at once and only a
//!   stuck one stays silent. One ping per connection stays clear of gRPC's
//!   keepalive enforcement, which answers repeated pings on one connection
//!   with GOAWAY (`ENHANCE_YOUR_CALM`). Silence for the whole limit
//!   (`spark.heartbeat_timeout_secs`) means stuck.
//!
//! The kernel completes TCP handshakes for a stopped process, so a TCP
//! connect alone says nothing about a stuck server: the ping needs an
//! answer from the server's own code.

use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::TcpStream;

/// How often the server's process is looked at while a job runs.
pub const PROCESS_EVERY: Duration = Duration::from_millis(250);

/// How a watched server was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lost {
    /// Its process is gone.
    Died,
    /// It answered no heartbeat for the whole limit.
    Silent(Duration),
}

/// Sends one HTTP/2 PING to the server on `port` and waits for its answer.
/// Unbounded by itself: callers put a limit on it.
pub async fn ping(port: u16) -> Result<()> {
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .with_context(|| format!("cannot connect to 127.0.0.1:{port}"))?;
    let (_requests, mut connection) = h2::client::handshake(tcp)
        .await
        .context("the HTTP/2 handshake failed")?;
    let mut pings = connection
        .ping_pong()
        .context("the HTTP/2 connection gave no ping handle")?;
    // The connection does the I/O, so it is driven while the ping waits.
    tokio::select! {
        pong = pings.ping(h2::Ping::opaque()) => {
            pong.context("the server did not answer the HTTP/2 PING")?;
            Ok(())
        }
        closed = &mut connection => {
            closed.context("the server closed the connection")?;
            anyhow::bail!("the server closed the connection before answering the PING")
        }
    }
}

/// Whether the server on `port` answers a ping within `limit`, trying again
/// while it refuses (it may be starting).
pub async fn answers(port: u16, limit: Duration) -> bool {
    tokio::time::timeout(limit, async {
        loop {
            match ping(port).await {
                Ok(()) => return,
                Err(e) => tracing::debug!("Spark Connect heartbeat on port {port}: {e:#}"),
            }
            tokio::time::sleep(retry_every(limit)).await;
        }
    })
    .await
    .is_ok()
}

/// Returns when the server with `pid` on `port` is lost: its process gone,
/// or no heartbeat answered for `limit`. Never returns while it is well,
/// so callers race it against the work that needs the server.
pub async fn watch(pid: i32, port: u16, limit: Duration, alive: impl Fn(i32) -> bool) -> Lost {
    let process = async {
        while alive(pid) {
            tokio::time::sleep(PROCESS_EVERY).await;
        }
        Lost::Died
    };
    let heartbeat = async {
        loop {
            if !answers(port, limit).await {
                return Lost::Silent(limit);
            }
            tokio::time::sleep(ping_every(limit)).await;
        }
    };
    tokio::select! {
        lost = process => lost,
        lost = heartbeat => lost,
    }
}

/// The pause between two answered heartbeats: a few per limit, at most 5 s.
fn ping_every(limit: Duration) -> Duration {
    (limit / 4).clamp(Duration::from_millis(250), Duration::from_secs(5))
}

/// The pause before pinging again a server that did not answer.
fn retry_every(limit: Duration) -> Duration {
    (limit / 10).clamp(Duration::from_millis(100), Duration::from_secs(1))
}

/// The state letter of `pid` in `/proc/<pid>/stat` (`R`, `S`, `T` for
/// stopped, …), if it exists.
pub fn process_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_come_a_few_times_per_limit() {
        assert_eq!(ping_every(Duration::from_secs(60)), Duration::from_secs(5));
        assert_eq!(
            ping_every(Duration::from_secs(2)),
            Duration::from_millis(500)
        );
        assert_eq!(retry_every(Duration::from_secs(60)), Duration::from_secs(1));
    }

    #[test]
    fn this_process_is_running() {
        let state = process_state(std::process::id() as i32).unwrap();
        assert!("RS".contains(state), "{state}");
        assert_eq!(process_state(-1), None);
    }

    /// A server that accepts connections and never answers (what a stopped
    /// process looks like from outside) is silent, and a gone one is dead.
    #[tokio::test]
    async fn a_listener_that_never_answers_is_silent() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let limit = Duration::from_millis(300);
        assert!(!answers(port, limit).await);
        let lost = watch(1, port, limit, |_| true).await;
        assert_eq!(lost, Lost::Silent(limit));
        let lost = watch(1, port, Duration::from_secs(600), |_| false).await;
        assert_eq!(lost, Lost::Died);
        drop(listener);
    }

    /// A real HTTP/2 server answers the ping.
    #[tokio::test]
    async fn an_http2_server_answers() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let mut connection = h2::server::handshake(socket).await.unwrap();
            while connection.accept().await.is_some() {}
        });
        assert!(answers(port, Duration::from_secs(10)).await);
    }
}

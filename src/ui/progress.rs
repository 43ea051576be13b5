//! Live progress on stderr, through `indicatif`.
//!
//! Long work shows that it is alive: transfers and the load as bytes with
//! throughput and ETA (and rows), Spark steps, clusters and database
//! operations as a spinner with their state and elapsed time, `terraform
//! apply` as a resource count. On a terminal these are redrawn in place and
//! cleared when done; when stderr is not a terminal, under `--quiet` or with
//! `-v` (whose child output would tear a bar) they become plain log lines,
//! written when something changes and at most every few seconds otherwise.
//! A transfer writes no line as it starts (it would say "0 B of …"): its
//! caller writes one when it ends.
//!
//! Any layer may create a [`Progress`]: it writes only to stderr.

use std::fmt::Display;
use std::io::IsTerminal;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::io::{AsyncRead, ReadBuf};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Bars and spinners redrawn in place on a terminal.
    Live,
    /// Plain log lines.
    Plain,
}

static MODE: OnceLock<Mode> = OnceLock::new();

/// Every live bar is drawn through this, so log lines printed while bars
/// are up go above them instead of tearing them.
static BARS: LazyLock<MultiProgress> =
    LazyLock::new(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));

/// Plain lines about one task are at most this often, unless its state changes.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// Chooses live bars or plain lines, once, from the terminal and the flags.
pub fn init(verbose: u8, quiet: bool) {
    let live = !quiet
        && verbose == 0
        && std::io::stderr().is_terminal()
        && std::env::var("TERM").map_or(true, |t| t != "dumb");
    let _ = MODE.set(if live { Mode::Live } else { Mode::Plain });
}

/// The mode [`init`] chose; plain lines if it was never called (tests).
pub fn mode() -> Mode {
    MODE.get().copied().unwrap_or(Mode::Plain)
}

/// Runs `f` with the live bars lifted, for writing a line to stderr.
pub(crate) fn suspend<R>(f: impl FnOnce() -> R) -> R {
    if mode() == Mode::Live {
        BARS.suspend(f)
    } else {
        f()
    }
}

fn colour() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bytes,
    Spinner,
    Count,
}

/// One piece of long work being shown. Cheap to clone; clones show the same
/// line, so a blocking thread can count rows while the async side counts bytes.
#[derive(Clone)]
pub struct Progress {
    inner: Arc<Inner>,
}

struct Inner {
    label: String,
    kind: Kind,
    unit: String,
    bar: Option<ProgressBar>,
    /// The wait's deadline, shown beside the elapsed time.
    limit: Option<Duration>,
    started: Instant,
    plain: Mutex<Plain>,
}

/// What plain mode remembers to decide when to write a line.
struct Plain {
    position: u64,
    total: Option<u64>,
    message: String,
    last_line: Instant,
    finished: bool,
}

impl Progress {
    /// Bytes moved, out of `total` if known: throughput and ETA.
    pub fn bytes(label: impl Into<String>, total: Option<u64>) -> Progress {
        Progress::new(label.into(), Kind::Bytes, total, String::new(), "", None)
    }

    /// Work with a state and no measure of how far it has got: a Spark
    /// step, a cluster, a database operation. Shows the state and the time.
    pub fn spinner(label: impl Into<String>, state: impl Display) -> Progress {
        Progress::new(
            label.into(),
            Kind::Spinner,
            None,
            String::new(),
            &state.to_string(),
            None,
        )
    }

    /// A spinner for a wait with a deadline (a Cloud SQL operation, a
    /// Dataproc job): its time reads against the limit, `12s of 1h`, so a
    /// user can tell waiting from hanging.
    pub fn waiting(label: impl Into<String>, state: impl Display, limit: Duration) -> Progress {
        Progress::new(
            label.into(),
            Kind::Spinner,
            None,
            String::new(),
            &state.to_string(),
            Some(limit),
        )
    }

    /// `position` of `total` things (`unit`, as "resources").
    pub fn count(label: impl Into<String>, total: u64, unit: &str) -> Progress {
        Progress::new(
            label.into(),
            Kind::Count,
            Some(total),
            unit.to_owned(),
            "",
            None,
        )
    }

    fn new(
        label: String,
        kind: Kind,
        total: Option<u64>,
        unit: String,
        message: &str,
        limit: Option<Duration>,
    ) -> Progress {
        let bar = (mode() == Mode::Live).then(|| {
            let bar = match total {
                Some(total) => ProgressBar::new(total),
                None => ProgressBar::new_spinner(),
            };
            let bar = BARS.add(bar);
            bar.set_style(style(kind, total.is_some(), &unit, limit));
            bar.set_prefix(label.clone());
            bar.set_message(message.to_owned());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        let progress = Progress {
            inner: Arc::new(Inner {
                label,
                kind,
                unit,
                bar,
                limit,
                started: Instant::now(),
                plain: Mutex::new(Plain {
                    position: 0,
                    total,
                    message: message.to_owned(),
                    last_line: Instant::now(),
                    finished: false,
                }),
            }),
        };
        // A transfer's first plain line would say only "0 B of 1.94 MiB, 0s":
        // it gets lines while it lasts (every few seconds) and its caller
        // one when it ends. A state is worth a line from the start.
        if progress.inner.bar.is_none() && starts_with_a_line(kind) {
            progress.plain_line(&progress.inner.plain.lock().expect("not poisoned"));
        }
        progress
    }

    /// Adds `n` to the position (bytes, resources).
    pub fn inc(&self, n: u64) {
        if let Some(bar) = &self.inner.bar {
            bar.inc(n);
        }
        let mut plain = self.inner.plain.lock().expect("not poisoned");
        plain.position += n;
        self.maybe_plain_line(&mut plain, false);
    }

    /// Sets the position outright.
    pub fn set_position(&self, position: u64) {
        if let Some(bar) = &self.inner.bar {
            bar.set_position(position);
        }
        let mut plain = self.inner.plain.lock().expect("not poisoned");
        plain.position = position;
        self.maybe_plain_line(&mut plain, false);
    }

    /// Sets the total, once it is known.
    pub fn set_total(&self, total: u64) {
        if let Some(bar) = &self.inner.bar {
            bar.set_length(total);
            bar.set_style(style(self.inner.kind, true, &self.inner.unit, None));
        }
        self.inner.plain.lock().expect("not poisoned").total = Some(total);
    }

    /// The state (`RUNNING`, `creating`) or a side note (`120,000 rows`).
    /// In plain mode a new state is written at once.
    pub fn set_message(&self, message: impl Display) {
        let message = message.to_string();
        if let Some(bar) = &self.inner.bar {
            bar.set_message(message.clone());
        }
        let mut plain = self.inner.plain.lock().expect("not poisoned");
        if plain.message != message {
            // A spinner's message is its state: worth a line when it changes.
            // Other messages (row counts) follow the throttle.
            let changed = self.inner.kind == Kind::Spinner;
            plain.message = message;
            self.maybe_plain_line(&mut plain, changed);
        }
    }

    /// How long this work has been going.
    pub fn elapsed(&self) -> Duration {
        self.inner.started.elapsed()
    }

    /// Wraps a reader so the bytes read through it move this progress.
    pub fn wrap_read<R: AsyncRead + Unpin>(&self, reader: R) -> Counted<R> {
        Counted {
            reader,
            progress: self.clone(),
        }
    }

    /// Ends the line: a live bar is cleared (the caller says what happened).
    pub fn finish(&self) {
        if let Some(bar) = &self.inner.bar {
            bar.finish_and_clear();
            BARS.remove(bar);
        }
        self.inner.plain.lock().expect("not poisoned").finished = true;
    }

    fn maybe_plain_line(&self, plain: &mut Plain, now: bool) {
        if self.inner.bar.is_some() || plain.finished {
            return;
        }
        if now || plain.last_line.elapsed() >= PLAIN_EVERY {
            plain.last_line = Instant::now();
            self.plain_line(plain);
        }
    }

    fn plain_line(&self, plain: &Plain) {
        let line = plain_text(
            &self.inner.label,
            self.inner.kind,
            &self.inner.unit,
            plain,
            self.elapsed(),
            self.inner.limit,
        );
        super::detail(line);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // An error path that never called finish must not leave a bar behind.
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
            BARS.remove(bar);
        }
    }
}

/// Whether plain mode writes a line as the work starts.
fn starts_with_a_line(kind: Kind) -> bool {
    kind != Kind::Bytes
}

/// The plain-mode line for a task.
fn plain_text(
    label: &str,
    kind: Kind,
    unit: &str,
    plain: &Plain,
    elapsed: Duration,
    limit: Option<Duration>,
) -> String {
    let secs = elapsed.as_secs_f64();
    let mut parts = Vec::new();
    match kind {
        Kind::Spinner => {}
        Kind::Bytes => {
            let done = indicatif::BinaryBytes(plain.position);
            parts.push(match plain.total {
                Some(total) => format!("{done} of {}", indicatif::BinaryBytes(total)),
                None => done.to_string(),
            });
            if secs >= 1.0 {
                parts.push(format!(
                    "{}/s",
                    indicatif::BinaryBytes((plain.position as f64 / secs) as u64)
                ));
            }
        }
        Kind::Count => parts.push(match plain.total {
            Some(total) => format!("{} of {total} {unit}", plain.position),
            None => format!("{} {unit}", plain.position),
        }),
    }
    if !plain.message.is_empty() {
        parts.push(plain.message.clone());
    }
    parts.push(match limit {
        Some(limit) => format!("{secs:.0}s of {}", short(limit)),
        None => format!("{secs:.0}s"),
    });
    format!("{label}: {}", parts.join(", "))
}

/// A limit as a person says it: `45s`, `1m30s`, `2h`.
fn short(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    for (n, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    if out.is_empty() { "0s".to_owned() } else { out }
}

fn style(kind: Kind, has_total: bool, unit: &str, limit: Option<Duration>) -> ProgressStyle {
    let c = colour();
    let spinner = if c { "{spinner:.green}" } else { "{spinner}" };
    let bar = if c { "{bar:24.cyan/blue}" } else { "{bar:24}" };
    let template = match (kind, has_total) {
        (Kind::Spinner, _) => match limit {
            Some(limit) => format!(
                "  {spinner} {{prefix}}: {{msg}} [{{elapsed}} of {}]",
                short(limit)
            ),
            None => format!("  {spinner} {{prefix}}: {{msg}} [{{elapsed}}]"),
        },
        (Kind::Bytes, true) => format!(
            "  {spinner} {{prefix}} {bar} {{binary_bytes}}/{{binary_total_bytes}} {{binary_bytes_per_sec}} ETA {{eta}} {{msg}}"
        ),
        (Kind::Bytes, false) => {
            format!(
                "  {spinner} {{prefix}} {{binary_bytes}} {{binary_bytes_per_sec}} {{msg}} [{{elapsed}}]"
            )
        }
        (Kind::Count, _) => {
            format!("  {spinner} {{prefix}} {bar} {{pos}}/{{len}} {unit} {{msg}} [{{elapsed}}]")
        }
    };
    ProgressStyle::with_template(&template)
        .expect("a valid progress template")
        .progress_chars("=> ")
}

/// A reader that moves a [`Progress`] by the bytes read through it.
pub struct Counted<R> {
    reader: R,
    progress: Progress,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counted<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.reader).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            self.progress.inc(read as u64);
        }
        poll
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(position: u64, total: Option<u64>, message: &str) -> Plain {
        Plain {
            position,
            total,
            message: message.to_owned(),
            last_line: Instant::now(),
            finished: false,
        }
    }

    #[test]
    fn plain_lines_say_how_far_and_how_fast() {
        let two_secs = Duration::from_secs(2);
        assert_eq!(
            plain_text(
                "upload",
                Kind::Bytes,
                "",
                &plain(2 << 20, Some(8 << 20), "9 rows"),
                two_secs,
                None
            ),
            "upload: 2.00 MiB of 8.00 MiB, 1.00 MiB/s, 9 rows, 2s"
        );
        assert_eq!(
            plain_text(
                "spark tokenizer",
                Kind::Spinner,
                "",
                &plain(0, None, "running"),
                two_secs,
                None
            ),
            "spark tokenizer: running, 2s"
        );
        assert_eq!(
            plain_text(
                "Cloud SQL import",
                Kind::Spinner,
                "",
                &plain(0, None, "RUNNING"),
                two_secs,
                Some(Duration::from_secs(5400))
            ),
            "Cloud SQL import: RUNNING, 2s of 1h30m"
        );
        assert_eq!(
            plain_text(
                "terraform apply",
                Kind::Count,
                "resources",
                &plain(3, Some(40), ""),
                two_secs,
                None
            ),
            "terraform apply: 3 of 40 resources, 2s"
        );
    }

    /// Regression (issue 21): every transfer began with a plain line
    /// "upload user_purchase.csv: 0 B of 1.94 MiB, 0s".
    #[test]
    fn a_transfer_starts_without_a_line_and_a_state_with_one() {
        assert!(!starts_with_a_line(Kind::Bytes));
        assert!(starts_with_a_line(Kind::Spinner));
        assert!(starts_with_a_line(Kind::Count));
    }

    #[test]
    fn limits_read_as_people_say_them() {
        assert_eq!(short(Duration::from_secs(45)), "45s");
        assert_eq!(short(Duration::from_secs(90)), "1m30s");
        assert_eq!(short(Duration::from_secs(7200)), "2h");
        assert_eq!(short(Duration::ZERO), "0s");
    }

    #[tokio::test]
    async fn a_wrapped_reader_counts_every_byte() {
        use tokio::io::AsyncReadExt;
        let progress = Progress::bytes("test", Some(11));
        let mut reader = progress.wrap_read(&b"hello world"[..]);
        let mut out = String::new();
        reader.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello world");
        assert_eq!(progress.inner.plain.lock().unwrap().position, 11);
        progress.finish();
    }
}

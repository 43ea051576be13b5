//! The one way commands write to stdout.
//!
//! stdout carries data that may be piped into `head`, which closes the pipe
//! early. That is not a failure: `println!` would panic (exit 101), and an
//! EPIPE wrapped by `csv` or `serde_json` no longer looks like one to the
//! error report. So every write goes through [`Stdout`], which notes EPIPE
//! here, and [`finish`] turns any error that follows a closed stdout into a
//! clean exit 0.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

static CLOSED: AtomicBool = AtomicBool::new(false);

/// stdout, with a closed reader noted. Cheap: make one where needed.
pub struct Stdout(io::Stdout);

pub fn stdout() -> Stdout {
    Stdout(io::stdout())
}

impl Stdout {
    /// Writes `text` and a newline.
    pub fn line(&mut self, text: impl std::fmt::Display) -> io::Result<()> {
        writeln!(self, "{text}")
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        note(self.0.write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        note(self.0.flush())
    }
}

fn note<T>(result: io::Result<T>) -> io::Result<T> {
    if let Err(e) = &result
        && e.kind() == io::ErrorKind::BrokenPipe
    {
        CLOSED.store(true, Ordering::Relaxed);
    }
    result
}

/// Whether stdout takes colour: a terminal, and `NO_COLOR` unset (the
/// rules `anstream` applies to stderr).
pub fn colour() -> bool {
    !matches!(
        anstream::AutoStream::choice(&io::stdout()),
        anstream::ColorChoice::Never
    )
}

/// Whether a write to stdout found the reader gone.
pub fn closed() -> bool {
    CLOSED.load(Ordering::Relaxed)
}

/// A command's result, with the error a closed stdout caused forgiven.
pub fn finish(result: anyhow::Result<()>) -> anyhow::Result<()> {
    let flushed = stdout().flush();
    match result {
        Err(_) if closed() => Ok(()),
        Err(e) => Err(e),
        Ok(()) if closed() => Ok(()),
        Ok(()) => flushed.map_err(Into::into),
    }
}

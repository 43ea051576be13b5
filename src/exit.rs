//! Exit codes, and how an error reaches the user.
//!
//! The codes and their meanings are [`CODES`]: the man pages' EXIT STATUS
//! is printed from it, and a test holds it to the constants below.
//!
//! Errors go to stderr as `error: …`, then each cause as `Caused by: …`,
//! then any `hint: …` lines found anywhere in the chain, last.

use std::io::Write;
use std::process::ExitCode;

use anstyle::{AnsiColor, Style};

/// The user asked for something that cannot be done as asked: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

pub use crate::signals::Interrupted;

/// Every exit code, as `infra man` documents it.
pub const CODES: &[(&str, &str)] = &[
    (
        "0",
        "success (also when stdout was closed early, as by `head`)",
    ),
    (
        "1",
        "the command failed: bad input, a failed step, a missing tool",
    ),
    (
        "2",
        "usage error (clap, or a refused request such as `down` without a terminal)",
    ),
    (
        "129, 130, 143",
        "stopped by SIGHUP, SIGINT or SIGTERM (128 + the signal). `run`: its child processes were stopped, on gcp its Dataproc job was cancelled and the run's cluster deleted, the step was recorded as interrupted and the run lock released; the local PostgreSQL server keeps running, as it does between runs (`infra down` stops it). `up` and `down` say what they were doing and how to go on; a running terraform got one SIGINT and was awaited (up to 120 s, or a second signal) so that it writes its state and releases its lock",
    ),
];

pub const SUCCESS: u8 = 0;
pub const FAILURE: u8 = 1;
pub const USAGE: u8 = 2;

/// Prints `result`'s error, if any, and returns the exit code.
pub fn report(result: anyhow::Result<()>) -> ExitCode {
    let Err(err) = result else {
        return ExitCode::from(SUCCESS);
    };
    if is_broken_pipe(&err) {
        return ExitCode::from(SUCCESS);
    }
    let mut stderr = anstream::stderr().lock();
    let _ = stderr.write_all(render(&err).as_bytes());
    ExitCode::from(code(&err))
}

fn code(err: &anyhow::Error) -> u8 {
    if let Some(Interrupted(signal)) = err.chain().find_map(|e| e.downcast_ref::<Interrupted>()) {
        signal.exit_code()
    } else if err.chain().any(|e| e.is::<UsageError>()) {
        USAGE
    } else {
        FAILURE
    }
}

/// The error report: `error:` line, `Caused by:` lines, hints last.
pub fn render(err: &anyhow::Error) -> String {
    let red = Style::new().fg_color(Some(AnsiColor::Red.into())).bold();
    let bold = Style::new().bold();
    let cyan = Style::new().fg_color(Some(AnsiColor::Cyan.into())).bold();
    let mut out = String::new();
    let mut hints = Vec::new();
    let mut previous = String::new();
    for (i, cause) in err.chain().enumerate() {
        let text = cause.to_string();
        // Some errors repeat their source in their own message (sqlx's
        // "error returned from database: <the server's message>"): the
        // source's line would say nothing new.
        if i > 0 && previous.ends_with(&text) {
            continue;
        }
        previous.clone_from(&text);
        let mut lines = Vec::new();
        for line in text.lines() {
            match line.strip_prefix("hint: ") {
                Some(hint) => hints.push(hint.to_owned()),
                None => lines.push(line),
            }
        }
        let (first, rest) = lines.split_first().map_or(("", &[][..]), |(f, r)| (*f, r));
        if i == 0 {
            out.push_str(&format!("{red}error:{red:#} {first}\n"));
        } else {
            out.push_str(&format!("  {bold}Caused by:{bold:#} {first}\n"));
        }
        for line in rest {
            out.push_str(&format!("    {line}\n"));
        }
    }
    for hint in hints {
        out.push_str(&format!("{cyan}hint:{cyan:#} {hint}\n"));
    }
    out
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn a_cause_that_repeats_the_end_of_the_one_before_is_printed_once() {
        #[derive(Debug)]
        struct Wrapper(std::io::Error);
        impl std::fmt::Display for Wrapper {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "error returned from database: {}", self.0)
            }
        }
        impl std::error::Error for Wrapper {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let err = anyhow::Error::new(Wrapper(std::io::Error::other("relation does not exist")))
            .context("cannot dump t");
        let plain = anstream::adapter::strip_str(&render(&err)).to_string();
        assert_eq!(
            plain,
            "error: cannot dump t\n  Caused by: error returned from database: relation does not exist\n"
        );
    }

    #[test]
    fn the_chain_and_hints_are_printed_in_order() {
        let err = Err::<(), _>(anyhow::anyhow!(
            "port 5432 is in use\nhint: pick another port"
        ))
        .context("cannot start PostgreSQL")
        .unwrap_err();
        let text = render(&err);
        let plain = anstream::adapter::strip_str(&text).to_string();
        assert_eq!(
            plain,
            "error: cannot start PostgreSQL\n  Caused by: port 5432 is in use\nhint: pick another port\n"
        );
        assert_eq!(code(&err), FAILURE);
    }

    /// An exit code added without a line in [`CODES`] fails here.
    #[test]
    fn every_code_is_documented() {
        let documented: Vec<u8> = CODES
            .iter()
            .flat_map(|(codes, _)| codes.split(", "))
            .map(|code| code.parse().unwrap())
            .collect();
        let source = include_str!("exit.rs");
        let constants: Vec<u8> = source
            .lines()
            .filter_map(|l| l.strip_prefix("pub const ")?.split_once(": u8 = "))
            .map(|(_, value)| value.trim_end_matches(';').parse().unwrap())
            .collect();
        assert_eq!(constants, [SUCCESS, FAILURE, USAGE]);
        use crate::signals::Signal;
        let signals = [Signal::Interrupt, Signal::Terminate, Signal::Hangup].map(Signal::exit_code);
        for code in constants.iter().chain(&signals) {
            assert!(
                documented.contains(code),
                "exit code {code} is not in CODES"
            );
        }
    }

    #[test]
    fn codes_follow_the_error_kind() {
        let usage = anyhow::Error::new(UsageError("no".into())).context("refused");
        assert_eq!(code(&usage), USAGE);
        let interrupted =
            anyhow::Error::new(Interrupted(crate::signals::Signal::Terminate)).context("step 2");
        assert_eq!(code(&interrupted), 143);
        let pipe = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert!(is_broken_pipe(&pipe));
    }
}

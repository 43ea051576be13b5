//! The `infra` binary: parse, call the library, map the result to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = infra::cli::Cli::parse();
    infra::ui::init(cli.global.verbose, cli.global.quiet);
    // One thread: infra spawns no tasks (blocking work goes to the blocking
    // pool), and with worker threads every socket read of a COPY woke the
    // main thread across threads: ~1,250 futex calls per dump, and step 1
    // behind psql on a busy machine.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return infra::exit::report(Err(e.into())),
    };
    let result = runtime.block_on(infra::commands::dispatch(cli));
    let code = infra::exit::report(result);
    // A signal can stop a verb while a blocking thread still waits for an
    // answer on the terminal: dropping the runtime would wait for it.
    runtime.shutdown_background();
    code
}

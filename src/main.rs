//! The `infra` binary: parse, call the library, map the result to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = infra::cli::Cli::parse();
    infra::ui::init(cli.global.verbose, cli.global.quiet);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return infra::exit::report(Err(e.into())),
    };
    infra::exit::report(runtime.block_on(infra::commands::dispatch(cli)))
}

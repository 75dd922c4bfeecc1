//! `canopy`: the admin and user command line of the Canopy MCP gateway.
//!
//! It parses the command line, runs one command against the control plane over gRPC,
//! and maps the outcome to output and an exit code. It does not run a control plane or a
//! data plane itself (`canopy start`, added later, does that through their libraries).

mod args;
mod client;
mod commands;
mod conf_file;
mod config;
mod error;
mod output;
mod sso;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return fail(&error::CliError::Other(format!(
                "cannot start the async runtime: {e}"
            )))
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// The one line a failure prints; the code is chosen by `CliError::exit_code`.
fn fail(e: &error::CliError) -> ExitCode {
    let _ = writeln!(std::io::stderr().lock(), "error: {e}");
    e.exit_code()
}

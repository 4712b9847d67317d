//! The `wangge` binary. Exit codes: 0 ok, 1 the work failed, 2 bad usage.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = wangge::cli::Cli::parse();
    match wangge::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

//! The `wangge` binary. Exit codes: 0 ok, 1 the work failed, 2 bad usage.

use clap::Parser;

fn main() -> std::process::ExitCode {
    // `wangge history | head`: when the reader of stdout goes away, stop
    // quietly like other command-line tools instead of panicking.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        default_hook(info);
    }));
    let cli = wangge::cli::Cli::parse();
    match wangge::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

use clap::Parser;

fn main() -> std::process::ExitCode {
    // Before the runtime's threads exist: loading `.env` writes the environment.
    if let Some(path) = daftra_bridge::config::env::find_dotenv() {
        if let Err(e) = daftra_bridge::config::env::load_dotenv(&path) {
            eprintln!("daftra-bridge: {e}");
            return std::process::ExitCode::FAILURE;
        }
    }
    let cli = daftra_bridge::cli::Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("daftra-bridge: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(daftra_bridge::cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("daftra-bridge: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

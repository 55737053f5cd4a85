use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let _ = dotenvy::dotenv();
    let cli = daftra_bridge::cli::Cli::parse();
    match daftra_bridge::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("daftra-bridge: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

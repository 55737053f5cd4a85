//! `daftra-sim`: the simulated Daftra API on its own port.

use clap::Parser;
use daftra_bridge::sim::{OAuthClient, SimConfig, Simulator};

/// Simulated Daftra v1 work-orders API, with fault injection at POST /__sim/faults.
#[derive(Parser, Debug)]
#[command(name = "daftra-sim", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "SIM_BIND_ADDR", default_value = "127.0.0.1:8089")]
    bind: String,
    /// Work orders seeded at start.
    #[arg(long, env = "SIM_RECORDS", default_value_t = 250)]
    records: usize,
    /// The accepted `apikey`.
    #[arg(long, env = "SIM_API_KEY", default_value = "sim-api-key")]
    api_key: String,
    /// Latency added to every API request, in milliseconds.
    #[arg(long, env = "SIM_LATENCY_MS", default_value_t = 0)]
    latency_ms: u64,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = std::net::TcpListener::bind(&args.bind)?;
    let oauth = Some(OAuthClient {
        client_id: "sim-client".into(),
        client_secret: "sim-secret".into(),
        username: "owner@example.com".into(),
        password: "sim-password".into(),
    });
    let sim = Simulator::start(
        SimConfig {
            records: args.records,
            api_key: args.api_key,
            oauth,
            seed: args.seed,
        },
        listener,
    )?;
    sim.state.set_faults(daftra_bridge::sim::Faults {
        latency_ms: args.latency_ms,
        ..Default::default()
    });
    eprintln!("daftra-sim: {} work orders at {}/api2/work_orders (apikey header, or OAuth client sim-client/sim-secret, owner@example.com/sim-password)", args.records, sim.base_url);
    tokio::signal::ctrl_c().await?;
    sim.stop().await;
    Ok(())
}

//! `daftra-sim`: the simulated Daftra API on its own port.

use clap::Parser;
use daftra_bridge::sim::{OAuthClient, SimConfig, Simulator};

/// Simulated Daftra API: every list resource the bridge declares (GET/POST /api2/{resource},
/// GET/PUT/DELETE /api2/{resource}/{id}), seeded with Arabic and English data in Daftra's odd
/// forms, with fault injection at POST /__sim/faults (e.g. {"unavailable": {"invoices": 403}}
/// makes one resource answer 403) and counters at GET /__sim/stats.
#[derive(Parser, Debug)]
#[command(name = "daftra-sim", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "SIM_BIND_ADDR", default_value = "127.0.0.1:8089")]
    bind: String,
    /// Records seeded at start, per resource.
    #[arg(long, env = "SIM_RECORDS", default_value_t = 250)]
    records: usize,
    /// Resources served, comma-separated names, or all (`daftra-bridge resources` lists them).
    #[arg(long, env = "SIM_RESOURCES", default_value = "all")]
    resources: String,
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
    let resources = daftra_bridge::config::resolve_resources(&Some(args.resources.clone()))
        .map_err(|e| anyhow::anyhow!("--resources: {}", e.expected))?;
    let names: Vec<String> = resources.iter().map(|r| r.name.clone()).collect();
    let sim = Simulator::start(
        SimConfig {
            records: args.records,
            resources: names.clone(),
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
    eprintln!("daftra-sim: {} records each of {} resources at {}/api2/{{resource}}, e.g. {}/api2/{} (apikey header, or OAuth client sim-client/sim-secret, owner@example.com/sim-password)",
        args.records, names.len(), sim.base_url, sim.base_url, names[0]);
    tokio::signal::ctrl_c().await?;
    sim.stop().await;
    Ok(())
}

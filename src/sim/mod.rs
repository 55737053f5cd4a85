//! `daftra-sim`: Daftra's list resources (every one the catalogue declares) simulated in memory,
//! with fault injection, for the demo, the tests, the benchmarks and users testing their own
//! consumers.

mod api;
mod data;
mod guard;
mod server;
mod state;
mod v2;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::{web, App, HttpServer};

pub use data::{seeded_record, seeded_work_order};
pub use state::{Drift, Faults, OAuthClient, RetryAfterForm, SimState, SimStats};

/// How to seed a simulated tenant.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Records of each resource created at start, ids `1..=records`.
    pub records: usize,
    /// Names of the resources served; empty serves every declared resource.
    pub resources: Vec<String>,
    /// The `apikey` the simulator accepts.
    pub api_key: String,
    /// OAuth client accepted by `POST /v2/oauth/token`, if any.
    pub oauth: Option<OAuthClient>,
    /// Seed of the generated data; the same seed gives the same records.
    pub seed: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            records: 250,
            resources: Vec::new(),
            api_key: "sim-api-key".into(),
            oauth: None,
            seed: 42,
        }
    }
}

/// A running simulator: its URL and its state (tests change records and faults through it).
pub struct Simulator {
    /// Site root, for `DAFTRA_BASE_URL`: `http://127.0.0.1:PORT`.
    pub base_url: String,
    pub state: Arc<SimState>,
    handle: actix_web::dev::ServerHandle,
}

impl Simulator {
    /// Starts the simulator on `listener` (bind port 0 for a random port) in the current runtime.
    pub fn start(config: SimConfig, listener: TcpListener) -> std::io::Result<Simulator> {
        let resources: Vec<_> = crate::catalogue::all()
            .iter()
            .filter(|r| config.resources.is_empty() || config.resources.contains(&r.name))
            .collect();
        let state = Arc::new(SimState::new(
            &resources,
            config.records,
            config.api_key,
            config.oauth,
            config.seed,
        ));
        let port = listener.local_addr()?.port();
        let data = web::Data::new(state.clone());
        let server =
            HttpServer::new(move || App::new().app_data(data.clone()).configure(server::routes))
                .workers(2)
                .disable_signals()
                .listen(listener)?
                .run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(Simulator {
            base_url: format!("http://127.0.0.1:{port}"),
            state,
            handle,
        })
    }

    /// Binds `127.0.0.1:0` and starts there.
    pub fn start_local(config: SimConfig) -> std::io::Result<Simulator> {
        Self::start(config, TcpListener::bind("127.0.0.1:0")?)
    }

    /// Stops the server, letting in-flight requests finish.
    pub async fn stop(&self) {
        self.handle.stop(true).await;
    }
}

//! Test harness, one subject a file: the bridge in this process ([`app`]), the binary as a child
//! process ([`process`]) read over HTTP ([`probe`]), the settings of both ([`env`]), RabbitMQ
//! ([`amqp`]), waiting ([`wait`]) and the rule for a missing tool ([`needs`]).

mod amqp;
mod app;
mod env;
mod needs;
mod probe;
mod process;
mod wait;

use serde_json::Value;

pub use amqp::{
    amqp_url, declare_exchange, delete_exchange, unique, EventQueue, ExchangeGuard, Received,
};
pub use app::{spawn_app, Options, TestApp};
pub use env::{sqlite_url, BridgeEnv, SIM_API_KEY};
pub use needs::{python_module, require, tool};
pub use probe::{get_json, metrics_at, wait_polled_and_published};
pub use process::{Bridge, Running};
pub use wait::{free_port, wait_for};

/// The fields of a JSON object literal, as the simulator's `create` and `update` take them.
pub fn fields(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().cloned().expect("a JSON object")
}

/// Value of one sample of `/metrics` text, e.g. `daftra_api_pages_fetched_total{resource="work_orders"}`.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.trim().parse().ok())
    })
}

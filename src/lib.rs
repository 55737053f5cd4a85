//! daftra-bridge: every Daftra list resource (invoices, clients, products, stock, journals, work
//! orders, ...) as spreadsheets by URL, RabbitMQ change events and Prometheus metrics. `main.rs` only parses the command line; everything is built here so that
//! tests can start the whole bridge on port 0.

pub mod access;
pub mod account;
pub mod catalogue;
pub mod changes;
pub mod check;
pub mod cli;
pub mod config;
pub mod daftra;
pub mod demo;
pub mod diff;
pub mod events;
pub mod export;
pub mod feed;
pub mod format;
pub mod http;
pub mod keyring;
pub mod leader;
pub mod memory;
pub mod metrics;
pub mod poller;
pub mod record;
pub mod scan;
pub mod secret;
pub mod sim;
pub mod sinks;
pub mod startup;
pub mod status;
pub mod store;
pub mod telemetry;

//! One integration-test binary: the simulator and the whole bridge on random ports, with the real
//! local RabbitMQ (a unique exchange and queue per test).

mod access;
mod architecture;
mod catalogue;
mod delivery;
mod event_docs;
mod events;
mod exports;
mod feed;
mod files;
mod first_contact;
mod fixture;
mod helpers;
mod incremental;
mod index;
mod items;
mod openapi;
mod ops;
mod packaging;
mod parked;
mod pg;
mod proxy;
mod replicas;
mod startup;
mod store;
mod upstream;
mod values;
mod webhooks;

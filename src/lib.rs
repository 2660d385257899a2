//! Curbside: a REST API to find, reserve and pay for on-street parking.
//!
//! The binary (`src/main.rs`) only parses the command line; everything it runs is here, so
//! the tests exercise the same wiring as production.

pub mod app;
pub mod auth;
pub mod client_settings;
pub mod config;
pub mod db;
pub mod email;
pub mod error;
pub mod extract;
pub mod health;
pub mod jobs;
pub mod links;
pub mod metrics;
pub mod middleware;
pub mod money;
pub mod openapi;
pub mod pagination;
pub mod payments;
pub mod rate_limit;
pub mod redis_pool;
pub mod reservations;
pub mod server;
pub mod shutdown;
pub mod spots;
pub mod state;
pub mod telemetry;
pub mod time_window;
pub mod wallet;

//! statuswatch: a pingora sidecar reverse proxy that tallies every response by
//! documented status code, tenant and origin, detects spikes of 5xx errors and
//! 451 suspensions, and exposes both as Prometheus metrics.
//!
//! Data flows one way: request → [`tenant`] → response → [`tally`] →
//! [`detect`] → [`metrics`] exposition on the [`admin`] listener.

pub mod admin;
pub mod catalog;
pub mod config;
pub mod conn;
pub mod demo;
pub mod detect;
pub mod limit;
pub mod metrics;
pub mod proxy;
pub mod record;
pub mod rules;
pub mod server;
pub mod state;
pub mod status;
pub mod tally;
pub mod tasks;
pub mod tenant;
pub mod tls;

/// The crate version, exported as `statuswatch_build_info{version}`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

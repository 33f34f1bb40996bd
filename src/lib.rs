//! statuswatch: a pingora sidecar reverse proxy that tallies every response by
//! documented status code, tenant and origin, detects spikes of 5xx errors and
//! 451 suspensions, and exposes both as Prometheus metrics.
//!
//! Data flows one way: request → [`tenant`] → response → [`tally`] →
//! [`detect`] → [`metrics`] exposition on the [`admin`] listener.

#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

mod admin;
mod catalog;
pub mod config;
mod conn;
pub mod demo;
pub mod detect;
mod limit;
pub mod metrics;
mod proxy;
pub mod record;
pub mod rules;
pub mod server;
pub mod state;
pub mod status;
pub mod tally;
mod tasks;
pub mod tenant;
mod tls;

/// The crate version, exported as `statuswatch_build_info{version}`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

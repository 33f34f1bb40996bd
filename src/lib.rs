//! statuswatch: a pingora sidecar reverse proxy that tallies every response by
//! documented status code, tenant and origin, detects spikes of 5xx errors and
//! 451 suspensions, and exposes both as Prometheus metrics.
//!
//! Data flows one way, and the module graph has no cycles:
//!
//! ```text
//! request ─▶ conn (connection loop) ─▶ forward (plain HTTP/1, direct)            ─┐
//!                                   └▶ pingora-proxy via proxy (its hook adapter) ─┴▶ request (core)
//!        ─▶ tenant (who) ─▶ record (one finished response) ─▶ tally (counters)
//!                                                         ├▶ route (its route, counted without tenant)
//!                                                         └▶ failures (kept if it failed)
//!        ─▶ detect (spike decisions, control thread) ─▶ metrics ─▶ admin (/metrics, /failures)
//! ```
//!
//! Both request paths run the same request core, `request`: pingora-proxy
//! through the `ProxyHttp` hooks in `proxy`, which only delegate, and
//! `forward` by calling the same steps in the same order.
//!
//! [`config`] is a leaf that only parses and checks plain settings;
//! [`state::Live::build`] turns a config into everything the request path
//! reads (tenant rules, `catalog`, signals, upstream address, TLS
//! certificate), once per start, `check` and reload; [`state::Shared`] holds
//! it beside the tallies. [`server`] wires the pingora services, `tasks`
//! runs the control thread's background work, [`rules`] generates the
//! Prometheus rules and [`demo`] the bundled demo API.

// One audited exception, `tcp.rs`'s `getsockopt` (see there).
#![deny(unsafe_code)]
#![warn(unreachable_pub)]

mod admin;
mod catalog;
pub mod config;
mod conn;
pub mod demo;
pub mod detect;
pub mod failures;
mod forward;
#[cfg(fuzzing)]
pub mod fuzzing;
mod keepalive;
mod limit;
mod memory;
pub mod metrics;
mod proxy;
pub mod record;
#[cfg(test)]
mod reference;
mod request;
pub mod route;
pub mod rules;
pub mod server;
pub mod state;
pub mod status;
pub mod tally;
mod tasks;
mod tcp;
pub mod tenant;
mod tls;

/// The crate version, exported as `statuswatch_build_info{version}`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

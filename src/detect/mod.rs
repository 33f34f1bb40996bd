//! Spike detectors: for each signal (a set of status codes), overall and per
//! tenant, decide whether the signal's count in a short window is improbable
//! under the series' own long-run share, given the requests seen.
//!
//! The detector runs off the request path: a background task ticks every
//! `detector.tick`, reads the tally's cumulative counters, and turns their
//! deltas into a ring of buckets (the short window) and an exponentially
//! decayed event/request pair (the baseline, fed only by buckets that left the
//! window, so it never contains the window it is compared with).
//!
//! The decision ([`SignalSpec::judge`]) is the one the Prometheus rules of
//! `statuswatch rules` compute on pod-summed counters. With `n` requests and `k`
//! events in the window, and a baseline of `N` requests with share `b`:
//!
//! * `p0 = max(b, floor)`: the expected share (the floor keeps a zero
//!   baseline from making every event a surprise);
//! * `S = n · KL(k/n ‖ p0)` = `k·ln(k/(n·p0)) + (n−k)·ln((n−k)/(n·(1−p0)))`,
//!   the Chernoff–Hoeffding exponent: `P(≥ k events | n, p0) ≤ e^(−S)` for
//!   any `n`, with no normal approximation, so small samples are safe;
//! * a spike when `S ≥ ln(1/significance)` **and** `k ≥ min_events` **and**
//!   `k/n ≥ factor × p0` (effect size: a huge tenant's tiny but significant
//!   rise does not page), judged against the series' own baseline when
//!   `N ≥ max(min_requests, n)` (a baseline of its own, at least as large as
//!   the window).
//!
//! A series without such a baseline (a new tenant, a fresh start, a tenant
//! whose baseline has decayed away) is "cold": once its window alone holds
//! `cold_min_requests` requests it is judged the same way with `p0 =
//! max(the overall series' baseline share, floor, the upper bound of its
//! partial baseline if it has one)`, so a studio that fails
//! from its first request is alerted, while a low-volume one (whose share
//! means little on its own) is not. A cold series keeps learning while it
//! spikes, or it could never get a baseline of its own.
//!
//! A spike ends once the decision has been false for `clear_after`. A spike
//! judged against the series' own baseline freezes that baseline, so a long
//! outage keeps alerting until it ends rather than becoming the new normal,
//! up to `relearn_after`: a spike that long is taken for a permanent change
//! and the baseline learns again (the alert ends once the new share is the
//! normal one).
//!
//! * [`spec`]: the signals and the decision;
//! * [`window`]: the short window's ring of buckets;
//! * [`detector`]: the per-tick bookkeeping and the published snapshot.

pub mod detector;
pub mod spec;
pub mod window;

pub use detector::{
    bytes_per_tenant, empty_snapshot, Detector, SeriesView, SharedSnapshot, SignalView, Snapshot,
    Timing,
};
pub use spec::{surprise, SignalSpec, P0_MAX, SEVERITIES, SUSPENDED_SIGNAL};
pub use window::BUCKETS;

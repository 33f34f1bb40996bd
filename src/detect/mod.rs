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
//! `statuswatch rules` compute on pod-summed counters: the window's count of
//! signal events against the series' expected share `p0` (its baseline share
//! at its upper bound, or for a "cold" series the overall share), a surprise
//! `S = n · KL(k/n ‖ p0)` (the Chernoff bound of the binomial tail), an
//! effect size and a minimum count; a spike freezes the baseline until
//! `relearn_after`. The maths, its thresholds and why, are written once, in
//! `docs/detection.md`; [`spec`] implements it.
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

//! The rules' time scale, derived from the cadence of the Prometheus that
//! runs them (`[prometheus]`): the window every raw counter is read over, and
//! how long an alert keeps firing after its last positive evaluation.
//!
//! A range holds one sample per scrape interval, one fewer on Prometheus 3
//! (left-open ranges). `increase()` over one sample returns nothing (the
//! rules go silently blind) and over two it is one difference extrapolated
//! to the whole window (noise pages healthy tenants), so every window spans
//! at least [`MIN_SAMPLES`] scrape intervals: the rule of thumb of
//! Prometheus' and Grafana's `$__rate_interval`.

use std::time::Duration;

use super::{invalid, RulesError};
use crate::config::Config;

/// Scrape intervals a window spans at least.
pub(super) const MIN_SAMPLES: u32 = 4;

/// Samples per window below which the rules are taken to be blind (the
/// `StatuswatchRulesUndersampled` alert): two or fewer.
pub(super) const BLIND_SAMPLES: u32 = 3;

/// The longest window the rules use: the shortest SLO window (5m) is made of
/// whole windows.
const MAX_WINDOW: Duration = Duration::from_secs(300);

/// The rules' cadence for one config, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cadence {
    /// `prometheus.scrape_interval`.
    pub scrape: Duration,
    /// `prometheus.evaluation_interval`.
    pub eval: Duration,
    /// The window the rules judge and read raw counters over:
    /// `detector.short_window`, widened to [`MIN_SAMPLES`] scrape intervals,
    /// rounded up to whole evaluation intervals (so the baseline's tiles
    /// line up with evaluations).
    pub window: Duration,
}

impl Cadence {
    /// The cadence of `cfg`'s rules, or the key that makes them impossible.
    pub fn of(cfg: &Config) -> Result<Cadence, RulesError> {
        let p = &cfg.prometheus;
        let d = &cfg.detector;
        let (scrape, eval) = (p.scrape_interval, p.evaluation_interval);
        let max_scrape = MAX_WINDOW / MIN_SAMPLES;
        if scrape < Duration::from_secs(1) || scrape > max_scrape {
            return Err(invalid(
                "prometheus.scrape_interval",
                format!(
                    "must be within 1s..={} ({MIN_SAMPLES} scrapes must fit in the rules' longest window, {}); scrape the sidecars more often",
                    super::prom_duration(max_scrape),
                    super::prom_duration(MAX_WINDOW)
                ),
            ));
        }
        if eval < Duration::from_secs(1) {
            return Err(invalid(
                "prometheus.evaluation_interval",
                "must be at least 1s",
            ));
        }
        let wanted = d.short_window.max(scrape * MIN_SAMPLES);
        let window = round_up(wanted, eval);
        if window > MAX_WINDOW {
            return Err(invalid(
                "prometheus.evaluation_interval",
                format!(
                    "the rules' window ({}, rounded up to whole evaluation intervals) must be at most {}",
                    super::prom_duration(window),
                    super::prom_duration(MAX_WINDOW)
                ),
            ));
        }
        if d.baseline_half_life < window * 2 {
            return Err(invalid(
                "detector.baseline_half_life",
                format!(
                    "the rules' baseline must hold at least 2 of their {} windows ({}); raise it to {} or more",
                    super::prom_duration(window),
                    why_window(d.short_window, scrape, eval, window),
                    super::prom_duration(window * 2)
                ),
            ));
        }
        if d.wave_window < scrape * MIN_SAMPLES {
            return Err(invalid(
                "detector.wave_window",
                format!(
                    "must span at least {MIN_SAMPLES} scrape intervals ({}) at prometheus.scrape_interval {}",
                    super::prom_duration(scrape * MIN_SAMPLES),
                    super::prom_duration(scrape)
                ),
            ));
        }
        Ok(Cadence {
            scrape,
            eval,
            window,
        })
    }

    /// The `keep_firing_for` of an alert whose configured `clear_after` is
    /// `clear_after`: at least one window (a window's decision rests on
    /// samples a window apart) and two evaluations (one late or failed
    /// evaluation never resolves an alert mid-incident).
    pub fn keep_firing(&self, clear_after: Duration) -> Duration {
        clear_after.max(self.window).max(self.eval * 2)
    }

    /// A range over raw samples that must hold at least [`MIN_SAMPLES`]
    /// of them and `at_least` of time.
    pub fn raw_range(&self, at_least: Duration) -> Duration {
        at_least.max(self.scrape * MIN_SAMPLES)
    }

    /// One line for the rules' header and `check`: the window and why.
    pub fn describe(&self, short_window: Duration) -> String {
        format!(
            "rules window {} ({}), scrape {}, evaluation {}",
            super::prom_duration(self.window),
            why_window(short_window, self.scrape, self.eval, self.window),
            super::prom_duration(self.scrape),
            super::prom_duration(self.eval),
        )
    }
}

fn why_window(short: Duration, scrape: Duration, eval: Duration, window: Duration) -> String {
    let widened = scrape * MIN_SAMPLES;
    let base = if widened > short {
        format!(
            "detector.short_window {} widened to {MIN_SAMPLES} x prometheus.scrape_interval {}",
            super::prom_duration(short),
            super::prom_duration(scrape)
        )
    } else {
        format!("detector.short_window {}", super::prom_duration(short))
    };
    if window > short.max(widened) {
        format!(
            "{base}, rounded up to whole prometheus.evaluation_interval {}",
            super::prom_duration(eval)
        )
    } else {
        base
    }
}

/// `d` rounded up to a whole multiple of `step` (millisecond resolution).
fn round_up(d: Duration, step: Duration) -> Duration {
    let (d_ms, s_ms) = (d.as_millis(), step.as_millis().max(1));
    let ms = d_ms.div_ceil(s_ms) * s_ms;
    Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(scrape: u64, eval: u64) -> Config {
        let mut c = Config::defaults().unwrap();
        c.prometheus.scrape_interval = Duration::from_secs(scrape);
        c.prometheus.evaluation_interval = Duration::from_secs(eval);
        c
    }

    #[test]
    fn the_window_holds_four_scrapes_in_whole_evaluations() {
        for (scrape, eval, window) in [
            (1, 1, 60),
            (15, 30, 60),
            (15, 15, 60),
            (20, 30, 90),
            (30, 30, 120),
            (60, 60, 240),
            (60, 30, 240),
            (45, 60, 180),
            (75, 60, 300),
        ] {
            let c = Cadence::of(&cfg(scrape, eval)).unwrap();
            assert_eq!(c.window, Duration::from_secs(window), "{scrape}s/{eval}s");
            assert!(c.window >= c.scrape * MIN_SAMPLES);
            assert_eq!(c.window.as_millis() % c.eval.as_millis(), 0);
        }
    }

    #[test]
    fn keep_firing_covers_a_window_and_two_evaluations() {
        let c = Cadence::of(&cfg(60, 60)).unwrap();
        assert_eq!(
            c.keep_firing(Duration::from_secs(120)),
            Duration::from_secs(240)
        );
        let c = Cadence::of(&cfg(15, 30)).unwrap();
        assert_eq!(
            c.keep_firing(Duration::from_secs(120)),
            Duration::from_secs(120)
        );
        assert_eq!(
            c.keep_firing(Duration::from_secs(10)),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn impossible_cadences_name_their_key() {
        let err = |c: &Config| Cadence::of(c).unwrap_err().to_string();
        assert!(
            err(&cfg(90, 30)).starts_with("prometheus.scrape_interval: must be within 1s..=75s")
        );
        let mut c = cfg(0, 30);
        c.prometheus.scrape_interval = Duration::from_millis(500);
        assert!(err(&c).starts_with("prometheus.scrape_interval"));
        assert!(err(&cfg(15, 0)).starts_with("prometheus.evaluation_interval"));
        assert!(err(&cfg(60, 400)).starts_with("prometheus.evaluation_interval"));
        let mut c = cfg(60, 60);
        c.detector.baseline_half_life = Duration::from_secs(300);
        let e = err(&c);
        assert!(e.starts_with("detector.baseline_half_life"), "{e}");
        assert!(
            e.contains("widened to 4 x prometheus.scrape_interval 1m"),
            "{e}"
        );
        let mut c = cfg(60, 60);
        c.detector.wave_window = Duration::from_secs(120);
        assert!(err(&c).starts_with("detector.wave_window"));
    }
}

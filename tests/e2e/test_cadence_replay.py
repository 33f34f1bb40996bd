#!/usr/bin/env python3
"""Production-cadence replay: do the rules generated for the scrape interval in use alert
on every incident, in time, without a gap, and on nothing else, when Prometheus scrapes
every 15 s or every 60 s rather than every second? And do the rules generated for 15 s
say so when they are run under a 60 s scrape?

    STATUSWATCH_BIN=target/release/statuswatch PROMETHEUS_BIN=... python3 tests/e2e/test_cadence_replay.py
    ... --prom p30:30s/30s:30s/30s      (add or replace Prometheus instances, see below)

Starts, on loopback and free ports only: the demo upstream, 3 statuswatch sidecars with
the DEFAULT config (listen addresses, upstream and log level from STATUSWATCH__*), and one
Prometheus per `--prom NAME:SCRAPE/EVAL:RULES_SCRAPE/RULES_EVAL` (default: p15 = 15 s
scrape, 30 s evaluation with the rules for it, which are the shipped rules; p60 = 60 s /
60 s with the rules for it; stale60 = 60 s / 60 s with the shipped 15 s rules). All of them
scrape the same 3 sidecars, so they see the same traffic and incidents.

Traffic: 150 req/s over 60 Zipf tenants, 2 % 5xx background, three low-volume tenants
failing chronically (30 %), one past-due tenant (70 % 402). After a warm-up of 3.5 windows
of the slowest rules (a fresh Prometheus has no baseline: the overall series needs a
baseline at least as large as its window before anyone is judged), three incidents:
    big      the largest tenant (~32 req/s) answers 40 % 5xx for 5 minutes
    small    a ~0.8 req/s tenant answers 40 % 5xx for 5 minutes (30 s later)
    suspend  one tenant answers 451 from then on (60 s later)
Checks, for every Prometheus whose rules match its cadence: each incident's alert fires
within the bound for its scrape interval (15 s: 60 s, 30 s: 90 s, 60 s: 240 s; about a
minute of evidence plus the scrape and evaluation delays; for the ~0.8 req/s tenant 105 s,
120 s, 240 s, see BOUNDS_LOW_VOLUME) and keeps firing without a gap
until the incident ends; no other alert starts firing outside the incidents that explain it
(the SLO burn-rate alerts are exempt: the 2 % background is 20 x the default budget). For
the mismatched one: StatuswatchRulesUndersampled fires within 10 minutes of its start.
Prints a table. Python standard library only.
Environment: STATUSWATCH_BIN, PROMETHEUS_BIN, E2E_KEEP_TMP=1, REPLAY_SEED (default 7).
"""
import argparse
import os
import subprocess
import tempfile
import time

from e2e_common import (finish_run, replay_code, run_main, ROOT, RULES, Load, Procs, Results, Watch, free_port, http_get, log,
                        prometheus_bin, prometheus_config, start_prometheus, wait_until, write)

RPS = 150.0
TENANTS = [f"studio{r:02d}" for r in range(1, 61)]
WEIGHTS = [1.0 / r for r in range(1, 61)]
BIG, SMALL = "studio01", "studio40"             # ~32 and ~0.80 req/s
CHRONIC = ["studio45", "studio50", "studio55"]  # ~0.6 req/s, 30 % 5xx all along
PAST_DUE = "studio08"
SUSPEND = "studio06"
BACKGROUND_5XX = 0.02
INCIDENT = 300
SETTLE = 120       # an incident explains alerts starting up to this long after it ends
# onset -> firing bounds by scrape interval: a minute of evidence plus the scrape and
# evaluation delays. A ~0.8 req/s tenant at 40 % 5xx needs 11-14 events in its window for
# significance 1e-7 against a baseline of ~15 minutes (35-45 s of its incident, +-10 s of
# Poisson noise) before those delays, up to 15 s + 30 s at a 15 s scrape with a 30 s
# evaluation: it gets its own bound (measured 66 s with seed 7; evaluating every 15 s
# takes up to 15 s off).
BOUNDS = {15: 60.0, 30: 90.0, 60: 240.0}
BOUNDS_LOW_VOLUME = {15: 105.0, 30: 120.0, 60: 240.0}
GUARD_BOUND = 600.0
# what rules run under a sparser scrape than they were generated for rightly raise
GUARD_ALERTS = {"StatuswatchRulesUndersampled", "StatuswatchRulesBlind"}
BURN_ALERTS = {"StatuswatchErrorBudgetBurn", "StatuswatchTenantErrorBudgetBurn",
               "StatuswatchErrorBudgetBurnSlow", "StatuswatchTenantErrorBudgetBurnSlow"}
DEFAULT_PROMS = ["p15:15s/30s:15s/30s", "p60:60s/60s:60s/60s", "stale60:60s/60s:15s/30s"]

# (name, offset after the warm-up, duration or None = until the end, alert, tenant, bounds)
INCIDENTS = [
    ("big", 0, INCIDENT, "StatuswatchTenant5xxSpike", BIG, BOUNDS),
    ("small", 30, INCIDENT, "StatuswatchTenant5xxSpike", SMALL, BOUNDS_LOW_VOLUME),
    ("suspend", 60, None, "StatuswatchTenantSuspensionSpike", SUSPEND, BOUNDS),
]

R = Results()
check = R.check


def secs(s):
    """'15s', '1m', '90' -> seconds."""
    s = s.strip()
    if s.endswith("m"):
        return int(s[:-1]) * 60
    return int(s.rstrip("s"))


def explains(incident, name, tenant):
    if incident == "big":
        return (name == "StatuswatchTenant5xxSpike" and tenant == BIG) or name == "Statuswatch5xxSpike"
    if incident == "small":
        return name == "StatuswatchTenant5xxSpike" and tenant == SMALL
    if incident == "suspend":
        return (name == "StatuswatchTenantSuspensionSpike" and tenant == SUSPEND) or name == "StatuswatchSuspensionSpike"
    return False


def rules_window(scrape, evaluation):
    """The window `statuswatch rules` derives (see its header): 1m widened to 4 scrapes,
    rounded up to whole evaluations. Read back from the generated file below."""
    w = max(60, 4 * scrape)
    return -(-w // evaluation) * evaluation


def run(proms):
    tmp = tempfile.mkdtemp(prefix="statuswatch-cadence-", dir=os.environ.get("TMPDIR"))
    procs = Procs(tmp)
    load = None
    watches = {}
    try:
        sw = os.path.abspath(os.environ.get("STATUSWATCH_BIN") or os.path.join(ROOT, "target", "release", "statuswatch"))
        prom_bin = prometheus_bin()
        if not check(os.access(sw, os.X_OK) and prom_bin, f"statuswatch ({sw}) and prometheus ({prom_bin}) found"):
            return
        ver = subprocess.run([prom_bin, "--version"], capture_output=True, text=True).stdout.splitlines()
        log(f"prometheus: {ver[0] if ver else '?'}")
        env = {k: v for k, v in os.environ.items() if not k.startswith("STATUSWATCH")}

        # ---- rules for each cadence -------------------------------------------------
        setups = []
        for spec in proms:
            name, cad, rules_cad = spec.split(":")
            scrape, ev = (secs(x) for x in cad.split("/"))
            r_scrape, r_ev = (secs(x) for x in rules_cad.split("/"))
            gen = subprocess.run([sw, "rules", "--scrape-interval", f"{r_scrape}s", "--evaluation-interval", f"{r_ev}s"],
                                 capture_output=True, text=True, env=env)
            if not check(gen.returncode == 0, f"{name}: statuswatch rules --scrape-interval {r_scrape}s "
                         f"--evaluation-interval {r_ev}s"):
                print(gen.stderr)
                return
            w = rules_window(r_scrape, r_ev)
            wd = f"{w // 60}m" if w % 60 == 0 else f"{w}s"
            check(f"increase(statuswatch_responses_total[{wd}])" in gen.stdout,
                  f"{name}: the rules for a {r_scrape}s scrape read raw counters over {wd}")
            if (r_scrape, r_ev) == (15, 30):
                with open(RULES) as f:
                    check(gen.stdout == f.read(), f"{name}: the rules for 15s/30s are the shipped rules")
            rules = write(os.path.join(tmp, f"{name}.rules.yml"), gen.stdout)
            setups.append({"name": name, "scrape": scrape, "eval": ev, "rules": rules, "window": w,
                           "matched": (scrape, ev) == (r_scrape, r_ev)})
        warm = max(s["window"] for s in setups if s["matched"]) * 3.5 + 30

        # ---- the fleet --------------------------------------------------------------
        up_port = free_port()
        procs.start("upstream", [sw, "demo-upstream", "--listen", f"127.0.0.1:{up_port}"], env=env)
        ports, admins = [], []
        for i in range(3):
            pp, ap = free_port(), free_port()
            e = dict(env, STATUSWATCH__PROXY__LISTEN=f"127.0.0.1:{pp}", STATUSWATCH__ADMIN__LISTEN=f"127.0.0.1:{ap}",
                     STATUSWATCH__PROXY__UPSTREAM=f"127.0.0.1:{up_port}", STATUSWATCH__PROXY__GRACE_PERIOD="1s",
                     STATUSWATCH__PROXY__SHUTDOWN_TIMEOUT="1s", STATUSWATCH__LOG__LEVEL="warn")
            procs.start(f"sw-{i}", [sw], env=e)
            ports.append(pp)
            admins.append(f"127.0.0.1:{ap}")
        ok = wait_until(lambda: all(http_get(f"http://{a}/readyz")[0] == 200 for a in admins)
                        and http_get(f"http://127.0.0.1:{up_port}/status/200")[0] == 200, 30)
        if not check(ok, "upstream and 3 sidecars ready"):
            return

        for s in setups:
            s["prom"] = start_prometheus(procs, prometheus_config(
                [{"targets": admins, "labels": {"cluster": "prod"}}], rule_files=[s["rules"]],
                scrape_timeout="10s", scrape_interval=f"{s['scrape']}s", evaluation_interval=f"{s['eval']}s"),
                prom_bin, data_dir=f"{s['name']}-data", log_level="warn", name=s["name"])
        for s in setups:
            if not check(wait_until(s["prom"].ready, 60), f"{s['name']}: prometheus ready"):
                print(procs.tail(s["name"]))
                return
            s["started"] = time.monotonic()
            watches[s["name"]] = Watch(s["prom"], spikes=False)

        total = sum(WEIGHTS)
        rates = {t: RPS * w / total for t, w in zip(TENANTS, WEIGHTS)}
        modes = {t: "bg" for t in TENANTS}
        for t in CHRONIC:
            modes[t] = "chronic"
        modes[PAST_DUE] = "pastdue"
        load = Load({"prod": ports}, rates, modes, lambda rng, mode: replay_code(rng, mode, BACKGROUND_5XX),
                    int(os.environ.get("REPLAY_SEED", "7")))
        t0 = time.monotonic()
        load.start()
        for w in watches.values():
            w.start()
        end = warm + 60 + INCIDENT + 30
        log(f"traffic: {RPS:g} req/s over {len(TENANTS)} Zipf tenants; warm-up {warm:.0f} s, "
            f"incidents from then on, end at {end:.0f} s")

        def at(sec):
            time.sleep(max(0.0, t0 + sec - time.monotonic()))

        onset, ends = {}, {}
        modes_of = {"big": "5xx40", "small": "5xx40", "suspend": "451"}
        timeline = sorted([(warm + off, "start", name, tenant) for name, off, _, _, tenant, _ in INCIDENTS]
                          + [(warm + off + dur, "stop", name, tenant) for name, off, dur, _, tenant, _ in INCIDENTS if dur])
        for when, what, name, tenant in timeline:
            at(when)
            if what == "start":
                onset[name] = time.monotonic()
                load.set(tenant, modes_of[name])
                log(f"{name}: {tenant} -> {modes_of[name]}")
            else:
                ends[name] = time.monotonic()
                load.set(tenant, "bg")
                log(f"{name} over: {tenant} back to the background")
        at(end)
        for w in watches.values():
            w.stop()
        load.stop()
        for name, *_ in INCIDENTS:
            ends.setdefault(name, time.monotonic())

        # ---- evaluate -----------------------------------------------------------------
        rows = []
        for s in setups:
            watch = watches[s["name"]]
            hist = watch.history
            firing = lambda now, alert, tenant: any(a[1] == "alert" and a[2] == alert and (tenant is None or a[3] == tenant)
                                                    for a in now)
            # rules for another cadence: measured the same way (the "before" of the rules
            # generated for the interval in use), judged only on their guard
            judge = check if s["matched"] else (lambda ok, what: ok)
            guard = ""
            if not s["matched"]:
                g = [t - s["started"] for t, now in hist if firing(now, "StatuswatchRulesUndersampled", None)]
                check(bool(g) and g[0] <= GUARD_BOUND,
                      f"{s['name']} ({s['scrape']}s scrape, rules for another cadence): StatuswatchRulesUndersampled fired "
                      + (f"{g[0]:.0f} s after Prometheus started" if g else "never") + f" (bound {GUARD_BOUND:.0f} s)")
                guard = f" (guard {g[0]:.0f} s)" if g else " (guard never)"
            lats, gaps, alerted = [], 0, 0
            for name, _, _, alert, tenant, bounds in INCIDENTS:
                bound = bounds.get(s["scrape"], 4.0 * s["scrape"])
                polls = [(t, firing(now, alert, tenant)) for t, now in hist if onset[name] <= t <= ends[name]]
                first = next((t for t, f in polls if f), None)
                lat = first - onset[name] if first is not None else None
                lats.append(lat)
                alerted += lat is not None and lat <= bound
                missing = [t for t, f in polls if first is not None and t >= first and not f]
                gaps += bool(missing)
                judge(lat is not None and lat <= bound,
                      f"{s['name']}: {name} ({tenant}): {alert} fired "
                      + (f"{lat:.1f} s after onset" if lat is not None else "never") + f" (bound {bound:.0f} s)")
                judge(first is not None and not missing,
                      f"{s['name']}: {name}: {alert} kept firing until the incident ended"
                      + (f" (not firing at {len(missing)} polls, first {missing[0] - onset[name]:.0f} s after onset)"
                         if missing else ""))
            false = []
            for t, _, kind, what, tenant, extra in watch.onsets:
                if what in BURN_ALERTS or (not s["matched"] and what in GUARD_ALERTS):
                    continue
                if not any(onset[n] <= t <= ends[n] + SETTLE and explains(n, what, tenant) for n, *_ in INCIDENTS):
                    false.append((round(t - t0), what, tenant, extra))
            for fa in false:
                print(f"  false alert in {s['name']}: t={fa[0]}s {fa[1]} tenant={fa[2]} {fa[3]}")
            judge(not false, f"{s['name']}: no false alert ({len(false)})")
            check(watch.errors < 10, f"{s['name']}: prometheus queries failed {watch.errors} times")
            worst = max((v for v in lats if v is not None), default=None)
            rows.append((s, f"{alerted}/{len(INCIDENTS)}", (f"{worst:.0f} s" if worst is not None else "-") + guard,
                         str(gaps), str(len(false))))

        print()
        print(f"{'prometheus':<10} {'scrape/eval':>11} {'rules for':>10} {'window':>7} {'alerted':>8} "
              f"{'worst onset':>20} {'gaps':>5} {'false':>6}")
        for s, alerted, worst, gaps, false in rows:
            print(f"{s['name']:<10} {str(s['scrape']) + 's/' + str(s['eval']) + 's':>11} "
                  f"{'its own' if s['matched'] else 'other':>10} {s['window']:>6}s {alerted:>8} {worst:>20} {gaps:>5} {false:>6}")
        sent = sum(load.counts.values())
        check(sent > RPS * end * 0.8, f"the load generator sent {sent} requests (target {RPS * end:.0f})")
        for name in [n for n in procs.procs if n.startswith("sw-")]:
            check(procs.alive(name), f"{name} still running at the end")
    finally:
        for w in watches.values():
            w.stop()
        if load:
            load.stop()
        finish_run(procs, tmp, R.failed)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prom", action="append", help="NAME:SCRAPE/EVAL:RULES_SCRAPE/RULES_EVAL (repeatable)")
    a = ap.parse_args()
    run_main(R, "e2e-cadence-replay", run, a.prom or DEFAULT_PROMS)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Fleet replay: do the shipped alerts fire for every incident, and only then, with
one sidecar and with three sidecars behind random spreading?

    STATUSWATCH_BIN=target/release/statuswatch python3 tests/e2e/test_fleet_replay.py

Starts, on loopback and free ports only:
  * `$STATUSWATCH_BIN demo-upstream` (GET /status/{code} answers {code}), the API;
  * fleet "one":   1 statuswatch sidecar;
  * fleet "three": 3 statuswatch sidecars, each request sent to one of them at random;
    every sidecar runs the DEFAULT config (no file; only listen addresses, upstream and
    log level come from STATUSWATCH__* variables);
  * `prometheus` scraping all four every second (one job `statuswatch`, target label
    cluster="one" / cluster="three", so the two fleets share tenant names and must
    never merge), evaluating `deploy/prometheus/rules/statuswatch.rules.yml`
    unmodified, after checking it equals `statuswatch rules --config config/statuswatch.toml`.

Both fleets get the same REV23-like traffic, generated independently: 40 Zipf-distributed
tenants, 50 req/s per fleet, a steady 2 % 5xx background, three low-volume tenants that
fail chronically (30 %), a past-due tenant (70 % 402). Timeline (seconds after the
traffic starts):
    0  background only (warm-up and quiet period: any alert here is false)
  150  big     the largest tenant (~12 req/s) answers 40 % 5xx for 90 s
  165  small   a ~1 req/s tenant answers 40 % 5xx for 90 s
  200  newcomer a tenant never seen before appears at ~1 req/s, 35 % 5xx from its first
               request, for 90 s: judged against the fleet's share (no baseline of its own)
  270  suspend one tenant suspended (451 from then on): its alert, and no wave
  330  wave    three more tenants suspended, 10 s apart: the wave
  390  outage  the API process is stopped for 20 s: the proxies answer 502 to everyone
  440  end
For each fleet and incident it records onset -> firing (polling Prometheus' ALERTS every
second) of the required alert (0 when it is still firing from an earlier incident at the
onset, e.g. the fleet-wide 5xx alert of the large tenant's incident, which may keep
firing up to clear_after + one window after it), and counts every alert that starts firing outside the
incidents that explain it (false alerts; only the SLO burn-rate alerts are exempt). It
does the same for the in-process detector (statuswatch_spike_active of any sidecar).
Prints a table; fails if an incident's Prometheus alert does not fire within 60 s or if
any false Prometheus alert fires. Python standard library only.
Environment: STATUSWATCH_BIN, PROMETHEUS_BIN, E2E_KEEP_TMP=1, REPLAY_SEED (default 11).
"""
import json
import os
import subprocess
import tempfile
import time

from e2e_common import (finish_run, replay_code, run_main, DEFAULT_CONFIG, ROOT, RULES, Load, Procs, Results, Watch, free_port, http_get, log,
                        prometheus_bin, prometheus_config, start_prometheus, wait_until)

FLEETS = {"one": 1, "three": 3}
RPS = 50.0
TENANTS = [f"studio{r:02d}" for r in range(1, 41)]
WEIGHTS = [1.0 / r for r in range(1, 41)]
BIG, SMALL = "studio01", "studio12"          # ~11.7 and ~0.97 req/s
CHRONIC = ["studio30", "studio35", "studio38"]  # ~0.3 req/s, 30 % 5xx all along
PAST_DUE = "studio08"
SUSPEND_ONE = "studio06"
SUSPEND_WAVE = ["studio09", "studio15", "studio25"]
NEWCOMER = "studio99"                        # not in TENANTS: no traffic before its incident
NEWCOMER_RPS = 1.0
BACKGROUND_5XX = 0.02

# (name, onset, duration or None = until the end, description)
INCIDENTS = [
    ("big", 150, 90, f"large tenant {BIG} 40 % 5xx"),
    ("small", 165, 90, f"~1 req/s tenant {SMALL} 40 % 5xx"),
    ("newcomer", 200, 70, f"new ~1 req/s tenant {NEWCOMER} 35 % 5xx from its first request"),
    ("suspend", 270, None, f"one tenant suspended ({SUSPEND_ONE})"),
    ("wave", 330, None, f"three tenants suspended within 20 s ({', '.join(SUSPEND_WAVE)})"),
    ("outage", 390, 20, "upstream down 20 s (502 for everyone)"),
]
END = 440
BOUND = 60.0       # onset -> firing, `for:` included
SETTLE = 90        # an incident explains alerts starting up to this long after it ends
BURN_ALERTS = {"StatuswatchErrorBudgetBurn", "StatuswatchTenantErrorBudgetBurn",
               "StatuswatchErrorBudgetBurnSlow", "StatuswatchTenantErrorBudgetBurnSlow"}


def required(incident):
    """(kind, alertname or signal, tenant) the incident must raise.
    kind 'alert' = Prometheus ALERTS, 'spike' = in-process statuswatch_spike_active."""
    return {
        "big": [("alert", "StatuswatchTenant5xxSpike", BIG), ("spike", "5xx", BIG)],
        "small": [("alert", "StatuswatchTenant5xxSpike", SMALL), ("spike", "5xx", SMALL)],
        "newcomer": [("alert", "StatuswatchTenant5xxSpike", NEWCOMER), ("spike", "5xx", NEWCOMER)],
        "suspend": [("alert", "StatuswatchTenantSuspensionSpike", SUSPEND_ONE),
                    ("spike", "suspended", SUSPEND_ONE)],
        "wave": [("alert", "StatuswatchSuspensionWave", None),
                 ("spike", "suspended", SUSPEND_WAVE[0])],
        "outage": [("alert", "Statuswatch5xxSpike", None), ("spike", "5xx", "__all__")],
    }[incident]


def explains(incident, kind, name, tenant):
    """Whether an alert/spike starting during `incident` (or just after) is explained by it."""
    if incident == "big":
        return (name in ("StatuswatchTenant5xxSpike", "5xx") and tenant == BIG) or \
            name == "Statuswatch5xxSpike" or (kind == "spike" and name == "5xx" and tenant == "__all__")
    if incident in ("small", "newcomer"):
        return name in ("StatuswatchTenant5xxSpike", "5xx") and tenant == (SMALL if incident == "small" else NEWCOMER)
    if incident in ("suspend", "wave"):
        who = [SUSPEND_ONE] if incident == "suspend" else SUSPEND_WAVE
        return (name in ("StatuswatchTenantSuspensionSpike", "suspended") and tenant in who) or \
            name == "StatuswatchSuspensionSpike" or (incident == "wave" and name == "StatuswatchSuspensionWave") or \
            (kind == "spike" and name == "suspended" and tenant == "__all__")
    if incident == "outage":
        return name in ("StatuswatchTenant5xxSpike", "Statuswatch5xxSpike", "5xx")
    return False


R = Results()
check = R.check


def new_load(fleets, seed):
    """The replay's traffic: Zipf rates over TENANTS, chronic and past-due tenants, and
    the newcomer off until its incident."""
    total = sum(WEIGHTS)
    rates = {t: RPS * w / total for t, w in zip(TENANTS, WEIGHTS)}
    rates[NEWCOMER] = NEWCOMER_RPS
    modes = {t: "bg" for t in TENANTS}
    modes[NEWCOMER] = "off"
    for t in CHRONIC:
        modes[t] = "chronic"
    modes[PAST_DUE] = "pastdue"
    return Load(fleets, rates, modes, lambda rng, mode: replay_code(rng, mode, BACKGROUND_5XX), seed)


# The inputs of the spike decision, in the order the rules build them (see the
# rules file's header): printed for every false alert, so a failure says why.
EXPLAIN = [
    ("n", "{scope}:statuswatch_signal_window_requests:increase1m"),
    ("k", "{scope}:statuswatch_signal_events:increase1m"),
    ("N", "{scope}:statuswatch_signal_window_baseline_requests:sum1h"),
    ("B", "{scope}:statuswatch_signal_window_baseline:ratio"),
    ("p0", "{scope}:statuswatch_signal_expected:ratio"),
    ("S", "{scope}:statuswatch_signal:surprise1m"),
    ("Nall", "{scope}:statuswatch_signal_baseline_requests:sum1h"),
    ("Eall", "{scope}:statuswatch_signal_baseline_events:sum1h"),
]


def explain(prom, fleet, tenant, signal, wall, before=90, after=5):
    """Print the decision's inputs for one series from `before` s before `wall` on."""
    scope = "tenant" if tenant else "job"
    sel = f'cluster="{fleet}",signal="{signal}"' + (f',tenant="{tenant}"' if tenant else "")
    series = {}
    for name, rec in EXPLAIN:
        r = prom.try_api("/api/v1/query_range", query=f"{rec.format(scope=scope)}{{{sel}}}",
                         start=f"{wall - before:.3f}", end=f"{wall + after:.3f}", step="1")
        res = r.get("data", {}).get("result") or [] if r.get("status") == "success" else []
        series[name] = {float(ts): float(v) for ts, v in (res[0]["values"] if res else [])}
    stamps = sorted({ts for vals in series.values() for ts in vals})
    print(f"    inputs for {sel} (t relative to the alert; blank = absent):")
    print("    " + f"{'t':>6} " + " ".join(f"{name:>9}" for name, _ in EXPLAIN))
    for ts in stamps[::3]:
        print("    " + f"{ts - wall:6.0f} " + " ".join(
            f"{series[name][ts]:9.3f}" if ts in series[name] else f"{'':>9}" for name, _ in EXPLAIN))


def run():
    tmp = tempfile.mkdtemp(prefix="statuswatch-replay-", dir=os.environ.get("TMPDIR"))
    procs = Procs(tmp)
    load = watch = None
    results = {}
    try:
        sw = os.environ.get("STATUSWATCH_BIN") or os.path.join(ROOT, "target", "release", "statuswatch")
        prom_bin = prometheus_bin()
        if not check(os.access(sw, os.X_OK) and prom_bin, f"statuswatch ({sw}) and prometheus ({prom_bin}) found"):
            return

        # The shipped rules are the generator's output for the default config.
        env = {k: v for k, v in os.environ.items() if not k.startswith("STATUSWATCH")}
        gen = subprocess.run([sw, "rules", "--config", DEFAULT_CONFIG], capture_output=True, text=True, env=env)
        with open(RULES) as f:
            shipped = f.read()
        if not check(gen.returncode == 0 and gen.stdout == shipped,
                     "deploy/prometheus/rules/statuswatch.rules.yml == `statuswatch rules --config config/statuswatch.toml`"):
            print(gen.stderr)
            return

        up_port = free_port()
        upstream_argv = [sw, "demo-upstream", "--listen", f"127.0.0.1:{up_port}"]
        procs.start("upstream", upstream_argv, env=env)
        fleets, targets = {}, {}
        for fleet, n in FLEETS.items():
            fleets[fleet], targets[fleet] = [], []
            for i in range(n):
                pp, ap = free_port(), free_port()
                e = dict(env, STATUSWATCH__PROXY__LISTEN=f"127.0.0.1:{pp}",
                         STATUSWATCH__ADMIN__LISTEN=f"127.0.0.1:{ap}",
                         STATUSWATCH__PROXY__UPSTREAM=f"127.0.0.1:{up_port}",
                         STATUSWATCH__PROXY__GRACE_PERIOD="1s", STATUSWATCH__PROXY__SHUTDOWN_TIMEOUT="1s",
                         STATUSWATCH__LOG__LEVEL="warn")
                procs.start(f"sw-{fleet}-{i}", [sw], env=e)
                fleets[fleet].append(pp)
                targets[fleet].append(f"127.0.0.1:{ap}")
        all_admin = [a for ts in targets.values() for a in ts]
        ok = wait_until(lambda: all(http_get(f"http://{a}/readyz")[0] == 200 for a in all_admin)
                        and http_get(f"http://127.0.0.1:{up_port}/status/200")[0] == 200, 30)
        if not check(ok, f"upstream and {len(all_admin)} sidecars ready"):
            for name in procs.procs:
                print(procs.tail(name))
            return

        prom = start_prometheus(procs, prometheus_config(
            [{"targets": ts, "labels": {"cluster": fleet}} for fleet, ts in targets.items()], rule_files=[RULES]),
            prom_bin, data_dir="prom", log_level="warn")

        def all_up():
            res = prom.result('up{job="statuswatch"} == 1')
            return res is not None and len(res) == len(all_admin)

        if not check(wait_until(all_up, 60), f"prometheus scrapes all {len(all_admin)} sidecars"):
            print(procs.tail("prometheus"))
            return
        rules = prom.rules() or []
        bad = [r["name"] for r in rules if r.get("health") == "err"]
        check(rules and not bad, f"prometheus loaded the shipped rules ({len(rules)} rules)"
              + (f", unhealthy: {bad}" if bad else ""))

        seed = int(os.environ.get("REPLAY_SEED", "11"))
        load = new_load(fleets, seed)
        watch = Watch(prom)
        t0 = time.monotonic()
        load.start()
        watch.start()
        log(f"traffic: {RPS:g} req/s per fleet over {len(TENANTS)} Zipf tenants; timeline {END} s")

        def at(sec):
            time.sleep(max(0.0, t0 + sec - time.monotonic()))

        onset = {}
        at(150)
        onset["big"] = time.monotonic()
        log(f"big: {BIG} 40 % 5xx")
        load.set(BIG, "5xx40")
        at(165)
        onset["small"] = time.monotonic()
        log(f"small: {SMALL} 40 % 5xx")
        load.set(SMALL, "5xx40")
        at(200)
        onset["newcomer"] = time.monotonic()
        log(f"newcomer: {NEWCOMER} appears, 35 % 5xx")
        load.set(NEWCOMER, "5xx35")
        at(240)
        load.set(BIG, "bg")
        at(255)
        load.set(SMALL, "bg")
        at(270)
        load.set(NEWCOMER, "off")
        onset["suspend"] = time.monotonic()
        log(f"suspend: {SUSPEND_ONE} answers 451")
        load.set(SUSPEND_ONE, "451")
        at(330)
        onset["wave"] = time.monotonic()
        for i, t in enumerate(SUSPEND_WAVE):
            at(330 + 10 * i)
            log(f"wave: {t} answers 451")
            load.set(t, "451")
        at(390)
        onset["outage"] = time.monotonic()
        log("outage: stopping the upstream")
        procs.stop("upstream", timeout=5)
        at(410)
        procs.start("upstream", upstream_argv, env=env)
        log("outage over: upstream restarted")
        check(wait_until(lambda: http_get(f"http://127.0.0.1:{up_port}/status/200")[0] == 200, 10),
              "upstream back after the outage")
        at(END)
        watch.stop()
        load.stop()

        # ---- evaluate -----------------------------------------------------------------
        ends = {name: (onset[name] + dur if dur else t0 + END) for name, _, dur, _ in INCIDENTS}
        for fleet in FLEETS:
            for kind in ("alert", "spike"):
                res = results.setdefault((fleet, kind), {"lat": {}, "false": []})
                evs = [o for o in watch.onsets if o[1] == fleet and o[2] == kind]
                for name, _, _, _ in INCIDENTS:
                    for k, what, tenant in required(name):
                        if k != kind:
                            continue
                        # the first poll at or after the onset where it is firing
                        hits = [t - onset[name] for t, now in watch.history if t >= onset[name]
                                and any(a[0] == fleet and a[1] == kind and a[2] == what
                                        and (tenant is None or a[3] == tenant) for a in now)]
                        res["lat"][name] = min(hits) if hits else None
                for t, _, _, what, tenant, extra in evs:
                    if kind == "alert" and what in BURN_ALERTS:
                        continue
                    ok = any(onset[n] <= t <= ends[n] + SETTLE and explains(n, kind, what, tenant)
                             for n, _, _, _ in INCIDENTS)
                    if not ok:
                        res["false"].append((round(t - t0), what, tenant, extra, watch.wall.get(t)))

        # ---- report -------------------------------------------------------------------
        print()
        print("onset -> firing (s); '-' = did not fire within the replay")
        header = f"{'incident':<58} " + " ".join(f"{f'{k} x{FLEETS[f]}':>16}" for f in FLEETS for k in ("prometheus", "in-process"))
        print(header)
        for name, start, dur, desc in INCIDENTS:
            cells = []
            for f in FLEETS:
                for kind in ("alert", "spike"):
                    v = results[(f, kind)]["lat"].get(name)
                    cells.append(f"{v:16.1f}" if v is not None else f"{'-':>16}")
            alert_name = required(name)[0][1]
            print(f"{desc + ' [' + alert_name + ']':<58} " + " ".join(cells))
        cells = [f"{len(results[(f, k)]['false']):16d}" for f in FLEETS for k in ("alert", "spike")]
        print(f"{'false alerts (outside incidents; burn-rate alerts exempt)':<58} " + " ".join(cells))
        burns = sorted({(o[1], o[3]) for o in watch.onsets if o[2] == "alert" and o[3] in BURN_ALERTS})
        print(f"SLO burn-rate alerts that fired (exempt): {burns or 'none'}")
        for f in FLEETS:
            for kind in ("alert", "spike"):
                for fa in results[(f, kind)]["false"]:
                    print(f"  false {kind} in fleet {f}: t={fa[0]}s {fa[1]} tenant={fa[2]} {fa[3]}")
                    if kind == "alert" and fa[4] is not None:
                        labels = json.loads(fa[3])
                        explain(prom, f, labels.get("tenant"), labels.get("signal", "5xx"), fa[4])
        print()
        for f in FLEETS:
            for name, _, _, desc in INCIDENTS:
                v = results[(f, "alert")]["lat"].get(name)
                check(v is not None and v <= BOUND,
                      f"fleet {f} (x{FLEETS[f]}): {desc}: {required(name)[0][1]} fired "
                      + (f"{v:.1f} s after onset" if v is not None else "never") + f" (bound {BOUND:.0f} s)")
            fa = results[(f, "alert")]["false"]
            check(not fa, f"fleet {f} (x{FLEETS[f]}): no false Prometheus alert ({len(fa)})")
            wave_before = [o for o in watch.onsets if o[1] == f and o[3] == "StatuswatchSuspensionWave"
                           and o[0] < onset["wave"]]
            check(not wave_before, f"fleet {f}: one suspended tenant did not fire StatuswatchSuspensionWave")
        total = sum(load.counts.values())
        errors = sum(n for (fl, code, got), n in load.counts.items() if got == "error")
        check(total > RPS * len(FLEETS) * END * 0.8,
              f"the load generator sent {total} requests (target {RPS * len(FLEETS) * END:.0f}); {errors} transport errors")
        for name in [n for n in procs.procs if n.startswith("sw-")]:
            check(procs.alive(name), f"{name} still running at the end")
        check(watch.errors < 10, f"prometheus queries failed {watch.errors} times")
    finally:
        if watch:
            watch.stop()
        if load:
            load.stop()
        finish_run(procs, tmp, R.failed)

def main():
    run_main(R, "e2e-fleet-replay", run)

if __name__ == "__main__":
    main()

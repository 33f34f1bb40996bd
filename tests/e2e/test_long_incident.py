#!/usr/bin/env python3
"""Long incidents: an incident lasting 4 baselines keeps its alert firing from onset to end,
with no gap, in Prometheus and in process, and both clear soon after it ends.

    STATUSWATCH_BIN=target/release/statuswatch python3 tests/e2e/test_long_incident.py

Time-compressed config (a test config; the rules are generated from it with
`statuswatch rules --config`): short window 10 s, baseline 1 min, clear_after 10 s.
Starts, on loopback and free ports only, `statuswatch demo-upstream`, one statuswatch
sidecar with that config, and `prometheus` (scrape and evaluate every second) with the
generated rules. Traffic: tenant "longrun" at ~6 req/s and "steady" at ~6 req/s, 2 % 5xx;
after a warm-up of 2 baselines, "longrun" answers 35 % 5xx for 4 baselines (240 s), then
2 % again. Polls every second:
  * Prometheus: ALERTS{alertname="StatuswatchTenant5xxSpike", tenant="longrun"} firing;
  * in process: statuswatch_spike_active{signal="5xx", tenant="longrun"} (as scraped).
Checks, for both: firing within 60 s of onset (`for:` included), never off between first
firing and the end, off within clear_after + one window after the end (+3 s for scrape,
evaluation and polling), and no alert for "steady" nor before the onset.
With the rules before the baseline freeze, the Prometheus alert resolved after about one
baseline while the incident went on.
Python standard library only. Prints `e2e-long-incident: N passed, M failed`.
"""
import http.client
import os
import random
import subprocess
import tempfile
import threading
import time

from e2e_common import (finish_run, run_main, ROOT, Procs, Results, free_port, http_get, log, prometheus_bin,
                        prometheus_config, start_prometheus, wait_until, write)

WINDOW, BASELINE, CLEAR = 10, 60, 10
WARMUP = 2 * BASELINE
INCIDENT = 4 * BASELINE
AFTER = 60
RPS = 6.0
SLACK = 3

# Prometheus scrapes and evaluates every second here: the rules' 10 s window
# then holds 10 samples (generated for a 15 s scrape they would be 1 minute).
CONFIG = f"""
[prometheus]
scrape_interval = "1s"
evaluation_interval = "1s"

[detector]
short_window = "{WINDOW}s"
baseline_half_life = "{BASELINE}s"
clear_after = "{CLEAR}s"
"""

R = Results()
check = R.check


class Load(threading.Thread):
    def __init__(self, port, seed=5):
        super().__init__(daemon=True)
        self.port, self.rng = port, random.Random(seed)
        self.share = {"longrun": 0.02, "steady": 0.02}
        self.stop_ev = threading.Event()
        self.sent = 0

    def run(self):
        conn = None
        step = 1.0 / (RPS * len(self.share))
        nxt = time.monotonic()
        while not self.stop_ev.is_set():
            for tenant, share in list(self.share.items()):
                code = 500 if self.rng.random() < share else 200
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                    conn.request("GET", f"/status/{code}", headers={"X-Tenant-Name": tenant})
                    conn.getresponse().read()
                    self.sent += 1
                except (OSError, http.client.HTTPException):
                    conn = None
                nxt += step
                time.sleep(max(0.0, nxt - time.monotonic()))


def run():
    tmp = tempfile.mkdtemp(prefix="statuswatch-long-", dir=os.environ.get("TMPDIR"))
    procs = Procs(tmp)
    load = None
    try:
        sw = os.environ.get("STATUSWATCH_BIN") or os.path.join(ROOT, "target", "release", "statuswatch")
        prom_bin = prometheus_bin()
        if not check(os.access(sw, os.X_OK) and prom_bin, "statuswatch and prometheus found"):
            return
        env = {k: v for k, v in os.environ.items() if not k.startswith("STATUSWATCH")}
        cfg = os.path.join(tmp, "statuswatch.toml")
        write(cfg, CONFIG)
        rules = os.path.join(tmp, "rules.yml")
        gen = subprocess.run([sw, "rules", "--config", cfg], capture_output=True, text=True, env=env)
        if not check(gen.returncode == 0, "statuswatch rules --config <compressed config>"):
            print(gen.stderr)
            return
        write(rules, gen.stdout)

        up, pp, ap = free_port(), free_port(), free_port()
        procs.start("upstream", [sw, "demo-upstream", "--listen", f"127.0.0.1:{up}"], env=env)
        procs.start("statuswatch", [sw, "--config", cfg], env=dict(
            env, STATUSWATCH__PROXY__LISTEN=f"127.0.0.1:{pp}", STATUSWATCH__ADMIN__LISTEN=f"127.0.0.1:{ap}",
            STATUSWATCH__PROXY__UPSTREAM=f"127.0.0.1:{up}", STATUSWATCH__LOG__LEVEL="warn"))
        ok = wait_until(lambda: http_get(f"http://127.0.0.1:{ap}/readyz")[0] == 200, 30)
        if not check(ok, "upstream and sidecar ready"):
            print(procs.tail("statuswatch"))
            return
        prom = start_prometheus(procs, prometheus_config([{"targets": [f"127.0.0.1:{ap}"]}], rule_files=[rules]),
                                prom_bin, data_dir="prom", log_level="warn")
        if not check(wait_until(lambda: (prom.result('up{job="statuswatch"} == 1') or []) != [], 60),
                     "prometheus scrapes the sidecar"):
            print(procs.tail("prometheus"))
            return
        bad = [r["name"] for r in (prom.rules() or []) if r.get("health") == "err"]
        check(not bad, f"the generated rules evaluate without errors{': ' + str(bad) if bad else ''}")

        load = Load(pp)
        load.start()
        t0 = time.monotonic()
        onset, end = t0 + WARMUP, t0 + WARMUP + INCIDENT
        samples = []  # (t, prometheus firing, in-process active, steady alerted)
        switched = ended = False
        while time.monotonic() < end + AFTER:
            now = time.monotonic()
            if not switched and now >= onset:
                load.share["longrun"] = 0.35
                switched = True
                log("incident: longrun answers 35 % 5xx")
            if not ended and now >= end:
                load.share["longrun"] = 0.02
                ended = True
                log("incident over")
            alerts = prom.result('ALERTS{alertname="StatuswatchTenant5xxSpike",alertstate="firing"}') or []
            fired = any(a["metric"].get("tenant") == "longrun" for a in alerts)
            # (the fleet-wide Statuswatch5xxSpike may fire: longrun is half the traffic)
            steady = any(a["metric"].get("tenant") != "longrun" for a in alerts)
            active = bool(prom.result('statuswatch_spike_active{signal="5xx",tenant="longrun"} == 1'))
            samples.append((now, fired, active, steady))
            time.sleep(max(0.0, 1.0 - (time.monotonic() - now)))
        load.stop_ev.set()

        for idx, what in ((1, "prometheus StatuswatchTenant5xxSpike"), (2, "in-process statuswatch_spike_active")):
            before = [s for s in samples if s[0] < onset and s[idx]]
            check(not before, f"{what}: silent before the onset ({len(before)} samples firing)")
            first = next((s[0] for s in samples if s[0] >= onset and s[idx]), None)
            check(first is not None and first - onset <= 60,
                  f"{what}: fired {first - onset:.1f} s after onset" if first else f"{what}: never fired")
            if first is None:
                continue
            gaps = [round(s[0] - onset) for s in samples if first <= s[0] < end and not s[idx]]
            check(not gaps, f"{what}: firing without a gap until the end of a {INCIDENT} s incident "
                            f"(4 baselines){'; off at ' + str(gaps[:10]) + ' s after onset' if gaps else ''}")
            off = next((s[0] for s in samples if s[0] >= end and not s[idx]), None)
            bound = CLEAR + WINDOW + SLACK
            check(off is not None and off - end <= bound,
                  f"{what}: cleared {off - end:.1f} s after the end (bound {bound} s)" if off
                  else f"{what}: still firing {AFTER} s after the end")
        noise = [round(s[0] - t0) for s in samples if s[3]]
        check(not noise, f"no 5xx spike alert for the steady tenant{': at ' + str(noise[:10]) if noise else ''}")
        check(load.sent > RPS * 2 * (WARMUP + INCIDENT) * 0.7, f"the load sent {load.sent} requests")
        check(procs.alive("statuswatch"), "statuswatch still running")
    finally:
        if load:
            load.stop_ev.set()
        finish_run(procs, tmp, R.failed)

def main():
    run_main(R, "e2e-long-incident", run)

if __name__ == "__main__":
    main()

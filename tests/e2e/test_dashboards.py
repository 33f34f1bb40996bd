#!/usr/bin/env python3
"""End-to-end check of the Grafana dashboards against a real Prometheus.

Starts `$STATUSWATCH_BIN demo` (demo upstream + proxy + traffic generator) on free
loopback ports, once per per-tenant latency mode (tenant.latency = "slow", the default,
"summary", "histogram" and "off"), starts Prometheus (the Debian `prometheus` binary, or
$PROMETHEUS_BIN) scraping their admin listeners every second as job "statuswatch" (with
cluster and namespace labels, as in Kubernetes), waits for a few scrapes, then, for each
mode with $instance set to that mode's sidecar, runs every target of every
dashboards/*.json panel through Prometheus's HTTP API with the Grafana variables
substituted:
  - the instant query (/api/v1/query) must succeed, and for stat/table panels return data;
  - time series panels also run /api/v1/query_range, which must succeed and return data;
  - every {{label}} of a target's legendFormat must be present on the returned series;
  - template variable queries (label_values) must return values.
Panels that are empty by design when all is well are listed in ALLOWED_EMPTY with the
reason; they must still parse. Targets that are empty by design in a latency mode are
listed in MODE_EMPTY: in that mode they must be empty (data there would be a wrong
reading, e.g. a 0 % slow share where nothing measures it), and the panel's description
must say so, naming the mode ("slow", ...) and the word "empty". Once a sidecar has
per-tenant spike onsets, "Spike onsets in the time range" must list every one of their
series (each is created at its first onset, at 1, so a plain increase() misses it).
Before querying, the test waits (bounded, 120 s) for the demo's scripted incident to make a tenant spike and then drills into that tenant, so the
spike panels are usually checked with data too. Queries that are empty but expected to
have data are retried until a deadline.
Env: STATUSWATCH_E2E_SPIKE_WAIT, STATUSWATCH_E2E_DATA_DEADLINE (seconds), PROMETHEUS_BIN.

  STATUSWATCH_BIN=target/release/statuswatch python3 tests/e2e/test_dashboards.py
  python3 tests/e2e/test_dashboards.py --fake   # no binary: serve tests/e2e/fixtures/metrics_sample.prom
  STATUSWATCH_DASHBOARDS=DIR overrides the dashboards directory (default: dashboards/).

stdlib only. Last line: e2e-dashboards: N passed, M failed (exit status 1 if M > 0).
"""
import glob
import http.server
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time

from e2e_common import (ROOT, Procs, Results, free_port, http_get, http_get_or_raise, prometheus_config,
                        promtool_check_metrics, start_prometheus, wait_for)

HERE = os.path.dirname(os.path.abspath(__file__))
DASHBOARDS = os.path.join(ROOT, "dashboards")
FIXTURE = os.path.join(HERE, "fixtures", "metrics_sample.prom")
RESERVED = {"__none__", "__invalid__", "__overflow__", "__all__"}
RATE_INTERVAL = "1m"
RANGE_QUERY_SPAN = 120      # seconds of history for query_range
STEP = "2s"
SPIKE_WAIT = int(os.environ.get("STATUSWATCH_E2E_SPIKE_WAIT", "120"))  # seconds to wait for a tenant spike
WAIT_SCRAPES = 10           # scrapes before the first round of queries
DATA_DEADLINE = int(os.environ.get("STATUSWATCH_E2E_DATA_DEADLINE", "120"))  # seconds for late data

# (dashboard uid, panel title) -> why the panel may be empty when all is well.
ALLOWED_EMPTY = {
    ("statuswatch-overview", "Currently spiking tenants"):
        "per-tenant statuswatch_spike_active series exist only while a tenant spikes; empty means nobody spikes",
    ("statuswatch-overview", "Spike onsets"):
        "shows only increases of statuswatch_spikes_total (> 0); empty when no spike started in the window",
    ("statuswatch-overview", "Spike onsets in the time range"):
        "lists only tenants with at least one spike onset in the range; empty when nothing spiked",
    ("statuswatch-overview", "Suspended tenants"):
        "statuswatch_tenant_suspended has series only for currently suspended tenants; empty when none is",
    ("statuswatch-tenant", "Signal ratios (while spiking)"):
        "per-tenant statuswatch_signal_ratio series exist only while the tenant spikes",
    ("statuswatch-tenant", "Spike onsets"):
        "shows only increases of this tenant's statuswatch_spikes_total (> 0); empty when it did not spike",
}

# Per-tenant latency modes (tenant.latency); the first is the default.
MODES = ("slow", "summary", "histogram", "off")
ALL_REFS = None
# (dashboard uid, panel title) -> {mode: refIds empty by design in that mode (ALL_REFS = every target)}
MODE_EMPTY = {
    ("statuswatch-overview", "Slowest tenants (p95, histogram mode)"):
        {"slow": ALL_REFS, "summary": ALL_REFS, "off": ALL_REFS},
    ("statuswatch-overview", "Tenants with the largest slow share"):
        {"summary": ALL_REFS, "histogram": ALL_REFS, "off": ALL_REFS},
    ("statuswatch-tenant", "Slow requests (share over the latency objective)"):
        {"summary": ALL_REFS, "histogram": ALL_REFS, "off": ALL_REFS},
    ("statuswatch-tenant", "Latency objective"):
        {"summary": ALL_REFS, "histogram": ALL_REFS, "off": ALL_REFS},
    ("statuswatch-tenant", "Latency quantiles and mean"):
        {"slow": ALL_REFS, "summary": {"A", "B", "C"}, "off": ALL_REFS},
    ("statuswatch-tenant", "p95: this tenant vs all tenants"):
        {"slow": ALL_REFS, "summary": ALL_REFS, "off": ALL_REFS},
    ("statuswatch-tenant", "Responses within 100 ms and 500 ms"):
        {"slow": ALL_REFS, "summary": ALL_REFS, "off": ALL_REFS},
}
# Empty when no tenant spiked; once one did, they must show its onset.
ONSET_PANELS = {("statuswatch-overview", "Spike onsets in the time range")}


def empty_by_mode(uid, panel, ref, mode):
    modes = MODE_EMPTY.get((uid, panel.get("title")), {})
    if mode not in modes:
        return False
    return modes[mode] is ALL_REFS or ref in modes[mode]


def check_mode_descriptions(dashboards):
    """A panel empty in some mode says so in its description, naming each such mode."""
    panels = {(d["uid"], p.get("title")): p for d in dashboards for p in all_panels(d.get("panels"))}
    for key, modes in sorted(MODE_EMPTY.items()):
        p = panels.get(key)
        if not report(p is not None, f"{key[0]} / {key[1]}: panel exists (MODE_EMPTY)"):
            continue
        text = f"{p.get('title', '')} {p.get('description', '')}"
        missing = [m for m in modes if f'"{m}"' not in text]
        ok = not missing and "empty" in text.lower()
        report(ok, f"{key[0]} / {key[1]}: description says it is empty with tenant.latency = "
               + ", ".join(f'"{m}"' for m in modes), f"does not name {missing}" if missing else "")


R = Results()
report = R.report


class FakeMetrics:
    """Serves the fixture exposition; counters grow with each scrape so rates are non-zero."""
    COUNTER = re.compile(r"^(statuswatch_\w+?(_total|_bucket|_sum|_count))(\{.*\})?\s+(\S+)$")

    def __init__(self, path, port):
        with open(path) as f:
            lines = f.read().splitlines()
        n = [0]

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path != "/metrics":
                    self.send_error(404)
                    return
                n[0] += 1
                out = []
                for line in lines:
                    m = FakeMetrics.COUNTER.match(line)
                    if m and not line.startswith("#"):
                        v = float(m.group(4)) * n[0]
                        line = f"{m.group(1)}{m.group(3) or ''} {v:g}"
                    out.append(line)
                body = ("\n".join(out) + "\n").encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def all_panels(panels):
    for p in panels or []:
        yield p
        if p.get("type") == "row":
            yield from all_panels(p.get("panels"))


def substitute(expr, tenant, range_s, instance=".*"):
    subs = {"${datasource}": "prometheus", "$datasource": "prometheus",
            "${__rate_interval}": RATE_INTERVAL, "$__rate_interval": RATE_INTERVAL,
            "${__range}": f"{range_s}s", "$__range": f"{range_s}s", "${__interval}": STEP, "$__interval": STEP,
            "${cluster}": ".*", "$cluster": ".*", "${namespace}": ".*", "$namespace": ".*",
            "${job}": "statuswatch", "$job": "statuswatch", "${instance}": instance, "$instance": instance,
            "${tenant}": tenant, "$tenant": tenant}
    for k in sorted(subs, key=len, reverse=True):
        expr = expr.replace(k, subs[k])
    return expr


def pick_tenant(prom):
    """A real tenant with traffic, preferring one that is spiking, then one with 5xx, then the busiest."""
    r = prom.api("/api/v1/label/tenant/values", **{"match[]": 'statuswatch_responses_total{job="statuswatch"}'})
    tenants = [t for t in r.get("data") or [] if t not in RESERVED]
    if not tenants:
        return None, "no non-reserved tenant in statuswatch_responses_total"
    for expr, why in (('max by (tenant) (statuswatch_spike_active{job="statuswatch",tenant!="__all__"}) == 1', "spiking"),
                      (f'sum by (tenant) (rate(statuswatch_responses_total{{job="statuswatch",class="5xx"}}[{RATE_INTERVAL}])) > 0', "has 5xx"),
                      (f'sum by (tenant) (rate(statuswatch_responses_total{{job="statuswatch"}}[{RATE_INTERVAL}]))', "busiest")):
        res = prom.query(f"sort_desc({expr})").get("data", {}).get("result") or []
        for s in res:
            t = s["metric"].get("tenant")
            if t in tenants:
                return t, why
    return tenants[0], "first"


def legend_labels(legend):
    return set(re.findall(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}", legend or ""))


def run_target(prom, uid, panel, t, tenant, range_s, instance):
    """(parse_ok, has_data, detail, series) for one target."""
    expr = substitute(t.get("expr", ""), tenant, range_s, instance)
    now = time.time()
    inst = prom.query(expr, now)
    if inst.get("status") != "success":
        return False, False, f"instant query failed: {inst.get('error')} :: {expr}", 0
    result = inst["data"]["result"]
    kind = panel.get("type")
    if kind == "timeseries" and not t.get("instant"):
        rng = prom.query_range(expr, now - RANGE_QUERY_SPAN, now, STEP)
        if rng.get("status") != "success":
            return False, False, f"range query failed: {rng.get('error')} :: {expr}", 0
        result = rng["data"]["result"]
    if not result:
        return True, False, f"no data :: {expr}", 0
    want = legend_labels(t.get("legendFormat"))
    missing = sorted({lbl for s in result for lbl in want if lbl not in s.get("metric", {})})
    if missing:
        return False, True, f"legend labels {missing} missing from the result :: {expr}", len(result)
    return True, True, f"{len(result)} series", len(result)


def check_variables(prom, d):
    for v in (d.get("templating") or {}).get("list") or []:
        if v.get("type") != "query":
            continue
        q = v.get("definition") or (v.get("query") or {}).get("query")
        m = re.fullmatch(r"\s*label_values\((.*),\s*([A-Za-z_]\w*)\s*\)\s*", q or "")
        name = f"{d['uid']} variable ${v['name']}"
        if not m:
            report(False, name, f"unsupported variable query {q!r}")
            continue
        sel = substitute(m.group(1), "", 0)
        r = prom.api(f"/api/v1/label/{m.group(2)}/values", **{"match[]": sel})
        vals = r.get("data") or []
        report(r.get("status") == "success" and bool(vals), name,
               f"{len(vals)} values {vals[:6]}" if vals else f"no values for {q} ({r.get('error', '')})")


def start_statuswatch(bin_path, procs, mode):
    port, admin, upstream = free_port(), free_port(), free_port()
    env = dict(os.environ, STATUSWATCH__TENANT__LATENCY=mode)
    procs.start(f"statuswatch-demo-{mode}", [bin_path, "demo", "--listen", f"127.0.0.1:{port}",
                                             "--admin-listen", f"127.0.0.1:{admin}",
                                             "--upstream-listen", f"127.0.0.1:{upstream}"], env=env)
    return admin


def main():
    fake_mode = "--fake" in sys.argv[1:]
    bin_path = os.environ.get("STATUSWATCH_BIN")
    if not fake_mode and not bin_path:
        report(False, "setup", "set STATUSWATCH_BIN to the statuswatch binary (or pass --fake)")
        print(f"e2e-dashboards: {R.passed} passed, {R.failed} failed")
        return 1
    dash_dir = os.environ.get("STATUSWATCH_DASHBOARDS", DASHBOARDS)
    dashboards = []
    for f in sorted(glob.glob(os.path.join(dash_dir, "*.json"))):
        with open(f) as fh:
            dashboards.append(json.load(fh))
    workdir = tempfile.mkdtemp(prefix="statuswatch-e2e-dash-")
    procs, fake = Procs(workdir), None
    try:
        if fake_mode:
            admin = free_port()
            fake = FakeMetrics(FIXTURE, admin)
            print(f"serving fake /metrics from {FIXTURE} on 127.0.0.1:{admin}", flush=True)
            admins = {"fixture": admin}
        else:
            admins = {mode: start_statuswatch(bin_path, procs, mode) for mode in MODES}
        watch = procs.items()
        for admin in admins.values():
            wait_for("statuswatch /metrics",
                     lambda: http_get_or_raise(f"http://127.0.0.1:{admin}/metrics")[0] == 200, 60, watch)
        report(True, f"statuswatch /metrics answers ({', '.join(admins)})")
        if not dashboards:
            report(False, "dashboards found", f"no *.json in {dash_dir}")
        # as the PodMonitor / pod discovery would label it, so the $cluster and $namespace
        # variables have values
        prom = start_prometheus(procs, prometheus_config(
            [{"targets": [f"127.0.0.1:{a}" for a in admins.values()],
              "labels": {"cluster": "e2e", "namespace": "statuswatch"}}],
            scrape_timeout="900ms"), data_dir="tsdb", log_level="warn")
        watch = procs.items()
        wait_for("prometheus ready", lambda: http_get_or_raise(f"{prom.base}/-/ready")[0] == 200, 60, watch)
        started = time.time()
        wait_for(f"{WAIT_SCRAPES} successful scrapes of each sidecar",
                 lambda: (prom.scalar(f'min(sum_over_time(up{{job="statuswatch"}}[10m]))') or 0) >= WAIT_SCRAPES
                 and (prom.scalar('count(up{job="statuswatch"})') or 0) == len(admins), 60, watch)
        report(True, f"prometheus scraped statuswatch {WAIT_SCRAPES} times")
        # The demo's scripted incidents make a tenant spike within about a minute; wait for one
        # (bounded) so the spike panels are checked with data too. Without one the test goes on:
        # those panels are in ALLOWED_EMPTY.
        try:
            wait_for("a tenant spike", lambda: prom.scalar(
                'count(statuswatch_spike_active{job="statuswatch",tenant!="__all__"} == 1)'), SPIKE_WAIT, watch)
            print("a tenant is spiking", flush=True)
            # and a per-tenant onset series on every sidecar, so the onset panels are
            # checked against a series created at its first onset in each mode
            wait_for("a per-tenant onset on every sidecar", lambda: (prom.scalar(
                'count(count by (instance) (statuswatch_spikes_total{job="statuswatch",tenant!="__all__"}))')
                or 0) >= len(admins), SPIKE_WAIT, watch)
            print("every sidecar has a per-tenant spike onset", flush=True)
        except RuntimeError as e:
            if any(p.poll() is not None for _, p in watch):
                raise
            print(f"note: {e}; spike panels may be empty", flush=True)
        tenant, why = pick_tenant(prom)
        if not report(tenant is not None, "pick a tenant with traffic", f"{tenant} ({why})"):
            tenant = "no-tenant"

        for d in dashboards:
            check_variables(prom, d)
        if not fake_mode:
            check_mode_descriptions(dashboards)

        todo = []
        for mode, admin in admins.items():
            instance = f"127.0.0.1:{admin}"
            onsets = prom.scalar(f'count(statuswatch_spikes_total{{job="statuswatch",instance="{instance}",'
                                 f'tenant!="__all__"}})') or 0
            for d in dashboards:
                for p in all_panels(d.get("panels")):
                    if p.get("type") == "row":
                        continue
                    for t in p.get("targets") or []:
                        todo.append((mode, instance, onsets, d["uid"], p, t))
        deadline = time.monotonic() + DATA_DEADLINE
        pending = todo
        while True:
            range_s = int(time.time() - started) + 60
            retry = []
            for mode, instance, onsets, uid, p, t in pending:
                name = f"[{mode}] {uid} / {p.get('title')} / {t.get('refId')}"
                if (uid, p.get("title")) in ONSET_PANELS:
                    # counted now, beside the panel's query: every onset series with an onset
                    # (tenant="__all__" too, which existed from 0) must be a row
                    onsets = prom.scalar(f'count(statuswatch_spikes_total{{job="statuswatch",instance="{instance}"}} > 0)'
                                         ' and on () count(statuswatch_spikes_total{job="statuswatch",'
                                         f'instance="{instance}",tenant!="__all__"}})') or 0
                ok, has_data, detail, n = run_target(prom, uid, p, t, tenant, range_s, instance)
                allowed = ALLOWED_EMPTY.get((uid, p.get("title")))
                if (uid, p.get("title")) in ONSET_PANELS and onsets:
                    # Every per-tenant onset series was created within the range (the scrapes
                    # started with the test), at 1: the table must list each onset series.
                    allowed = None
                    if ok and has_data and n < onsets:
                        ok, detail = False, f"{n} rows for {onsets:g} onset series: " \
                                            f"a series created at its first onset is not counted :: {detail}"
                if not ok:
                    report(False, name, detail)
                elif empty_by_mode(uid, p, t.get("refId"), mode):
                    report(not has_data, name, f"empty with tenant.latency = \"{mode}\", as declared"
                           if not has_data else f"has data, but MODE_EMPTY says it is empty in this mode: {detail}")
                elif has_data:
                    report(True, name, detail)
                elif allowed:
                    report(True, name, f"empty, allowed: {allowed}")
                else:
                    retry.append((mode, instance, onsets, uid, p, t, name, detail))
            if not retry:
                break
            if time.monotonic() >= deadline or any(p.poll() is not None for _, p in watch):
                for *_, name, detail in retry:
                    report(False, name, detail)
                break
            print(f"... {len(retry)} queries without data yet, retrying", flush=True)
            time.sleep(5)
            pending = [r[:6] for r in retry]
        # the live scrape, after minutes of demo traffic and (usually) a spike, must be a
        # clean exposition for promtool
        for mode, admin in admins.items():
            st, metrics = http_get(f"http://127.0.0.1:{admin}/metrics")
            ok, detail = promtool_check_metrics(metrics if st == 200 else "")
            report(st == 200 and ok, f"[{mode}] promtool check metrics on the live /metrics scrape", detail)
        for n, p in watch:
            report(p.poll() is None, f"{n} still running at the end")
    except Exception as e:  # noqa: BLE001 - report any setup failure as a failed check
        report(False, "setup", f"{type(e).__name__}: {e}")
        for name, _ in procs.items():
            print(f"--- last lines of {name} log ---\n{procs.tail(name, 30)}", flush=True)
    finally:
        procs.stop_all()
        if fake:
            fake.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"e2e-dashboards: {R.passed} passed, {R.failed} failed")
    return 1 if R.failed else 0


if __name__ == "__main__":
    sys.exit(main())

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
must say so, naming the mode ("slow", ...) and the word "empty". Targets in EMPTY_WHILE may be
empty only while a query over the rules' own series says there is nothing to show (the overall
expected share while the overall series is still cold). Once a sidecar has
per-tenant spike onsets, "Spike onsets in the time range" must list every one of their
series (each is created at its first onset, at 1, so a plain increase() misses it).
Before querying, the test waits (bounded, 120 s) for the demo's scripted incident to make a tenant spike and then drills into that tenant, so the
spike panels are usually checked with data too. Queries that are empty but expected to
have data are retried until a deadline.

Fleet scenario, in the same run and the same Prometheus (started with the demo sidecars, so
its warm-up overlaps the checks above): `statuswatch demo-upstream` and 3 statuswatch sidecars
on the DEFAULT config, REV23-like traffic (30 Zipf tenants, 40 req/s in all, 2 % 5xx, a past-due tenant) sent to a
random sidecar, scraped every second as job "fleet-statuswatch" (cluster/namespace labels), with
Prometheus evaluating deploy/prometheus/rules/statuswatch.rules.yml unmodified (the demo job is
evaluated too). After the warm-up (150 s of traffic, as the fleet replay; the overall series must
not be cold) one mid-size tenant answers 40 % 5xx; once
ALERTS{alertname="StatuswatchTenant5xxSpike",alertstate="firing",tenant=<it>,job="fleet-statuswatch"}
fires (bounded, 120 s), and while it fires, the spike panels with $job = the fleet job,
$tenant = that tenant and $instance = All must show it: the tenant dashboard's "Spike state" and
"Spike state over time" read 1 for 5xx, the overview's "Currently spiking tenants" has its 5xx
row with window and expected share, "Spike onsets in the time range" counts its onset, and
"Overall spike state" reads what the overall alert does. Those panels show the fleet decision
(the one that pages); the per-pod in-process panels at the same moment are printed for
information (with 3 replicas they usually read no spike yet). Then every panel runs once for the
fleet job as above.
Env: STATUSWATCH_E2E_SPIKE_WAIT, STATUSWATCH_E2E_DATA_DEADLINE, STATUSWATCH_E2E_FLEET_WARMUP,
STATUSWATCH_E2E_FLEET_ALERT_WAIT (seconds), PROMETHEUS_BIN.

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

from e2e_common import (RULES, ROOT, Load, Procs, Results, free_port, http_get, http_get_or_raise, prometheus_config,
                        promtool_check_metrics, replay_code, start_prometheus, wait_for)

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

# The fleet scenario (see the module docstring).
FLEET_JOB = "fleet-statuswatch"
FLEET_LABELS = {"cluster": "e2e", "namespace": "statuswatch-fleet"}
FLEET_SIDECARS = 3
FLEET_RPS = 40.0
FLEET_TENANTS = [f"studio{r:02d}" for r in range(1, 31)]
FLEET_WEIGHTS = [1.0 / r for r in range(1, 31)]
FLEET_INCIDENT = "studio04"     # ~2.5 req/s of the 40 (each sidecar sees ~0.8 req/s of it)
FLEET_PAST_DUE = "studio08"     # 70 % 402, as in the fleet replay
FLEET_BACKGROUND_5XX = 0.02
FLEET_WARMUP = int(os.environ.get("STATUSWATCH_E2E_FLEET_WARMUP", "150"))  # traffic before the incident
FLEET_ALERT_WAIT = int(os.environ.get("STATUSWATCH_E2E_FLEET_ALERT_WAIT", "120"))
FLEET_ALERT = "StatuswatchTenant5xxSpike"
FLEET_SERIES = re.compile(r"(?<![A-Za-z0-9_:$])(ALERTS|[A-Za-z_]\w*:statuswatch_)")

# (dashboard uid, panel title) -> why the panel may be empty when all is well.
ALLOWED_EMPTY = {
    ("statuswatch-overview", "Failing routes (all tenants)"):
        "routes answering 5xx only (> 0); empty while no route fails",
    ("statuswatch-tenant", "Failing routes (all tenants)"):
        "routes answering 5xx only (> 0); empty while no route fails",
    ("statuswatch-overview", "Currently spiking tenants"):
        "rows only while a tenant's fleet spike alert fires (or the rules decide a spike); empty means nobody is paged",
    ("statuswatch-overview", "Spike onsets"):
        "only fleet spike alerts that became active within the interval; empty when none started",
    ("statuswatch-overview", "Spike onsets in the time range"):
        "lists only tenants whose fleet spike alert became active in the range; empty when nothing spiked",
    ("statuswatch-overview", "Currently spiking tenants (per pod, in-process)"):
        "per-tenant statuswatch_spike_active series exist only while a tenant spikes; empty means nobody spikes",
    ("statuswatch-overview", "Spike onsets (per pod, in-process)"):
        "shows only increases of statuswatch_spikes_total (> 0); empty when no spike started in the window",
    ("statuswatch-overview", "Spike onsets in the time range (per pod, in-process)"):
        "lists only tenants with at least one spike onset in the range; empty when nothing spiked",
    ("statuswatch-overview", "Suspended tenants"):
        "statuswatch_tenant_suspended has series only for currently suspended tenants; empty when none is",
    ("statuswatch-tenant", "Signal ratios (while spiking)"):
        "the tenant's recorded shares are shown only while its fleet spike alert fires (or the rules decide one)",
    ("statuswatch-tenant", "Spike onsets"):
        "only this tenant's fleet spike alerts that became active within the interval; empty when none started",
    ("statuswatch-tenant", "Signal ratios while spiking (per pod, in-process)"):
        "per-tenant statuswatch_signal_ratio series exist only while the tenant spikes",
    ("statuswatch-tenant", "Spike onsets (per pod, in-process)"):
        "shows only increases of this tenant's statuswatch_spikes_total (> 0); empty when it did not spike",
}
# (dashboard uid, panel title, refId) -> (PromQL over the job's recorded series, why): the target may
# be empty only while that query has a result, i.e. while the rules themselves say there is nothing to
# show. The overall expected share p0 exists only once the overall series has a baseline of its own,
# N >= max(min_requests, n) requests in complete baseline windows outside spikes; on a fresh Prometheus
# (and while the demo's scripted incidents freeze the overall baseline) a signal can have events in
# its window, and so a window share, but no p0 yet.
EMPTY_WHILE = {
    ("statuswatch-overview", "Signal ratio vs baseline (all tenants)", "B"): (
        'count({{__name__=~"job:statuswatch_signal_window_requests:increase[0-9a-z]+",{job}}}'
        ' unless on (signal) job:statuswatch_signal_expected:ratio{{{job}}})',
        "the overall series is still cold: its window has signal events but its baseline holds fewer "
        "than max(min_requests, n) requests outside spikes, so the rules have no expected share yet"),
}
# (dashboard uid, panel title) -> why the panel is empty for the fleet's traffic (on top of ALLOWED_EMPTY).
FLEET_EMPTY = {
    ("statuswatch-overview", "Undocumented codes"):
        "the fleet's traffic asks the demo upstream for documented codes only",
    ("statuswatch-overview", "Tenants with the largest slow share"):
        "the demo upstream answers at once: no request exceeds the latency objective, so no slow-request series",
}
# Fleet panels that must have data for the fleet job while its incident tenant's alert fires
# (they are in ALLOWED_EMPTY for quiet times).
FLEET_INCIDENT_PANELS = {
    ("statuswatch-overview", "Currently spiking tenants"),
    ("statuswatch-overview", "Spike onsets"),
    ("statuswatch-overview", "Spike onsets in the time range"),
    ("statuswatch-tenant", "Signal ratios (while spiking)"),
    ("statuswatch-tenant", "Spike onsets"),
    # warmed up (the incident waits for the overall baseline): the expected share must be there
    ("statuswatch-overview", "Signal ratio vs baseline (all tenants)"),
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
ONSET_PANELS = {("statuswatch-overview", "Spike onsets in the time range (per pod, in-process)")}


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


def substitute(expr, tenant, range_s, instance=".*", job="statuswatch"):
    subs = {"${datasource}": "prometheus", "$datasource": "prometheus",
            "${__rate_interval}": RATE_INTERVAL, "$__rate_interval": RATE_INTERVAL,
            "${__range}": f"{range_s}s", "$__range": f"{range_s}s", "${__interval}": STEP, "$__interval": STEP,
            "${cluster}": ".*", "$cluster": ".*", "${namespace}": ".*", "$namespace": ".*",
            "${job}": job, "$job": job, "${instance}": instance, "$instance": instance,
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


def run_target(prom, uid, panel, t, tenant, range_s, instance, job="statuswatch"):
    """(parse_ok, has_data, detail, series) for one target."""
    expr = substitute(t.get("expr", ""), tenant, range_s, instance, job)
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


def start_fleet(bin_path, procs):
    """`statuswatch demo-upstream` and FLEET_SIDECARS sidecars in front of it, each on the DEFAULT
    config (no file; only addresses, shutdown and log level from STATUSWATCH__* variables), as
    the fleet replay runs them. Returns (upstream port, proxy ports, admin host:ports)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATUSWATCH")}
    up = free_port()
    procs.start("fleet-upstream", [bin_path, "demo-upstream", "--listen", f"127.0.0.1:{up}"], env=env)
    ports, targets = [], []
    for i in range(FLEET_SIDECARS):
        pp, ap = free_port(), free_port()
        e = dict(env, STATUSWATCH__PROXY__LISTEN=f"127.0.0.1:{pp}", STATUSWATCH__ADMIN__LISTEN=f"127.0.0.1:{ap}",
                 STATUSWATCH__PROXY__UPSTREAM=f"127.0.0.1:{up}", STATUSWATCH__PROXY__GRACE_PERIOD="1s",
                 STATUSWATCH__PROXY__SHUTDOWN_TIMEOUT="1s", STATUSWATCH__LOG__LEVEL="warn")
        procs.start(f"fleet-sw-{i}", [bin_path], env=e)
        ports.append(pp)
        targets.append(f"127.0.0.1:{ap}")
    return up, ports, targets


def fleet_load(ports):
    """REV23-like traffic over FLEET_TENANTS (Zipf), FLEET_RPS in all, each request to a random sidecar."""
    total = sum(FLEET_WEIGHTS)
    rates = {t: FLEET_RPS * w / total for t, w in zip(FLEET_TENANTS, FLEET_WEIGHTS)}
    modes = {t: "bg" for t in FLEET_TENANTS}
    modes[FLEET_PAST_DUE] = "pastdue"
    return Load({"fleet": ports}, rates, modes,
                lambda rng, mode: replay_code(rng, mode, FLEET_BACKGROUND_5XX), int(os.environ.get("REPLAY_SEED", "23")))


def find_panel(dashboards, uid, title):
    for d in dashboards:
        if d.get("uid") == uid:
            for p in all_panels(d.get("panels")):
                if p.get("title") == title:
                    return p
    return None


def panel_results(prom, panel, job, tenant, instance, range_s):
    """{refId: result list, or None if the query failed} of a panel's targets, run as run_target
    runs them (timeseries targets over the last RANGE_QUERY_SPAN seconds)."""
    out, now = {}, time.time()
    for t in panel.get("targets") or []:
        expr = substitute(t.get("expr", ""), tenant, range_s, instance, job)
        if panel.get("type") == "timeseries" and not t.get("instant"):
            r = prom.query_range(expr, now - RANGE_QUERY_SPAN, now, STEP)
        else:
            r = prom.query(expr, now)
        out[t.get("refId")] = r["data"]["result"] if r.get("status") == "success" else None
    return out


def series_of(result, **labels):
    return [s for s in result or [] if all(s.get("metric", {}).get(k) == v for k, v in labels.items())]


def value_of(result, **labels):
    """The instant value (a range series' last value) of the first series with these labels, else None."""
    for s in series_of(result, **labels):
        if "value" in s:
            return float(s["value"][1])
        if s.get("values"):
            return float(s["values"][-1][1])
    return None


def fmt(v):
    return "absent" if v is None else f"{v:.4g}"


def reads_fleet_series(t):
    return bool(FLEET_SERIES.search(t.get("expr") or ""))


def run_panels(prom, todo, started, watch, fake_mode):
    """Run every target of `todo` [(label, job, instance, scope, mode, uid, panel, target, tenant, must)]
    (scope: the PromQL matchers of that sidecar or fleet; must: has to have data even if the panel
    is in ALLOWED_EMPTY), retrying the empty ones that should have data until DATA_DEADLINE."""
    deadline = time.monotonic() + DATA_DEADLINE
    pending = todo
    while True:
        range_s = int(time.time() - started) + 60
        retry = []
        for item in pending:
            label, job, instance, scope, mode, uid, p, t, tenant, must = item
            name = f"[{label}] {uid} / {p.get('title')} / {t.get('refId')}"
            onsets = 0
            if (uid, p.get("title")) in ONSET_PANELS:
                # counted now, beside the panel's query: every (signal, tenant) with an onset series
                # (tenant="__all__" too, which existed from 0) must be a row
                onsets = prom.scalar(f'count(count by (signal, tenant) (statuswatch_spikes_total{{{scope}}} > 0))'
                                     f' and on () count(statuswatch_spikes_total{{{scope},tenant!="__all__"}})') or 0
            ok, has_data, detail, n = run_target(prom, uid, p, t, tenant, range_s, instance, job)
            allowed = None if must else ALLOWED_EMPTY.get((uid, p.get("title")))
            if label == "fleet" and not allowed:
                allowed = FLEET_EMPTY.get((uid, p.get("title")))
            cond = None if must else EMPTY_WHILE.get((uid, p.get("title"), t.get("refId")))
            if cond and not allowed and ok and not has_data:
                query, why = cond
                if prom.scalar(query.format(job=f'job="{job}"')):
                    allowed = why
            if fake_mode and reads_fleet_series(t):
                allowed = "--fake: the fixture gets no spike alerts and too little time for the rules' baseline"
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
                retry.append((item, name, detail))
        if not retry:
            break
        if time.monotonic() >= deadline or any(p.poll() is not None for _, p in watch):
            for _, name, detail in retry:
                report(False, name, detail)
            break
        print(f"... {len(retry)} queries without data yet, retrying", flush=True)
        time.sleep(5)
        pending = [r[0] for r in retry]


def panel_todo(dashboards, label, job, instance, scope, mode, tenant, must=()):
    return [(label, job, instance, scope, mode, d["uid"], p, t, tenant, (d["uid"], p.get("title")) in must)
            for d in dashboards for p in all_panels(d.get("panels")) if p.get("type") != "row"
            for t in p.get("targets") or []]


def fleet_incident(prom, dashboards, load, t0, started, watch):
    """The fleet scenario: warm-up, one tenant's incident, its alert, and the spike panels while it fires."""
    T, sel = FLEET_INCIDENT, f'job="{FLEET_JOB}"'
    left = t0 + FLEET_WARMUP - time.monotonic()
    if left > 0:
        print(f"fleet: {left:.0f} s of warm-up left", flush=True)
        wait_for("the fleet warm-up", lambda: time.monotonic() >= t0 + FLEET_WARMUP, left + 5, watch)
    # the overall series must not be cold: a tenant without a baseline of its own is judged
    # against the overall share once that has one
    wait_for("the fleet's overall 5xx baseline", lambda: prom.scalar(
        f'job:statuswatch_signal_baseline:ratio{{{sel},signal="5xx"}}') is not None, 90, watch)
    base = prom.scalar(f'job:statuswatch_signal_baseline:ratio{{{sel},signal="5xx"}}')
    base_n = prom.scalar(f'{{__name__=~"job:statuswatch_signal_baseline_requests:sum.+",{sel},signal="5xx"}}')
    tenant_n = prom.scalar(f'{{__name__=~"tenant:statuswatch_signal_baseline_requests:sum.+",{sel},'
                           f'tenant="{T}",signal="5xx"}}')
    firing = prom.result(f'ALERTS{{alertstate="firing",{sel}}}') or []
    names = sorted(f"{r['metric'].get('alertname')}{{tenant={r['metric'].get('tenant', '')}}}" for r in firing)
    report(not any(r["metric"].get("tenant") == T for r in firing), f"[fleet] no alert for {T} before its incident",
           f"firing for {FLEET_JOB}: {names or 'none'}")
    warm = time.monotonic() - t0
    load.set(T, "5xx40")
    onset, onset_wall = time.monotonic(), time.time()
    print(f"fleet: warm-up {warm:.0f} s (overall 5xx baseline share {fmt(base)} over {fmt(base_n)} requests; "
          f"{T}'s own baseline {fmt(tenant_n)} requests); {T} now answers 40 % 5xx", flush=True)
    alert_q = f'ALERTS{{alertname="{FLEET_ALERT}",alertstate="firing",tenant="{T}",{sel}}}'
    try:
        wait_for(f"{FLEET_ALERT} for {T}", lambda: prom.result(alert_q), FLEET_ALERT_WAIT, watch)
    except RuntimeError as e:
        if any(p.poll() is not None for _, p in watch):
            raise
        report(False, f"[fleet] {FLEET_ALERT} fires for {T} within {FLEET_ALERT_WAIT} s of the incident", str(e))
        return False
    lat = time.monotonic() - onset
    report(True, f"[fleet] {FLEET_ALERT} fires for {T}", f"{lat:.1f} s after the incident's onset "
           f"(warm-up {warm:.0f} s)")

    range_s = int(time.time() - started) + 60

    def run(uid, title):
        p = find_panel(dashboards, uid, title)
        if not report(p is not None, f"[fleet] {uid} / {title}: panel exists"):
            return {}
        return panel_results(prom, p, FLEET_JOB, T, ".+", range_s)

    def firing_now():
        return bool(prom.result(alert_q))

    # tenant dashboard: Spike state
    r = run("statuswatch-tenant", "Spike state").get("A")
    v, still = value_of(r, signal="5xx"), firing_now()
    report(v == 1 and still, f"[fleet] statuswatch-tenant / Spike state shows {T} spiking (5xx = 1) while "
           f"{FLEET_ALERT} fires", f"5xx = {fmt(v)}, suspended = {fmt(value_of(r, signal='suspended'))}"
           + ("" if still else "; the alert no longer fired after the query"))
    # tenant dashboard: Spike state over time
    r = run("statuswatch-tenant", "Spike state over time").get("A")
    pts = [(float(ts), float(x)) for s in series_of(r, signal="5xx") for ts, x in s.get("values", [])]
    last = pts[-1][1] if pts else None
    ones = [ts for ts, x in pts if x == 1]
    zeros = [ts for ts, x in pts if x == 0 and (not ones or ts < ones[0])]
    still = firing_now()
    report(last == 1 and bool(zeros) and still,
           f"[fleet] statuswatch-tenant / Spike state over time goes 0 -> 1 for {T} 5xx while {FLEET_ALERT} fires",
           f"{len(pts)} points, last {fmt(last)}, 0 before the spike: {len(zeros)} points, first 1 at "
           + (f"{ones[0] - onset_wall:+.0f} s from the incident's onset" if ones else "never")
           + ("" if still else "; the alert no longer fired after the query"))
    # overview: Currently spiking tenants
    res = run("statuswatch-overview", "Currently spiking tenants")
    a = value_of(res.get("A"), tenant=T, signal="5xx")
    share = value_of(res.get("B"), tenant=T, signal="5xx")
    expected = value_of(res.get("C"), tenant=T, signal="5xx")
    baseline = value_of(res.get("D"), tenant=T, signal="5xx")
    rows = sorted((s["metric"].get("tenant"), s["metric"].get("signal")) for s in res.get("A") or [])
    still = firing_now()
    report(a == 1 and share is not None and expected is not None and still,
           f"[fleet] statuswatch-overview / Currently spiking tenants has the row {T} / 5xx while {FLEET_ALERT} fires",
           f"spiking {fmt(a)}, window share {fmt(share)}, expected share {fmt(expected)}, baseline share "
           f"{fmt(baseline)}; rows {rows}" + ("" if still else "; the alert no longer fired after the query"))
    # overview: Overall spike state, compared with the overall alert's own state
    overall_q = f'ALERTS{{alertname="Statuswatch5xxSpike",alertstate="firing",{sel}}}'
    for _ in range(3):
        before = bool(prom.result(overall_q))
        r = run("statuswatch-overview", "Overall spike state").get("A")
        if before == bool(prom.result(overall_q)):
            break
    v = value_of(r, signal="5xx")
    report(v == (1 if before else 0), "[fleet] statuswatch-overview / Overall spike state reads what "
           "Statuswatch5xxSpike does", f"5xx = {fmt(v)}, Statuswatch5xxSpike {'firing' if before else 'not firing'}")
    # overview: the onset is counted
    r = run("statuswatch-overview", "Spike onsets in the time range").get("A")
    v = value_of(r, tenant=T, signal="5xx")
    report(v is not None and v >= 1, f"[fleet] statuswatch-overview / Spike onsets in the time range counts "
           f"{T}'s 5xx onset", f"{fmt(v)} onset(s); rows {[(s['metric'].get('tenant'), s['metric'].get('signal'), s['value'][1]) for s in r or []]}")
    # for information: what the per-pod in-process panels (the old queries) show at the same moment
    r = run("statuswatch-tenant", "Spike state (per pod, in-process)").get("A")
    pods = prom.result(f'statuswatch_spike_active{{{sel},tenant="{T}",signal="5xx"}} == 1') or []
    print(f"note: at the same moment, 'Spike state (per pod, in-process)' (the old query) reads 5xx = "
          f"{fmt(value_of(r, signal='5xx'))}: {len(pods)} of {FLEET_SIDECARS} sidecars' in-process detectors "
          f"flag {T}" + (" -- no spike next to a firing page" if not pods else ""), flush=True)
    return True


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
    procs, fake, load = Procs(workdir), None, None
    fleet_targets = []
    try:
        if fake_mode:
            admin = free_port()
            fake = FakeMetrics(FIXTURE, admin)
            print(f"serving fake /metrics from {FIXTURE} on 127.0.0.1:{admin}", flush=True)
            admins = {"fixture": admin}
        else:
            admins = {mode: start_statuswatch(bin_path, procs, mode) for mode in MODES}
            # the fleet starts with the demo sidecars: its warm-up overlaps the demo's checks
            fleet_up, fleet_ports, fleet_targets = start_fleet(bin_path, procs)
        watch = procs.items()
        for admin in admins.values():
            wait_for("statuswatch /metrics",
                     lambda: http_get_or_raise(f"http://127.0.0.1:{admin}/metrics")[0] == 200, 60, watch)
        report(True, f"statuswatch /metrics answers ({', '.join(admins)})")
        if fleet_targets:
            wait_for("the fleet's upstream and sidecars", lambda: all(
                http_get_or_raise(f"http://{a}/readyz")[0] == 200 for a in fleet_targets)
                and http_get_or_raise(f"http://127.0.0.1:{fleet_up}/status/200")[0] == 200, 60, watch)
            report(True, f"fleet: demo-upstream and {FLEET_SIDECARS} sidecars on the default config ready")
        if not dashboards:
            report(False, "dashboards found", f"no *.json in {dash_dir}")
        # as the PodMonitor / pod discovery would label it, so the $cluster and $namespace
        # variables have values; the shipped rules, unmodified, for the fleet panels
        cfg = json.loads(prometheus_config(
            [{"targets": [f"127.0.0.1:{a}" for a in admins.values()],
              "labels": {"cluster": "e2e", "namespace": "statuswatch"}}],
            rule_files=[RULES], scrape_timeout="900ms"))
        if fleet_targets:
            cfg["scrape_configs"].append({"job_name": FLEET_JOB, "metrics_path": "/metrics",
                                          "static_configs": [{"targets": fleet_targets, "labels": FLEET_LABELS}]})
        prom = start_prometheus(procs, json.dumps(cfg, indent=2) + "\n", data_dir="tsdb", log_level="warn")
        watch = procs.items()
        wait_for("prometheus ready", lambda: http_get_or_raise(f"{prom.base}/-/ready")[0] == 200, 60, watch)
        started = time.time()
        if fleet_targets:
            load = fleet_load(fleet_ports)
            load.start()
            t0 = time.monotonic()
            print(f"fleet: {FLEET_RPS:g} req/s over {len(FLEET_TENANTS)} Zipf tenants, {FLEET_BACKGROUND_5XX:.0%} 5xx, "
                  f"to {FLEET_SIDECARS} sidecars at random (job {FLEET_JOB})", flush=True)
        rules = wait_for("prometheus loaded the rules", lambda: prom.rules(), 30, watch)
        bad = [r["name"] for r in rules if r.get("health") == "err"]
        report(not bad, f"prometheus loaded {os.path.relpath(RULES, ROOT)} ({len(rules)} rules)",
               f"unhealthy: {bad}" if bad else "")
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
            todo += panel_todo(dashboards, mode, "statuswatch", instance, f'job="statuswatch",instance="{instance}"',
                               mode, tenant)
        run_panels(prom, todo, started, watch, fake_mode)

        if fleet_targets:
            if fleet_incident(prom, dashboards, load, t0, started, watch):
                # every panel once for the fleet job, $instance = All, while the incident's alert
                # fires: its fleet spike panels must have data now
                run_panels(prom, panel_todo(dashboards, "fleet", FLEET_JOB, ".+", f'job="{FLEET_JOB}",instance=~".+"',
                                            MODES[0], FLEET_INCIDENT, FLEET_INCIDENT_PANELS),
                           started, watch, fake_mode)
            total = sum(load.counts.values())
            errors = sum(n for (_, _, got), n in load.counts.items() if got == "error")
            elapsed = time.monotonic() - t0
            report(total >= FLEET_RPS * elapsed * 0.7 and errors <= total * 0.01,
                   "[fleet] the load generator kept up", f"{total} requests in {elapsed:.0f} s "
                   f"(target {FLEET_RPS * elapsed:.0f}), {errors} transport errors")
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
        if load:
            load.stop()
        procs.stop_all()
        if fake:
            fake.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"e2e-dashboards: {R.passed} passed, {R.failed} failed")
    return 1 if R.failed else 0


if __name__ == "__main__":
    sys.exit(main())

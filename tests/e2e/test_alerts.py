#!/usr/bin/env python3
"""End-to-end alert test: statuswatch -> Prometheus (our rules, unmodified) ->
Alertmanager -> a webhook inside this test.

    STATUSWATCH_BIN=target/release/statuswatch python3 tests/e2e/test_alerts.py

Starts, on loopback addresses and free ports only:
  * `$STATUSWATCH_BIN demo-upstream --listen 127.0.0.1:UP`  (GET /status/{code} answers {code})
  * `$STATUSWATCH_BIN --config <tmp>.toml`  proxy -> demo upstream, admin listener
    (the default detector: the shipped rules are generated for the default config, and
    their spike alerts decide on the counters, not on the in-process gauges)
  * `prometheus` (scrape and evaluation every 1s, deploy/prometheus/rules/statuswatch.rules.yml)
  * `prometheus-alertmanager` (group_wait 1s, group_interval 1s, webhook = this test)
Scenario: steady background traffic for a few tenants (mostly 200) -> no alert may reach
the webhook; a 5xx burst for tenant inkhouse -> StatuswatchTenant5xxSpike{tenant="inkhouse"}
within 120 s; 451 for three tenants -> StatuswatchTenantSuspensionSpike for each and
StatuswatchSuspensionWave within 120 s.

`--fake` replaces both statuswatch processes by a small Python /metrics server that plays
the same scenario with hand-written metrics: it tests the Prometheus/Alertmanager plumbing
and the rules without the binary.

Python standard library only. Prints `e2e-alerts: N passed, M failed`; exits non-zero on failure.
Environment: STATUSWATCH_BIN, PROMETHEUS_BIN (default prometheus), ALERTMANAGER_BIN
(default prometheus-alertmanager, else alertmanager), E2E_KEEP_TMP=1 keeps the temp dir.
"""
import http.client
import http.server
import json
import os
import shutil
import sys
import tempfile
import threading
import time

from e2e_common import (RULES, ROOT, Procs, Results, alertmanager_bin, free_port, http_get, log,
                        parse_exposition, prometheus_bin, prometheus_config, promtool_check_metrics,
                        start_alertmanager, start_prometheus, wait_until, write)

TENANT_HEADER = "X-Tenant-Name"
BACKGROUND_TENANTS = ["inkhouse", "blackline", "oldtown", "redrose"]
SUSPENDED_TENANTS = ["blackline", "oldtown", "redrose"]
# series of the metric contract that the alert rules read, present right after start-up
# (after one request for tenant inkhouse): (metric name, labels that must match)
RULE_INPUTS = [
    ("statuswatch_spike_active", {"signal": "5xx", "tenant": "__all__"}),
    ("statuswatch_spike_active", {"signal": "suspended", "tenant": "__all__"}),
    ("statuswatch_suspensions_total", {}),
    ("statuswatch_tenant_overflow_total", {}),
    ("statuswatch_responses_total", {"tenant": "inkhouse", "code": "200", "class": "2xx", "origin": "upstream"}),
]
TOTAL_RPS = 10.0
QUIET_SECONDS = 20
# The rules judge a tenant only against a baseline at least as large as its short
# window (baseline = [1h] offset by the window): with steady traffic that takes two
# windows of the default 1m, plus a few scrapes. The background phase lasts this long.
BASELINE_SECONDS = 135
ALERT_WAIT = 120

R = Results()
check = R.check


class Webhook:
    """Alertmanager webhook receiver: records (monotonic time, alert) for every alert."""

    def __init__(self):
        self.lock = threading.Lock()
        self.received = []
        hook = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                now = time.monotonic()
                try:
                    payload = json.loads(body)
                except ValueError:
                    payload = {"alerts": []}
                with hook.lock:
                    for a in payload.get("alerts", []):
                        hook.received.append((now, a))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alerts(self, since=0.0, **labels):
        with self.lock:
            return [(t, a) for t, a in self.received if t >= since and a.get("status") == "firing"
                    and all(a.get("labels", {}).get(k) == v for k, v in labels.items())]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class Traffic:
    """Per-tenant request loops through the proxy; `mode[tenant]` is the status to ask for."""

    def __init__(self, proxy_port):
        self.port = proxy_port
        self.mode = {t: "bg" for t in BACKGROUND_TENANTS}
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()
        self.counts = {}  # (tenant, asked, got) -> n
        self.threads = []

    def _path(self, tenant, i):
        m = self.mode[tenant]
        if m == "bg":  # mostly 200, some 201 and 404 (no 5xx, no 451)
            return "/status/" + ("404" if i % 10 == 7 else "201" if i % 10 == 3 else "200")
        return f"/status/{m}"

    def _loop(self, tenant, interval):
        conn = None
        i = 0
        nxt = time.monotonic()
        while not self.stop_ev.is_set():
            path = self._path(tenant, i)
            i += 1
            got = "error"
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", path, headers={TENANT_HEADER: tenant})
                r = conn.getresponse()
                r.read()
                got = str(r.status)
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                if conn is not None:
                    conn.close()
                conn = None
            with self.lock:
                k = (tenant, path.rsplit("/", 1)[1], got)
                self.counts[k] = self.counts.get(k, 0) + 1
            nxt += interval
            self.stop_ev.wait(max(0.0, nxt - time.monotonic()))
        if conn is not None:
            conn.close()

    def start(self):
        interval = len(BACKGROUND_TENANTS) / TOTAL_RPS
        for t in BACKGROUND_TENANTS:
            th = threading.Thread(target=self._loop, args=(t, interval), daemon=True)
            th.start()
            self.threads.append(th)

    def set(self, tenant, mode):
        self.mode[tenant] = mode

    def stop(self):
        self.stop_ev.set()
        for th in self.threads:
            th.join(timeout=10)

    def summary(self):
        with self.lock:
            return dict(self.counts)


class FakeStatuswatch:
    """--fake: a /metrics server with hand-written statuswatch metrics that follow the
    same scenario as the real traffic (spike gauges as the detector would set them)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.mode = {t: "bg" for t in BACKGROUND_TENANTS}
        self.since = {}
        self.counts = {}
        self.suspensions = 0
        self.suspended = set()
        fake = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path in ("/healthz", "/readyz"):
                    body = b"ok\n"
                elif self.path == "/metrics":
                    body = fake.render().encode()
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        threading.Thread(target=self._tick, daemon=True).start()

    def set(self, tenant, mode):
        with self.lock:
            self.mode[tenant] = mode
            self.since[tenant] = time.monotonic()
            if mode == "451" and tenant not in self.suspended:
                self.suspended.add(tenant)
                self.suspensions += 1
            elif mode != "451":
                self.suspended.discard(tenant)

    def _tick(self):
        per_tick = TOTAL_RPS / len(BACKGROUND_TENANTS)
        while True:
            with self.lock:
                for t, m in self.mode.items():
                    code = "200" if m == "bg" else m
                    self.counts[(t, code)] = self.counts.get((t, code), 0) + per_tick
            time.sleep(1)

    def render(self):
        with self.lock:
            now = time.monotonic()
            out = ["# TYPE statuswatch_responses_total counter"]
            for (t, code), n in sorted(self.counts.items()):
                out.append(f'statuswatch_responses_total{{tenant="{t}",code="{code}",class="{code[0]}xx",origin="upstream"}} {n}')
            out.append("# TYPE statuswatch_spike_active gauge")
            for sig, code in (("5xx", "500"), ("suspended", "451")):
                active = [t for t, m in self.mode.items() if m == code and now - self.since[t] >= 2]
                out.append(f'statuswatch_spike_active{{signal="{sig}",tenant="__all__"}} {1 if active else 0}')
                for t in active:
                    out.append(f'statuswatch_spike_active{{signal="{sig}",tenant="{t}"}} 1')
            out.append("# TYPE statuswatch_suspensions_total counter")
            out.append(f"statuswatch_suspensions_total {self.suspensions}")
            out.append("# TYPE statuswatch_tenant_overflow_total counter")
            out.append("statuswatch_tenant_overflow_total 0")
            for t in sorted(self.suspended):
                out.append(f'statuswatch_tenant_suspended{{tenant="{t}"}} 1')
            return "\n".join(out) + "\n"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def alert_names_in_rules():
    names = []
    with open(RULES) as f:
        for line in f:
            s = line.strip()
            if s.startswith("- alert:"):
                names.append(s.split(":", 1)[1].strip())
    return names


def wait_alert(hook, since, what, timeout=ALERT_WAIT, **labels):
    got = wait_until(lambda: hook.alerts(since, **labels), timeout, 0.2)
    if got:
        secs = got[0][0] - since
        check(True, f"{what} reached the webhook after {secs:.1f} s (bound {timeout:.0f} s)")
        return got[0][1], secs
    check(False, f"{what} did not reach the webhook within {timeout} s")
    return None, None


def run(fake):
    tmp = tempfile.mkdtemp(prefix="statuswatch-e2e-", dir=os.environ.get("TMPDIR"))
    procs = Procs(tmp)
    hook = traffic = fakesw = None
    timings = {}
    try:
        prom_bin = prometheus_bin()
        am_bin = alertmanager_bin()
        if not check(prom_bin and am_bin, f"prometheus ({prom_bin}) and alertmanager ({am_bin}) found"):
            return timings

        hook = Webhook()

        # --- statuswatch (or the fake) ---------------------------------------------
        if fake:
            fakesw = FakeStatuswatch()
            admin_port = fakesw.port
            setter = fakesw.set
            log(f"fake statuswatch /metrics on 127.0.0.1:{admin_port}")
        else:
            sw_bin = os.environ.get("STATUSWATCH_BIN") or os.path.join(ROOT, "target", "release", "statuswatch")
            if not check(os.path.isfile(sw_bin) and os.access(sw_bin, os.X_OK),
                         f"statuswatch binary {sw_bin} exists (set STATUSWATCH_BIN)"):
                return timings
            up_port, proxy_port, admin_port = free_port(), free_port(), free_port()
            procs.start("demo-upstream", [sw_bin, "demo-upstream", "--listen", f"127.0.0.1:{up_port}"])
            cfg = write(os.path.join(tmp, "statuswatch.toml"), f"""\
[proxy]
listen = "127.0.0.1:{proxy_port}"
upstream = "127.0.0.1:{up_port}"
grace_period = "1s"
shutdown_timeout = "1s"

[admin]
listen = "127.0.0.1:{admin_port}"

""")
            procs.start("statuswatch", [sw_bin, "--config", cfg])
            ok = wait_until(lambda: http_get(f"http://127.0.0.1:{admin_port}/readyz")[0] == 200
                            and http_get(f"http://127.0.0.1:{up_port}/status/200")[0] == 200, 30)
            if not check(ok, "demo-upstream answers and statuswatch /readyz is 200 within 30 s"):
                print(procs.tail("demo-upstream"))
                print(procs.tail("statuswatch"))
                return timings
            status, _ = wait_until(
                lambda: (lambda r: r if r[0] == 200 else None)(_proxied(proxy_port, "/status/200", "inkhouse")), 10) \
                or (None, None)
            if not check(status == 200, "GET /status/200 through the proxy answers 200"):
                print(procs.tail("statuswatch"))
                return timings
            def missing_inputs():
                _, metrics = http_get(f"http://127.0.0.1:{admin_port}/metrics")
                series = parse_exposition(metrics or "")
                return [f"{n}{lab}" for n, lab in RULE_INPUTS
                        if not any(sn == n and lab.items() <= sl.items() for sn, sl in series)]

            # A response is tallied just after it is sent (the proxy's logging
            # hook), so the client may be a moment ahead of /metrics.
            missing = missing_inputs()
            if missing and wait_until(lambda: not missing_inputs(), 5):
                missing = []
            check(not missing, "/metrics exports the series the rules read"
                  + (f" (missing {missing})" if missing else ""))
            traffic = Traffic(proxy_port)
            setter = traffic.set

        # --- alertmanager ----------------------------------------------------------
        am = start_alertmanager(procs, f"http://127.0.0.1:{hook.port}/alerts", am_bin)

        # --- prometheus --------------------------------------------------------------
        prom = start_prometheus(procs, prometheus_config([{"targets": [f"127.0.0.1:{admin_port}"]}],
                                                         rule_files=[RULES], alertmanagers=[am.split("//", 1)[1]]),
                                prom_bin)
        ok = wait_until(lambda: http_get(f"{am}/-/ready")[0] == 200 and prom.ready(), 60)
        if not check(ok, "prometheus and alertmanager ready within 60 s"):
            print(procs.tail("prometheus"))
            print(procs.tail("alertmanager"))
            return timings


        def rules_loaded():
            rules = prom.rules("alert")
            return {r["name"]: r.get("health") for r in rules or []} or None

        loaded = wait_until(rules_loaded, 20) or {}
        want = alert_names_in_rules()
        check(want and all(loaded.get(n) in ("ok", "unknown") for n in want) and set(want) <= set(loaded),
              f"prometheus loaded all {len(want)} alerts of {os.path.relpath(RULES, ROOT)} unmodified")

        def target_up():
            res = prom.result('up{job="statuswatch"}')
            return bool(res) and res[0]["value"][1] == "1"

        if not check(wait_until(target_up, 20), 'prometheus scrapes statuswatch: up{job="statuswatch"} == 1'):
            print(procs.tail("prometheus"))
            return timings

        # --- steady background: nothing may alert ----------------------------------------
        t0 = time.monotonic()
        if traffic:
            traffic.start()
        log(f"steady background traffic ({TOTAL_RPS:g} req/s over {len(BACKGROUND_TENANTS)} tenants) "
            f"for {BASELINE_SECONDS} s, until every tenant has a baseline")
        time.sleep(10)

        def series_present():
            res = prom.result('sum by (tenant) (statuswatch_responses_total{tenant=~"inkhouse|blackline|oldtown|redrose"})')
            return res is not None and len(res) == len(BACKGROUND_TENANTS)

        check(wait_until(series_present, 10),
              "statuswatch_responses_total has series for every background tenant in prometheus")
        quiet_from = time.monotonic()
        time.sleep(max(QUIET_SECONDS, BASELINE_SECONDS - (quiet_from - t0)))
        noise = hook.alerts(t0)
        check(not noise, f"no alert reached the webhook during {time.monotonic() - t0:.0f} s of steady background"
              + (f" (got {[a['labels'] for _, a in noise]})" if noise else ""))
        st, body = http_get(f"{prom.base}/api/v1/alerts")
        active = json.loads(body)["data"]["alerts"] if st == 200 else ["?"]
        check(st == 200 and not active, f"prometheus has no pending/firing alert after {time.monotonic() - quiet_from:.0f} s "
              f"of background ({[a.get('labels') for a in active] if active else 'none'})")

        # --- 5xx burst for inkhouse --------------------------------------------------------
        burst = time.monotonic()
        log("5xx burst for tenant inkhouse (/status/500)")
        setter("inkhouse", "500")
        a, secs = wait_alert(hook, burst, 'StatuswatchTenant5xxSpike{tenant="inkhouse"}',
                             alertname="StatuswatchTenant5xxSpike", tenant="inkhouse")
        if a:
            timings["5xx"] = secs
            print(f"TIMING burst start -> StatuswatchTenant5xxSpike{{tenant=\"inkhouse\"}} at webhook: {secs:.1f} s",
                  flush=True)
            lab, ann = a.get("labels", {}), a.get("annotations", {})
            check(lab.get("signal") == "5xx" and lab.get("severity") in ("critical", "warning", "info")
                  and "instance" not in lab and "inkhouse" in ann.get("summary", "") + ann.get("description", "")
                  and ann.get("runbook_url", "").endswith("/docs/runbooks/StatuswatchTenant5xxSpike.md"),
                  f"alert labels/annotations: {lab} runbook={ann.get('runbook_url')}")
        others = [x["labels"].get("tenant") for _, x in hook.alerts(t0, alertname="StatuswatchTenant5xxSpike")
                  if x["labels"].get("tenant") != "inkhouse"]
        check(not others, f"no StatuswatchTenant5xxSpike for the healthy tenants (got {others or 'none'})")
        setter("inkhouse", "bg")

        # --- 451 for several tenants ------------------------------------------------------
        susp = time.monotonic()
        log(f"451 for tenants {', '.join(SUSPENDED_TENANTS)}")
        for t in SUSPENDED_TENANTS:
            setter(t, "451")
        got_wave = wait_alert(hook, susp, "StatuswatchSuspensionWave", alertname="StatuswatchSuspensionWave")[1]
        if got_wave is not None:
            timings["wave"] = got_wave
        deadline = susp + ALERT_WAIT
        for t in SUSPENDED_TENANTS:
            a, secs = wait_alert(hook, susp, f'StatuswatchTenantSuspensionSpike{{tenant="{t}"}}',
                                 timeout=max(1.0, deadline - time.monotonic()),
                                 alertname="StatuswatchTenantSuspensionSpike", tenant=t)
            if a:
                timings.setdefault("suspension", secs)
                timings["suspension"] = max(timings["suspension"], secs)
        if "suspension" in timings:
            print(f"TIMING 451 start -> StatuswatchTenantSuspensionSpike (all {len(SUSPENDED_TENANTS)} tenants) "
                  f"at webhook: {timings['suspension']:.1f} s; StatuswatchSuspensionWave: "
                  f"{timings.get('wave', float('nan')):.1f} s", flush=True)

        if traffic:
            traffic.stop()
            summary = traffic.summary()
            print("traffic (tenant, asked, got) -> count:")
            for k in sorted(summary):
                print(f"    {k}: {summary[k]}")
            bad = sum(n for (t, asked, got), n in summary.items() if asked != got)
            total = sum(summary.values())
            check(total > 0 and bad <= total * 0.01,
                  f"the proxy passed the upstream's status through ({total - bad}/{total} as asked)")
            # the live scrape after every scenario (5xx, 451, spikes, suspensions) must be
            # a clean exposition for promtool
            st, metrics = http_get(f"http://127.0.0.1:{admin_port}/metrics")
            ok, detail = promtool_check_metrics(metrics if st == 200 else "")
            check(st == 200 and ok, f"promtool check metrics on the live /metrics scrape: {detail}")
            for name in ("demo-upstream", "statuswatch"):
                check(procs.alive(name), f"{name} still running at the end")
        return timings
    finally:
        if traffic:
            traffic.stop()
        if R.failed:
            for name in ("demo-upstream", "statuswatch", "prometheus", "alertmanager"):
                t = procs.tail(name, 15)
                if t:
                    print(t)
        procs.stop_all()
        if hook:
            hook.stop()
        if fakesw:
            fakesw.stop()
        if os.environ.get("E2E_KEEP_TMP"):
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _proxied(port, path, tenant):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
        c.request("GET", path, headers={TENANT_HEADER: tenant})
        r = c.getresponse()
        r.read()
        c.close()
        return r.status, None
    except (OSError, http.client.HTTPException) as e:
        return None, str(e)


def main():
    fake = "--fake" in sys.argv[1:]
    started = time.monotonic()
    try:
        run(fake)
    except Exception as e:  # noqa: BLE001 - report, count, and fail
        import traceback
        traceback.print_exc()
        check(False, f"unexpected error: {e!r}")
    print(f"(took {time.monotonic() - started:.0f} s{', fake statuswatch' if fake else ''})")
    print(f"e2e-alerts: {R.passed} passed, {R.failed} failed", flush=True)
    sys.exit(1 if R.failed or not R.passed else 0)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""One incident, one page: the shipped Alertmanager config's routes and inhibit rules,
through a real Alertmanager.

    python3 tests/e2e/test_routing.py

Starts `prometheus-alertmanager` (or $ALERTMANAGER_BIN) on a free loopback port with
deploy/alertmanager/alertmanager.yml, changed only where a test must: the receivers'
webhook URLs point at this test (one path per receiver) and group_wait/group_interval
are 1 s. Then posts alerts to its API as Prometheus would and checks what each receiver
gets:
  1. one tenant's outage trips both Statuswatch5xxSpike (critical) and
     StatuswatchTenant5xxSpike (warning) of the same API: the page receiver gets the
     overall alert, and the tenant alert goes nowhere (muted: the page names the tenant);
  2. the same tenant alert alone (a small studio, the fleet's share unmoved) is a ticket;
  3. an overall spike of another API or another signal mutes nothing here;
  4. a suspension wave mutes the overall 451 spike, which mutes the tenant 451 spikes.
Python standard library only. Prints `e2e-routing: N passed, M failed`.
"""
import http.server
import json
import os
import re
import tempfile
import threading
import time
import urllib.request

from e2e_common import (ROOT, Procs, Results, alertmanager_bin, finish_run, free_port, http_get_or_raise,
                        run_main, wait_for, wait_until, write)

AM_CONFIG = os.path.join(ROOT, "deploy", "alertmanager", "alertmanager.yml")
R = Results()
check = R.check


class Receivers:
    """Webhook server: records (receiver, alert labels) of every firing notification."""

    def __init__(self):
        self.lock = threading.Lock()
        self.got = []
        rec = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                msg = json.loads(body or b"{}")
                with rec.lock:
                    for a in msg.get("alerts", []):
                        if a.get("status") == "firing":
                            rec.got.append((self.path.strip("/"), a.get("labels", {})))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of(self, **labels):
        with self.lock:
            return [r for r, lab in self.got if all(lab.get(k) == v for k, v in labels.items())]


def shipped_config(port):
    """The shipped config, with this test's receivers and 1 s grouping."""
    text = open(AM_CONFIG).read()
    text = re.sub(r"https://(pager|tickets)\.example\.invalid/hooks/statuswatch",
                  lambda m: f"http://127.0.0.1:{port}/{'statuswatch-page' if m.group(1) == 'pager' else 'statuswatch-ticket'}",
                  text)
    text = re.sub(r"group_wait: \S+", "group_wait: 1s", text)
    text = re.sub(r"group_interval: \S+", "group_interval: 1s", text)
    assert not re.search(r"url: https?://(?!127\.0\.0\.1)", text), "every receiver redirected"
    return text


def post(base, alerts):
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    body = json.dumps([{"labels": a, "annotations": {"summary": "test"}, "startsAt": now} for a in alerts]).encode()
    req = urllib.request.Request(f"{base}/api/v2/alerts", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.status


def spike(alertname, severity, signal="5xx", job="rev23-api-statuswatch", **more):
    return dict(alertname=alertname, severity=severity, signal=signal, job=job, namespace="rev23", **more)


def run():
    tmp = tempfile.mkdtemp(prefix="statuswatch-e2e-routing-", dir=os.environ.get("TMPDIR"))
    procs = Procs(tmp)
    rec = Receivers()
    try:
        am = alertmanager_bin()
        if not check(am is not None, "alertmanager binary found (ALERTMANAGER_BIN or prometheus-alertmanager)"):
            return
        port = free_port()
        cfg = write(os.path.join(tmp, "alertmanager.yml"), shipped_config(rec.port))
        data = os.path.join(tmp, "am-data")
        os.makedirs(data, exist_ok=True)
        procs.start("alertmanager", [am, f"--config.file={cfg}", f"--storage.path={data}",
                                     f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="])
        base = f"http://127.0.0.1:{port}"
        wait_for("alertmanager ready", lambda: http_get_or_raise(f"{base}/-/ready")[0] == 200, 30, procs.items())

        # 1. one tenant's outage: the overall page names it; its tenant ticket is muted
        post(base, [spike("Statuswatch5xxSpike", "critical"),
                    spike("StatuswatchTenant5xxSpike", "warning", tenant="inkhouse")])
        # 2. a small studio alone (another signal's overall spike does not mute it)
        post(base, [spike("StatuswatchTenant5xxSpike", "warning", tenant="tinystudio", job="orders-api-statuswatch"),
                    spike("StatuswatchSuspensionSpike", "warning", signal="suspended", job="orders-api-statuswatch")])
        # 4. a wave mutes the overall 451 spike, which mutes the tenant 451 spikes
        post(base, [spike("StatuswatchSuspensionWave", "critical", signal="suspended", job="wave-api-statuswatch"),
                    spike("StatuswatchSuspensionSpike", "warning", signal="suspended", job="wave-api-statuswatch"),
                    spike("StatuswatchTenantSuspensionSpike", "warning", signal="suspended",
                          job="wave-api-statuswatch", tenant="a")])
        wait_until(lambda: rec.of(alertname="StatuswatchSuspensionWave") and rec.of(tenant="tinystudio"), 20, 0.2)
        # the muted ones would have been sent within a group_wait/interval (1 s) or two
        time.sleep(4)
        check(rec.of(alertname="Statuswatch5xxSpike") == ["statuswatch-page"],
              f"the overall 5xx spike pages ({rec.of(alertname='Statuswatch5xxSpike')})")
        check(rec.of(tenant="inkhouse") == [],
              f"its tenant alert is muted by it: the page names the tenant ({rec.of(tenant='inkhouse')})")
        check(rec.of(tenant="tinystudio") == ["statuswatch-ticket"],
              f"a tenant spike without an overall one of its signal and API is a ticket ({rec.of(tenant='tinystudio')})")
        check(rec.of(alertname="StatuswatchSuspensionWave") == ["statuswatch-page"],
              f"the suspension wave pages ({rec.of(alertname='StatuswatchSuspensionWave')})")
        check(rec.of(alertname="StatuswatchSuspensionSpike", job="wave-api-statuswatch") == [],
              "the wave mutes the overall 451 spike it explains")
        check(rec.of(alertname="StatuswatchTenantSuspensionSpike") == [],
              "the (muted) overall 451 spike still mutes the tenant 451 spikes")
        check(rec.of(alertname="StatuswatchSuspensionSpike", job="orders-api-statuswatch") == ["statuswatch-ticket"],
              "an overall 451 spike without a wave is a ticket")
    finally:
        finish_run(procs, tmp, R.failed)
        rec.server.shutdown()


if __name__ == "__main__":
    run_main(R, "e2e-routing", run)

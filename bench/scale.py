#!/usr/bin/env python3
"""Scale benchmark of the Prometheus rules (issue 23 section 5). Run it through bench/scale.sh.

A synthetic fleet of P pods serving a real statuswatch scrape at T tenants to a real
Prometheus evaluating a rules file, for the previous rules (OLD) and the rules under test
(NEW) in the same run:

 1. fill: demo-upstream + one real statuswatch (default config, free loopback ports), sent
    about R requests per tenant (default 8) of REV23-like traffic by wrk
    (bench/scale_traffic.lua): Zipf tenant volumes (exponent 0.8; every tenant at least
    one request; ~2.5 statuswatch_responses_total series per tenant),
    codes 200 62 %, 201 12 %, 404 12 %, 400 3 %, 401 2.5 %, 403 2 %, 409 2 %, 402 1.5 %,
    451 1 %, 500 1.2 %, 503 0.8 % (2 % 5xx). Its /metrics text is captured, once per T.
 2. fleet: `scale.py exporter` serves the capture on P loopback ports (one per pod, so
    Prometheus' instance label is the only difference between pods). Every
    statuswatch_responses_total sample advances with time at a rate proportional to its
    captured value (the fleet's share of that tenant and code), --pod-rps requests per
    second per pod in all, so increase() is non-zero where traffic is and sparse 5xx/451
    series tick now and then. Lines are pre-split into prefixes; render time per scrape
    is measured and reported.
 3. prometheus: fresh TSDB in a temp dir per (case, rules file), scrape and evaluation
    every 15 s (2 s in --smoke), loopback only, for --duration seconds after the first
    scrape. By default no backfill: windows longer than the run ([30m], [1h], [6h], ...)
    hold only the run's data (see "Caveats" in the report). --backfill 1h writes that much
    history of the advancing counter (the values the exporter would have served, every
    scrape interval, per pod) as OpenMetrics and imports it with `promtool tsdb
    create-blocks-from openmetrics` before Prometheus starts. Cost: series x pods x
    backfill / scrape interval samples, ~100 bytes each on disk while importing
    (T=1k P=3 1h: 1.5M samples, ~16 s; T=10k P=10 1h: ~60M, several minutes and ~6 GB).
 4. measure: /api/v1/rules polled (evaluationTime of each distinct lastEvaluation, as a
    share of the group's interval; rule health), Prometheus' own /metrics polled
    (prometheus_rule_group_iterations_missed_total, prometheus_tsdb_head_series,
    process_resident_memory_bytes, process_cpu_seconds_total; VmHWM from /proc at the end),
    then every rule's expr run once as an instant query with stats=all
    (data.stats.samples.totalQueryableSamples / peakSamples).
 5. report: one markdown table (old, new, new/old per case) and a per-group table, on
    stdout and in OUT/scale-report.md (+ OUT/scale-results.json).

--smoke (CI): T=200, P=2, 2 s intervals, 60 s per rules file, group intervals above 10 s
(e.g. a 5m group) capped to 10 s in copies of the files (--cap-group-interval) so every
group evaluates; fails (exit 1) unless both files pass `promtool check rules`, every target
is up all along, every group evaluated at least --min-evals times (fewer when its interval
does not fit that often into the run), no rule reports health "err" and every rule's expr
runs as an instant query without error. About 2.5 minutes.

Python standard library only; process helpers come from tests/e2e/e2e_common.py.
"""
import argparse
import atexit
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.dont_write_bytecode = True  # leave no __pycache__ in tests/e2e
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from e2e_common import Procs, Prom, free_port, http_get, log, prometheus_bin, which, write  # noqa: E402

OLD_REV = "b2fb9fc"
RULES_PATH = "deploy/prometheus/rules/statuswatch.rules.yml"
CODES = [(200, 62.0), (201, 12.0), (404, 12.0), (400, 3.0), (401, 2.5), (403, 2.0), (409, 2.0),
         (402, 1.5), (451, 1.0), (500, 1.2), (503, 0.8)]
ISSUE_SHARE = 0.10  # issue 23 "Done when": every group <= 10 % of its interval at 10k x 3


# ================================================================ fake fleet exporter

SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)$')


class FleetText:
    """The captured scrape, split so one render costs one join: advancing samples become
    (prefix, base, rate, phase) rows, where prefix holds every static line since the
    previous advancing sample plus "name{labels} "."""

    def __init__(self, text, advance_re, pod_rps, seed=23, t0_ago=0.0):
        rnd = random.Random(seed)
        adv = re.compile(advance_re)
        rows, static = [], []
        for line in text.splitlines():
            m = SAMPLE_RE.match(line) if line and not line.startswith("#") else None
            if m and adv.fullmatch(m.group(1)):
                try:
                    base = float(m.group(3))
                except ValueError:
                    static.append(line + "\n")
                    continue
                prefix = "".join(static) + line[: m.start(3)]
                static = []
                rows.append([prefix, base, 0.0, rnd.random(), line[: m.start(3)].rstrip()])
            else:
                static.append(line + "\n")
        self.tail = "".join(static)
        total = sum(r[1] for r in rows) or 1.0
        for r in rows:
            r[2] = r[1] / total * pod_rps
            r[1] = int(r[1])
        self.series = [r.pop() for r in rows]   # "name{labels}" of each row, for the backfill
        self.rows = [tuple(r) for r in rows]
        self.t0 = time.time() - t0_ago

    def render(self, pod):
        e = time.time() - self.t0
        shift = pod * 0.618
        body = "".join([f"{p}{b + int(r * e + ph + shift)}\n" for p, b, r, ph in self.rows])
        return (body + self.tail).encode()

    def backfill(self, path, instances, job, step, end):
        """OpenMetrics history of the advancing samples from t0 to `end`, every `step` s, for
        each pod's instance label: the values render() would have served (the same formula)."""
        n = int((end - self.t0) // step)
        times = [self.t0 + i * step for i in range(n + 1)]
        name = self.series[0].split("{")[0] if self.series else ""
        family = name[:-len("_total")] if name.endswith("_total") else name
        lines = 0
        with open(path, "w") as f:
            f.write(f"# TYPE {family} counter\n")
            for pod, inst in enumerate(instances):
                shift = pod * 0.618
                extra = f'job="{job}",instance="{inst}"'
                for (_, b, r, ph), ser in zip(self.rows, self.series):
                    if "{" in ser:
                        head = ser[:-1] + ("," if not ser.endswith("{}") else "") + extra + "}"
                    else:
                        head = ser + "{" + extra + "}"
                    f.write("".join([f"{head} {b + int(r * (t - self.t0) + ph + shift)} {t:.3f}\n" for t in times]))
                    lines += len(times)
            f.write("# EOF\n")
        return lines


def exporter_main(a):
    with open(a.scrape) as f:
        fleet = FleetText(f.read(), a.advance, a.pod_rps, t0_ago=a.backfill)
    stats = {"renders": 0, "render_s_total": 0.0, "render_s_max": 0.0, "bytes": 0}
    lock = threading.Lock()

    def handler_for(pod):
        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path.startswith("/metrics"):
                    t = time.perf_counter()
                    body = fleet.render(pod)
                    dt = time.perf_counter() - t
                    with lock:
                        stats["renders"] += 1
                        stats["render_s_total"] += dt
                        stats["render_s_max"] = max(stats["render_s_max"], dt)
                        stats["bytes"] = len(body)
                    ctype = "text/plain; version=0.0.4; charset=utf-8"
                elif self.path.startswith("/stats"):
                    with lock:
                        body = json.dumps(dict(stats, rows=len(fleet.rows))).encode()
                    ctype = "application/json"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
        return H

    servers = []
    for pod in range(a.pods):
        s = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(pod))
        s.daemon_threads = True
        servers.append(s)
        threading.Thread(target=s.serve_forever, daemon=True).start()
    t = time.perf_counter()
    fleet.render(0)
    first = time.perf_counter() - t
    ports = [s.server_address[1] for s in servers]
    info = {"ports": ports, "rows": len(fleet.rows), "first_render_s": first}
    if a.backfill > 0:
        # only the advancing family (the one the rules read over long windows) gets history;
        # only families whose name matches one advancing metric are supported
        if len({s.split("{")[0] for s in fleet.series}) > 1:
            sys.exit("exporter: --backfill needs --advance to match a single metric")
        t = time.perf_counter()
        info["backfill_samples"] = fleet.backfill(a.backfill_file, [f"127.0.0.1:{p}" for p in ports], a.job,
                                                  a.step, time.time())
        info["backfill_write_s"] = time.perf_counter() - t
    tmp = a.port_file + ".tmp"
    write(tmp, json.dumps(info))
    os.replace(tmp, a.port_file)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        time.sleep(3600)


# ================================================================ helpers

def sh(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, **kw)


def get_json(url, timeout=30):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def parse_prom_metrics(text):
    """{name: [(labels dict, value)]} of a text exposition (Prometheus' own /metrics)."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line)
        if not m:
            continue
        labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        try:
            out.setdefault(m.group(1), []).append((labels, float(m.group(3))))
        except ValueError:
            pass
    return out


def one(metrics, name):
    v = metrics.get(name)
    return v[0][1] if v else None


def vm_hwm_bytes(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def fmt_dur(s):
    if s is None:
        return "-"
    if s >= 1:
        return f"{s:.2f} s"
    return f"{s * 1000:.1f} ms"


def fmt_pct(x):
    return "-" if x is None else f"{x * 100:.1f} %"


def fmt_n(x):
    if x is None:
        return "-"
    x = float(x)
    for unit, d in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= d:
            return f"{x / d:.2f}{unit}"
    return f"{x:.0f}"


def fmt_cores(c):
    return "-" if c is None else f"{c:.2f}"


def fmt_bytes(b):
    return "-" if b is None else f"{b / 2**20:.0f} MiB"


def ratio(new, old):
    if new is None or old is None:
        return "-"
    if old == 0:
        return "-" if new == 0 else "inf"
    return f"{new / old:.2f}x"


def parse_secs(s):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", s)
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {s}")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


def prom_dur(seconds):
    return f"{int(seconds * 1000)}ms"


# ================================================================ fill: one real statuswatch at T tenants

def request_list(tenants, per_tenant, zipf_s, seed):
    rnd = random.Random(seed)
    weights = [1.0 / (r ** zipf_s) for r in range(1, tenants + 1)]
    tw = sum(weights)
    total = per_tenant * tenants
    codes = [c for c, _ in CODES]
    cw = [w for _, w in CODES]
    reqs = []
    for r, w in enumerate(weights, 1):
        n = max(1, round(total * w / tw))
        name = f"studio{r:05d}"
        reqs.extend((name, c) for c in rnd.choices(codes, cw, k=n))
    rnd.shuffle(reqs)
    return reqs


def fill(a, procs, tmp, tenants):
    """Fill one statuswatch with `tenants` tenants of traffic; returns (scrape text, info)."""
    up, pp, ap = free_port(), free_port(), free_port()
    procs.start(f"upstream-{tenants}", [a.bin, "demo-upstream", "--listen", f"127.0.0.1:{up}"])
    env = dict(os.environ, STATUSWATCH__PROXY__LISTEN=f"127.0.0.1:{pp}", STATUSWATCH__ADMIN__LISTEN=f"127.0.0.1:{ap}",
               STATUSWATCH__PROXY__UPSTREAM=f"127.0.0.1:{up}", STATUSWATCH__LOG__LEVEL="warn",
               STATUSWATCH__PROXY__GRACE_PERIOD="1s", STATUSWATCH__PROXY__SHUTDOWN_TIMEOUT="1s")
    procs.start(f"statuswatch-{tenants}", [a.bin], env=env)
    deadline = time.monotonic() + 20
    while http_get(f"http://127.0.0.1:{ap}/readyz")[0] != 200 or http_get(f"http://127.0.0.1:{up}/status/200")[0] != 200:
        for name, p in procs.items():
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited ({p.returncode}):\n{procs.tail(name)}")
        if time.monotonic() > deadline:
            raise RuntimeError("statuswatch or demo-upstream not ready after 20 s")
        time.sleep(0.2)
    reqs = request_list(tenants, a.requests_per_tenant, a.zipf, seed=tenants)
    rf = write(os.path.join(tmp, f"requests-{tenants}.txt"), "".join(f"{t} {c}\n" for t, c in reqs))
    t0 = time.monotonic()
    # wrk sleeps out -d whatever its threads do: the script prints SCALE_DONE once every
    # request of the list was answered, and SIGINT then makes wrk print its summary and exit
    wrk = subprocess.Popen(["wrk", "-t1", "-c16", "-d600s", "--timeout", "10s", "-s",
                            os.path.join(HERE, "scale_traffic.lua"), f"http://127.0.0.1:{pp}/"],
                           env=dict(os.environ, SCALE_REQS=rf), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, stdin=subprocess.DEVNULL)
    lines = []
    # failed requests never reach response(): stop wrk after a generous limit in any case
    limit = threading.Timer(30 + len(reqs) / 1000, lambda: wrk.poll() is None and wrk.send_signal(signal.SIGINT))
    limit.start()
    try:
        for line in wrk.stdout:
            lines.append(line)
            if line.startswith("SCALE_DONE"):
                wrk.send_signal(signal.SIGINT)
        wrk.wait(timeout=30)
    finally:
        limit.cancel()
        if wrk.poll() is None:
            wrk.kill()
            wrk.wait()
    took = time.monotonic() - t0
    outtxt = "".join(lines)
    m = re.search(r"SCALE requests=(\d+) duration_us=(\d+) errors=(\d+)", outtxt)
    if wrk.returncode != 0 or not m:
        raise RuntimeError(f"wrk failed ({wrk.returncode}): {outtxt[-1200:]}")
    status, text = http_get(f"http://127.0.0.1:{ap}/metrics", timeout=30)
    if status != 200:
        raise RuntimeError(f"statuswatch /metrics answered {status}")
    procs.stop(f"statuswatch-{tenants}")
    procs.stop(f"upstream-{tenants}")
    write(os.path.join(tmp, f"scrape-{tenants}.txt"), text)
    resp = [(lb, v) for lb, v in parse_prom_metrics(text).get("statuswatch_responses_total", [])]
    names = {lb.get("tenant") for lb, _ in resp}
    info = {"tenants": tenants, "requests_planned": len(reqs), "requests_sent": int(m.group(1)),
            "wrk_errors": int(m.group(3)), "fill_s": took,
            "scrape_lines": sum(1 for ln in text.splitlines() if ln and not ln.startswith("#")),
            "scrape_bytes": len(text.encode()), "responses_series": len(resp),
            "tenant_labels": len(names - {"__overflow__", "__invalid__"}),
            "overflow": "__overflow__" in names,
            "counted": int(sum(v for _, v in resp))}
    log(f"fill T={tenants}: {info['requests_sent']} requests in {took:.1f}s, scrape {info['scrape_lines']} samples "
        f"({info['scrape_bytes'] / 2**20:.1f} MiB), {info['responses_series']} statuswatch_responses_total series, "
        f"{info['tenant_labels']} tenants{' (OVERFLOW)' if info['overflow'] else ''}")
    if info["tenant_labels"] < tenants:
        log(f"warning: only {info['tenant_labels']} of {tenants} tenants in the scrape")
    return text, info


# ================================================================ one case: P pods x one rules file at one Prometheus

def run_case(a, procs, tmp, tenants, pods, label, rules_file, scrape_file):
    tag = f"T{tenants}-P{pods}-{label}"
    d = os.path.join(tmp, tag)
    os.makedirs(d, exist_ok=True)
    port_file = os.path.join(d, "ports.json")
    procs.start(f"exporter-{tag}", [sys.executable, os.path.abspath(__file__), "exporter", "--scrape", scrape_file,
                                    "--pods", str(pods), "--port-file", port_file, "--pod-rps", str(a.pod_rps_for(tenants)),
                                    "--advance", a.advance, "--backfill", str(a.backfill),
                                    "--backfill-file", os.path.join(d, "backfill.om"),
                                    "--step", str(a.scrape_interval)])
    deadline = time.monotonic() + 60 + a.backfill / 10
    while not os.path.exists(port_file):
        if not procs.alive(f"exporter-{tag}") or time.monotonic() > deadline:
            raise RuntimeError(f"exporter did not start:\n{procs.tail(f'exporter-{tag}')}")
        time.sleep(0.2)
    with open(port_file) as f:
        ex = json.load(f)
    ports = ex["ports"]
    rules_copy = shutil.copy(rules_file, os.path.join(d, "rules.yml"))
    cfg = {"global": {"scrape_interval": prom_dur(a.scrape_interval),
                      "scrape_timeout": prom_dur(min(a.scrape_interval, 10.0)),
                      "evaluation_interval": prom_dur(a.eval_interval)},
           "rule_files": [rules_copy],
           "scrape_configs": [{"job_name": "statuswatch", "metrics_path": "/metrics",
                               "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in ports]}]}]}
    cfg_file = write(os.path.join(d, "prometheus.yml"), json.dumps(cfg, indent=2) + "\n")
    pport = free_port()
    data = os.path.join(d, "tsdb")
    os.makedirs(data)
    backfill_info = None
    if a.backfill > 0:
        t0 = time.monotonic()
        r = sh([a.promtool, "tsdb", "create-blocks-from", "openmetrics", "--quiet", os.path.join(d, "backfill.om"), data],
               timeout=3600)
        if r.returncode != 0:
            raise RuntimeError(f"promtool tsdb create-blocks-from openmetrics failed: {(r.stdout + r.stderr)[-1500:]}")
        os.remove(os.path.join(d, "backfill.om"))
        backfill_info = {"samples": ex.get("backfill_samples"), "write_s": ex.get("backfill_write_s"),
                         "promtool_s": time.monotonic() - t0, "seconds": a.backfill}
        log(f"{tag}: backfilled {a.backfill:.0f}s of {ex['rows']} x {pods} series: {fmt_n(ex.get('backfill_samples'))} "
            f"samples (written in {ex.get('backfill_write_s', 0):.1f}s, promtool {backfill_info['promtool_s']:.1f}s)")
    pname = f"prometheus-{tag}"
    pproc = procs.start(pname, [a.prometheus, f"--config.file={cfg_file}", f"--storage.tsdb.path={data}",
                                f"--web.listen-address=127.0.0.1:{pport}", "--log.level=warn"])
    prom = Prom(pport, timeout=180)
    deadline = time.monotonic() + 90
    while not prom.ready():
        if pproc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"prometheus did not become ready:\n{procs.tail(pname)}")
        time.sleep(0.3)
    # the run starts at the first completed scrape of every target
    deadline = time.monotonic() + a.scrape_interval * 3 + 30
    while True:
        r = prom.try_api("/api/v1/targets", state="active")
        ts = r.get("data", {}).get("activeTargets", []) if r.get("status") == "success" else []
        if len(ts) == pods and all(t.get("health") == "up" for t in ts):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"targets not all up: {[(t.get('scrapeUrl'), t.get('health'), t.get('lastError')) for t in ts]}")
        time.sleep(0.5)
    start = time.time()
    log(f"{tag}: {pods} targets up, {ex['rows']} advancing samples per pod (first render "
        f"{ex['first_render_s'] * 1000:.0f} ms); running {a.duration:.0f}s")
    poll = max(1.0, min(5.0, a.eval_interval / 3))
    groups = {}      # name -> {"interval", "file", "evals": {lastEvaluation: evaluationTime}, "rules": [...]}
    rule_evals = {}  # (group, rule index) -> {lastEvaluation: evaluationTime}
    errors = {}      # (group, rule name) -> lastError
    peak = {"head_series": 0, "rss": 0}
    missed, iters = {}, {}
    cpu0 = None
    cpu_last = None
    target_down = set()
    next_progress = start + 60
    while True:
        now = time.time()
        if now - start >= a.duration:
            break
        r = prom.try_api("/api/v1/rules")
        if r.get("status") == "success":
            for g in r["data"]["groups"]:
                e = groups.setdefault(g["name"], {"interval": g.get("interval"), "file": g.get("file"),
                                                  "evals": {}, "rules": []})
                e["rules"] = [(ru.get("name"), ru.get("type"), ru.get("query")) for ru in g["rules"]]
                le = g.get("lastEvaluation", "")
                if le and not le.startswith("0001-"):
                    e["evals"].setdefault(le, (time.time(), g.get("evaluationTime", 0.0)))
                for i, ru in enumerate(g["rules"]):
                    rle = ru.get("lastEvaluation", "")
                    if rle and not rle.startswith("0001-"):
                        rule_evals.setdefault((g["name"], i), {}).setdefault(rle, ru.get("evaluationTime", 0.0))
                    if ru.get("health") == "err":
                        errors[(g["name"], ru.get("name"))] = ru.get("lastError", "")
        st, text = http_get(f"{prom.base}/metrics", timeout=10)
        if st == 200:
            m = parse_prom_metrics(text)
            hs, rss, cpu = one(m, "prometheus_tsdb_head_series"), one(m, "process_resident_memory_bytes"), \
                one(m, "process_cpu_seconds_total")
            peak["head_series"] = max(peak["head_series"], hs or 0)
            peak["rss"] = max(peak["rss"], rss or 0)
            if cpu is not None:
                cpu_last = (time.time(), cpu)
                if cpu0 is None:
                    cpu0 = cpu_last
            for lb, v in m.get("prometheus_rule_group_iterations_missed_total", []):
                missed[lb.get("rule_group", "").split(";")[-1]] = v
            for lb, v in m.get("prometheus_rule_group_iterations_total", []):
                iters[lb.get("rule_group", "").split(";")[-1]] = v
        up = prom.result("up")
        if up is not None:
            for s in up:
                if s["value"][1] != "1":
                    target_down.add(s["metric"].get("instance"))
        if now >= next_progress:
            worst = max(((ev[-1][1] / (g["interval"] or 1), n) for n, g in groups.items()
                         for ev in [sorted(g["evals"].values())] if ev), default=(0, "-"))
            log(f"{tag}: {now - start:.0f}s, head series {fmt_n(peak['head_series'])}, RSS {fmt_bytes(peak['rss'])}, "
                f"latest worst group {worst[1]} at {fmt_pct(worst[0])} of its interval")
            next_progress += 60
        time.sleep(max(0.0, poll - (time.time() - now)))
    end = time.time()
    # per-rule samples: each rule's expr once as an instant query with stats
    rule_stats = {}
    if not a.no_stats:
        t0 = time.monotonic()
        for gname, g in groups.items():
            for name, kind, q in g["rules"]:
                try:
                    res = prom.api("/api/v1/query", query=q, stats="all")
                except (OSError, urllib.error.URLError) as e:
                    res = {"status": "error", "error": str(e)}
                if res.get("status") == "success":
                    s = res["data"].get("stats", {})
                    rule_stats.setdefault(gname, []).append({
                        "rule": name, "type": kind,
                        "samples": s.get("samples", {}).get("totalQueryableSamples"),
                        "peak": s.get("samples", {}).get("peakSamples"),
                        "eval_s": s.get("timings", {}).get("evalTotalTime"),
                        "result": len(res["data"].get("result", []))})
                else:
                    rule_stats.setdefault(gname, []).append({"rule": name, "type": kind, "error": res.get("error")})
        log(f"{tag}: per-rule stats queries took {time.monotonic() - t0:.1f}s")
    hwm = vm_hwm_bytes(pproc.pid)
    try:
        ex_stats = get_json(f"http://127.0.0.1:{ports[0]}/stats", timeout=10)
    except (OSError, ValueError) as e:
        ex_stats = {"error": str(e)}
    procs.stop(pname, timeout=30)
    procs.stop(f"exporter-{tag}")
    if not a.keep_tmp:
        shutil.rmtree(data, ignore_errors=True)
    warm = min(60.0, a.duration / 4)
    out_groups = {}
    for n, g in groups.items():
        evs = sorted(g["evals"].values())
        iv = g["interval"] or a.eval_interval
        post = [t for seen, t in evs if seen - start >= warm] or [t for _, t in evs]
        rs = rule_stats.get(n, [])
        # Mean evaluation time of each rule of the group, slowest first.
        slow_rules = []
        for i, (rname, _, _) in enumerate(g["rules"]):
            ts = list(rule_evals.get((n, i), {}).values())
            if ts:
                slow_rules.append({"rule": rname, "mean_s": sum(ts) / len(ts), "max_s": max(ts)})
        slow_rules.sort(key=lambda x: -x["mean_s"])
        worst_rule = max((x for x in rs if x.get("samples") is not None), key=lambda x: x["samples"], default=None)
        out_groups[n] = {
            "interval_s": iv, "evals": len(evs), "iterations": iters.get(n),
            "eval_mean_s": sum(post) / len(post) if post else None,
            "eval_max_s": max(post) if post else None,
            "eval_last_s": evs[-1][1] if evs else None,
            "share_mean": (sum(post) / len(post) / iv) if post else None,
            "share_max": (max(post) / iv) if post else None,
            "missed": missed.get(n, 0.0),
            "max_samples": worst_rule["samples"] if worst_rule else None,
            "max_samples_rule": worst_rule["rule"] if worst_rule else None,
            "max_peak": max((x.get("peak") or 0 for x in rs), default=None),
            "rules": rs,
            "slowest_rules": slow_rules[:6],
            "stat_errors": [x for x in rs if "error" in x],
        }
    cpu_cores = None
    if cpu0 and cpu_last and cpu_last[0] > cpu0[0]:
        cpu_cores = (cpu_last[1] - cpu0[1]) / (cpu_last[0] - cpu0[0])
    res = {"tenants": tenants, "pods": pods, "rules": label, "rules_file": rules_file,
           "duration_s": end - start, "groups": out_groups,
           "rule_errors": [{"group": k[0], "rule": k[1], "error": v} for k, v in errors.items()],
           "head_series_max": peak["head_series"], "rss_max": peak["rss"], "vm_hwm": hwm,
           "prom_cpu_cores": cpu_cores, "targets_down": sorted(target_down), "exporter": ex_stats,
           "advancing_rows_per_pod": ex["rows"], "backfill": backfill_info}
    log(f"{tag}: done; head series {fmt_n(res['head_series_max'])}, RSS peak {fmt_bytes(hwm or peak['rss'])}, "
        f"Prometheus {cpu_cores or 0:.2f} cores, {len(res['rule_errors'])} rule errors")
    return res


# ================================================================ report

def summarize(res):
    gs = res["groups"].values()
    shares = [(g["share_max"], n) for n, g in res["groups"].items() if g["share_max"] is not None]
    samples = [(g["max_samples"], g["max_samples_rule"], n) for n, g in res["groups"].items()
               if g["max_samples"] is not None]
    return {
        "worst_share": max(shares, default=(None, None)),
        "sum_share": sum(g["share_mean"] or 0 for g in gs),
        "missed": sum(g["missed"] or 0 for g in gs),
        "samples": max(samples, default=(None, None, None)),
        "peak": max((g["max_peak"] or 0 for g in gs), default=None),
        "rss": res["vm_hwm"] or res["rss_max"],
    }


def in_order(results, cases):
    """Each case's results, old rules before new: (tenants, pods, "old"/"new", result)."""
    for t, p in cases:
        for k in ("old", "new"):
            for r in results:
                if (r["tenants"], r["pods"], r["rules"]) == (t, p, k):
                    yield t, p, k, r


def report(a, fills, results, checks, started, finished):
    L = []
    L.append("# statuswatch rules scale benchmark (bench/scale.sh)")
    L.append("")
    L.append(f"Run {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(started))}, "
             f"{(finished - started) / 60:.1f} min{' (smoke)' if a.smoke else ''}. Scrape every "
             f"{a.scrape_interval:g}s, evaluation every {a.eval_interval:g}s (groups without their own interval), "
             f"{a.duration:.0f}s per case after the first scrape, "
             + (f"{a.backfill / 3600:g}h of `{a.advance}` history backfilled (promtool tsdb create-blocks-from "
                f"openmetrics) before Prometheus starts." if a.backfill else "no backfill."))
    L.append(f"- old: `{a.old_desc}`; new: `{a.new_desc}`")
    for k, c in a.capped.items():
        L.append(f"- {k}: group intervals {', '.join(c)} capped to {a.cap_group_interval:g}s (--cap-group-interval)")
    L.append(f"- machine: {os.cpu_count()} CPUs, load average at start {a.loadavg_start}, "
             f"{'cargo/rustc was running at the start (noisy)' if a.cargo_busy else 'no cargo/rustc at the start'}; "
             f"{a.prom_version}")
    for f in fills.values():
        L.append(f"- T={f['tenants']}: {f['requests_sent']} requests of REV23-like traffic, "
                 f"{f['responses_series']} `statuswatch_responses_total` series per pod, "
                 f"{f['scrape_lines']} samples ({f['scrape_bytes'] / 2**20:.1f} MiB) per scrape; "
                 f"{a.pod_rps_for(f['tenants']):g} req/s per pod advance the counters")
    L.append("")
    L.append("## Summary")
    L.append("")
    L.append("worst group = max over the run (after a warm-up of min(60 s, duration/4)) of evaluation time / "
             "group interval; Σ share = Σ over groups of mean evaluation time / interval (core-seconds of rule "
             "evaluation per second); samples = the largest `totalQueryableSamples` of one rule's expr run as an "
             "instant query at the end; RSS = Prometheus' peak (VmHWM).")
    L.append("")
    L.append("| tenants | pods | series | rules | worst group (max share) | Σ share | missed | head series | "
             "RSS | Prom CPU | max samples / query (rule) | peak samples |")
    L.append("|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---|---:|")
    cases = sorted({(r["tenants"], r["pods"]) for r in results})
    for t, p in cases:
        by = {r["rules"]: r for r in results if r["tenants"] == t and r["pods"] == p}
        ss = {k: summarize(v) for k, v in by.items()}
        for k in ("old", "new"):
            if k not in by:
                continue
            r, s = by[k], ss[k]
            ws, wg = s["worst_share"]
            sm, srule, sg = s["samples"]
            L.append(f"| {t} | {p} | {fmt_n(r['advancing_rows_per_pod'] * p)} | {k} | "
                     f"{fmt_pct(ws)} ({wg or '-'}) | {fmt_pct(s['sum_share'])} | {s['missed']:.0f} | "
                     f"{fmt_n(r['head_series_max'])} | {fmt_bytes(s['rss'])} | "
                     f"{fmt_cores(r['prom_cpu_cores'])} | "
                     f"{fmt_n(sm)} ({srule or '-'}) | {fmt_n(s['peak'])} |")
        if "old" in by and "new" in by:
            o, n = ss["old"], ss["new"]
            L.append(f"| {t} | {p} | | **new/old** | {ratio(n['worst_share'][0], o['worst_share'][0])} | "
                     f"{ratio(n['sum_share'], o['sum_share'])} | | "
                     f"{ratio(by['new']['head_series_max'], by['old']['head_series_max'])} | "
                     f"{ratio(n['rss'], o['rss'])} | {ratio(by['new']['prom_cpu_cores'], by['old']['prom_cpu_cores'])} | "
                     f"{ratio(n['samples'][0], o['samples'][0])} | {ratio(n['peak'], o['peak'])} |")
    L.append("")
    L.append("## Per rule group")
    L.append("")
    L.append("| tenants | pods | rules | group | interval | evals | mean eval | max eval | mean share | max share | "
             "missed | max samples (rule) |")
    L.append("|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for t, p, k, r in in_order(results, cases):
        for gn, g in r["groups"].items():
            flag = " ⚠" if (g["share_max"] or 0) > ISSUE_SHARE or g["missed"] else ""
            L.append(f"| {t} | {p} | {k} | {gn} | {g['interval_s']:g}s | {g['evals']} | "
                     f"{fmt_dur(g['eval_mean_s'])} | {fmt_dur(g['eval_max_s'])} | {fmt_pct(g['share_mean'])} | "
                     f"{fmt_pct(g['share_max'])}{flag} | {g['missed']:.0f} | "
                     f"{fmt_n(g['max_samples'])} ({g['max_samples_rule'] or '-'}) |")
    L.append("")
    L.append("⚠ = above the issue-23 target (≤ 10 % of the interval, no missed iteration; the target is stated for "
             "10k tenants × 3 pods).")
    L.append("")
    L.append("Slowest rules of each case's slowest group (mean / max evaluation time of the rule, from "
             "`/api/v1/rules`):")
    L.append("")
    for t, p, k, r in in_order(results, cases):
        if not r["groups"]:
            continue
        gn, g = max(r["groups"].items(), key=lambda kv: kv[1]["share_mean"] or 0)
        rules = "; ".join(f"`{x['rule']}` {fmt_dur(x['mean_s'])} / {fmt_dur(x['max_s'])}"
                          for x in g.get("slowest_rules", [])[:4])
        L.append(f"- T={t} P={p} {k}, {gn}: {rules or '-'}")
    ex = [(r["tenants"], r["pods"], r["rules"], r["exporter"]) for r in results]
    L.append("")
    L.append("Fake-fleet render time per scrape (one pod's text): " + "; ".join(
        f"T={t} P={p} {k}: mean {e.get('render_s_total', 0) / max(1, e.get('renders', 0)) * 1000:.0f} ms, "
        f"max {e.get('render_s_max', 0) * 1000:.0f} ms over {e.get('renders', 0)} scrapes"
        for t, p, k, e in ex if "renders" in e) + ".")
    errs = [(r["tenants"], r["pods"], r["rules"], e) for r in results for e in r["rule_errors"]]
    if errs:
        L.append("")
        L.append("Rule errors: " + "; ".join(f"T={t} P={p} {k} {e['group']}/{e['rule']}: {e['error']}"
                                             for t, p, k, e in errs))
    if checks:
        L.append("")
        L.append("## Smoke checks")
        L.append("")
        for ok, what in checks:
            L.append(f"- {'PASS' if ok else 'FAIL'} {what}")
    L.append("")
    L.append("## Caveats")
    L.append("")
    if a.backfill:
        L.append(f"- Backfill: only the raw `{a.advance}` series get {a.backfill / 3600:g}h of history; recorded series "
                 "(and every other metric) start with the run, so windows longer than the backfill, and windows over "
                 "recorded series longer than the run, are under-filled: their costs are lower bounds.")
    else:
        L.append("- No backfill: every window longer than the run (old rules: `[1h] offset 1m`, `[30m]`..`[6h]`, the "
                 "5-minute group's `[1d]`/`[3d]`) holds only the run's few minutes, so costs that grow with the window "
                 "(raw per-pod range reads, and range reads of recorded series) are lower bounds here; after hours in "
                 "production they are larger (`--backfill 1h` gives the raw counters an hour of history). Rules that "
                 "read raw series over the short window reach their steady cost after that window.")
    L.append("- samples = `totalQueryableSamples` of one instant query per rule at the end of the run (the same "
             "window fill caveat); it is not Mimir's fetched-chunks figure (a chunk holds ~120 samples of one "
             "series, but a series with fewer samples still costs a whole chunk).")
    L.append("- Evaluation times are wall time on a shared 2-core machine: the fake fleet, the poller and anything "
             "else running (cargo builds) compete with Prometheus, so a starved Prometheus shows long evaluations at "
             "low CPU. Compare old and new from the same run, not across runs; `--old F --new F` (an A/A run) shows "
             "the noise (on a busy machine the same file differed by up to ~1.8x). Prom CPU (process CPU over the "
             "run, all work: scrapes, rules, compaction, the stats queries excluded) is the steadier figure. Cases "
             "alternate which file runs first.")
    L.append("- Pods serve identical label sets; counters advance at a steady rate proportional to the captured "
             "traffic, so no tenant spikes and the alerting path costs what steady state costs. Only "
             f"`{a.advance}` advances; the other per-tenant series of the scrape (latency histogram, spike "
             "counters) are served as captured: they count in head series and RSS, not in rate() results.")
    L.append("- A group whose interval is longer than the run (e.g. 5m) may evaluate once or never: '-' in the table.")
    return "\n".join(L) + "\n"


# ================================================================ main

def run_main(a):
    started = time.time()
    a.prometheus = a.prometheus or prometheus_bin()
    promtool = a.promtool = which(os.environ.get("PROMTOOL_BIN"), "promtool")
    if not a.prometheus or not promtool:
        sys.exit("scale: prometheus/promtool not found (apt-get install prometheus)")
    if not shutil.which("wrk"):
        sys.exit("scale: wrk not found (apt-get install wrk)")
    if a.smoke:
        a.tenants = a.tenants or [200]
        a.pods = a.pods or [2]
        a.duration = a.duration or 60.0
        a.scrape_interval = a.scrape_interval or 2.0
        a.eval_interval = a.eval_interval or 2.0
        a.cap_group_interval = 10.0 if a.cap_group_interval is None else a.cap_group_interval
    else:
        a.tenants = a.tenants or [1000, 10000]
        a.pods = a.pods or [3, 10]
        a.duration = a.duration or 240.0
        a.scrape_interval = a.scrape_interval or 15.0
        a.eval_interval = a.eval_interval or 15.0
    a.pod_rps_for = (lambda t: a.pod_rps) if a.pod_rps else (lambda t: max(10.0, t * 0.05))
    tmp = tempfile.mkdtemp(prefix="swscale.")
    out = a.out or os.path.join(tmp, "out")
    os.makedirs(out, exist_ok=True)
    procs = Procs(tmp)

    def cleanup():
        procs.stop_all(timeout=20)
        if not a.keep_tmp:
            for n in os.listdir(tmp):
                path = os.path.join(tmp, n)
                if path == out:
                    continue
                if os.path.isdir(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.remove(path)
            if not os.listdir(tmp):
                os.rmdir(tmp)
    atexit.register(cleanup)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda s, _f: sys.exit(128 + s))

    with open("/proc/loadavg") as f:
        a.loadavg_start = " ".join(f.read().split()[:3])
    a.cargo_busy = sh(["pgrep", "-x", "cargo|rustc"]).returncode == 0
    a.prom_version = (sh([a.prometheus, "--version"]).stdout.splitlines() or ["prometheus (version unknown)"])[0]
    checks = []

    # ---- rules files
    if a.old:
        old_file, a.old_desc = a.old, a.old
    else:
        r = sh(["git", "-C", ROOT, "show", f"{OLD_REV}:{RULES_PATH}"])
        if r.returncode == 0:
            old_file = write(os.path.join(tmp, "old.rules.yml"), r.stdout)
            a.old_desc = f"git show {OLD_REV}:{RULES_PATH}"
        elif a.smoke:
            old_file, a.old_desc = os.path.join(ROOT, RULES_PATH), f"{RULES_PATH} ({OLD_REV} not in this clone)"
            log(f"{OLD_REV} not in this clone (shallow?); smoke uses the working tree's {RULES_PATH} as old")
        else:
            sys.exit(f"scale: cannot read {OLD_REV}:{RULES_PATH} ({r.stderr.strip()}); pass --old FILE")
    if a.new:
        new_file, a.new_desc = a.new, a.new
    else:
        cfg = os.path.join(ROOT, "config", "statuswatch.toml")
        r = sh([a.bin, "rules", "--config", cfg])
        if r.returncode != 0:
            sys.exit(f"scale: `statuswatch rules --config {cfg}` failed: {r.stderr.strip()}")
        new_file = write(os.path.join(tmp, "new.rules.yml"), r.stdout)
        a.new_desc = f"statuswatch rules --config config/statuswatch.toml ({sh([a.bin, '--version']).stdout.strip()})"
    files = {"old": old_file, "new": new_file}
    a.capped = {}
    if a.cap_group_interval:
        # smoke: a group whose own interval is longer than the run would never evaluate;
        # cap it (group-level `interval:` lines only) so its rules' health is checked too
        for k, f in files.items():
            with open(f) as fh:
                text = fh.read()
            capped = []

            def cap(m):
                if parse_secs(m.group(2)) > a.cap_group_interval:
                    capped.append(m.group(2))
                    return f"{m.group(1)}{prom_dur(a.cap_group_interval)}"
                return m.group(0)
            text = re.sub(r"(?m)^(\s*interval:\s*)\"?([0-9.]+(?:ms|s|m|h))\"?\s*$", cap, text)
            if capped:
                files[k] = write(os.path.join(tmp, f"{k}.capped.rules.yml"), text)
                a.capped[k] = capped
                log(f"{k}: group intervals {', '.join(capped)} capped to {a.cap_group_interval:g}s for the smoke")
    for k, f in files.items():
        r = sh([promtool, "check", "rules", f])
        ok = r.returncode == 0
        said = (r.stdout + r.stderr).strip().splitlines()
        checks.append((ok, f"promtool check rules ({k}): {said[-1].strip() if said else f'exit {r.returncode}'}"))
        if not ok:
            log(f"promtool check rules {f} failed:\n{r.stdout}{r.stderr}")
            if a.smoke:
                print(report(a, {}, [], checks, started, time.time()))
                sys.exit(1)
            sys.exit(f"scale: {f} is not a valid rules file")
    for k, f in files.items():
        shutil.copy(f, os.path.join(out, f"{k}.rules.yml"))

    fills, results = {}, []
    case = 0
    try:
        for t in a.tenants:
            text, info = fill(a, procs, tmp, t)
            fills[t] = info
            scrape_file = os.path.join(tmp, f"scrape-{t}.txt")
            for p in a.pods:
                # alternate which file runs first, so a drift in the machine's load (builds
                # starting or ending) does not always favour the same one
                order = ("old", "new") if case % 2 == 0 else ("new", "old")
                case += 1
                for k in order:
                    res = run_case(a, procs, tmp, t, p, k, files[k], scrape_file)
                    results.append(res)
                    with open(os.path.join(out, "scale-results.json"), "w") as f:
                        json.dump({"fills": fills, "results": results}, f, indent=1)
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        log(f"FAILED: {e}")
        checks.append((False, f"run aborted: {e}"))
    if a.smoke:
        for r in results:
            tag = f"{r['rules']} T={r['tenants']} P={r['pods']}"
            checks.append((not r["targets_down"], f"{tag}: every target up all along"
                           + (f" (down: {r['targets_down']})" if r["targets_down"] else "")))
            checks.append((not r["rule_errors"], f"{tag}: no rule with health err"
                           + "".join(f"; {e['group']}/{e['rule']}: {e['error']}" for e in r["rule_errors"])))
            if not r["groups"]:
                checks.append((False, f"{tag}: no rule group loaded"))
            for gn, g in r["groups"].items():
                fits = int(r["duration_s"] // g["interval_s"]) - 1
                need = min(a.min_evals, fits)
                if need < 1:
                    checks.append((True, f"{tag}: group {gn} (interval {g['interval_s']:g}s) not checked: "
                                         f"interval too long for a {r['duration_s']:.0f}s run ({g['evals']} evaluations)"))
                else:
                    checks.append((g["evals"] >= need, f"{tag}: group {gn} evaluated {g['evals']} times (need {need})"))
            bad = [(gn, x) for gn, g in r["groups"].items() for x in g["stat_errors"]]
            checks.append((not bad, f"{tag}: every rule's expr runs as an instant query"
                           + "".join(f"; {gn}/{x['rule']}: {x['error']}" for gn, x in bad)))
        if len(results) < 2:
            checks.append((False, "both rules files were run"))
    finished = time.time()
    md = report(a, fills, results, checks, started, finished)
    write(os.path.join(out, "scale-report.md"), md)
    with open(os.path.join(out, "scale-results.json"), "w") as f:
        json.dump({"fills": fills, "results": results, "checks": checks}, f, indent=1)
    print(md, flush=True)
    log(f"report: {os.path.join(out, 'scale-report.md')} ({(finished - started) / 60:.1f} min)")
    failed = [w for ok, w in checks if not ok]
    if failed:
        log(f"{len(failed)} check(s) failed")
        return 1
    return 0


def csv_ints(s):
    out = []
    for x in s.split(","):
        x = x.strip().lower()
        mult = 1000 if x.endswith("k") else 1
        out.append(int(float(x.rstrip("k")) * mult))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("exporter", help="serve a captured scrape as P pods (internal)")
    e.add_argument("--scrape", required=True)
    e.add_argument("--pods", type=int, required=True)
    e.add_argument("--port-file", required=True)
    e.add_argument("--pod-rps", type=float, default=50.0)
    e.add_argument("--advance", default="statuswatch_responses_total")
    e.add_argument("--backfill", type=float, default=0.0, help="seconds of history to write to --backfill-file")
    e.add_argument("--backfill-file")
    e.add_argument("--step", type=float, default=15.0, help="backfill sample interval (s)")
    e.add_argument("--job", default="statuswatch")
    r = sub.add_parser("run", help="the benchmark")
    r.add_argument("--bin", required=True, help="statuswatch binary (a copy: the build tree may change under it)")
    r.add_argument("--smoke", action="store_true")
    r.add_argument("--tenants", type=csv_ints, help="comma-separated tenant counts (default 1000,10000; smoke 200)")
    r.add_argument("--pods", type=csv_ints, help="comma-separated pod counts (default 3,10; smoke 2)")
    r.add_argument("--duration", type=parse_secs, help="seconds per case and rules file (default 240; smoke 60)")
    r.add_argument("--scrape-interval", type=parse_secs, help="default 15s; smoke 2s")
    r.add_argument("--eval-interval", type=parse_secs, help="default 15s; smoke 2s")
    r.add_argument("--old", help=f"previous rules file (default: git show {OLD_REV}:{RULES_PATH})")
    r.add_argument("--new", help="rules file under test (default: `statuswatch rules --config config/statuswatch.toml`)")
    r.add_argument("--out", help="directory for scale-report.md, scale-results.json and the two rules files "
                                 "(default: a new temp dir)")
    r.add_argument("--requests-per-tenant", type=float, default=8.0)
    r.add_argument("--zipf", type=float, default=0.8,
                   help="Zipf exponent of tenant volumes (default 0.8: ~2.5 statuswatch_responses_total series per "
                        "tenant at 8 requests each, ~254k series at 10k tenants x 10 pods)")
    r.add_argument("--pod-rps", type=float, help="req/s per pod advancing the counters (default max(10, T/20))")
    r.add_argument("--advance", default="statuswatch_responses_total", help="regex of the counters that advance")
    r.add_argument("--backfill", type=parse_secs, default=0.0,
                   help="history of the advancing counter written with promtool tsdb create-blocks-from "
                        "openmetrics before Prometheus starts, e.g. 1h (default 0 = none). Costs disk and time: "
                        "series x pods x backfill/scrape-interval samples (T=1k P=3 1h: ~1.5M)")
    r.add_argument("--min-evals", type=int, default=3, help="smoke: evaluations every group needs")
    r.add_argument("--cap-group-interval", type=parse_secs,
                   help="rewrite group `interval:` values above this to it (default: smoke 10s, else none)")
    r.add_argument("--no-stats", action="store_true", help="skip the per-rule stats=all queries")
    r.add_argument("--keep-tmp", action="store_true")
    r.add_argument("--prometheus", help="prometheus binary (default: PROMETHEUS_BIN or prometheus on PATH)")
    a = ap.parse_args()
    if a.cmd == "exporter":
        exporter_main(a)
    else:
        sys.exit(run_main(a))


if __name__ == "__main__":
    main()

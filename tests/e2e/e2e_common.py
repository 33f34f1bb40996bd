"""Shared pieces of the end-to-end scripts (test_alerts.py, test_fleet_replay.py,
test_dashboards.py): pass/fail tally, free ports, HTTP polling, the processes a test
starts (stopped by their own process group), Prometheus and Alertmanager config and
start-up, Prometheus queries, and `promtool check metrics` on a live scrape.

Python standard library only; the scripts import it from their own directory
(`python3 tests/e2e/test_alerts.py` puts tests/e2e on sys.path).
"""
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
RULES = os.path.join(ROOT, "deploy", "prometheus", "rules", "statuswatch.rules.yml")
DEFAULT_CONFIG = os.path.join(ROOT, "config", "statuswatch.toml")


# ---------------------------------------------------------------- results

class Results:
    """Pass/fail tally. `check` prints `PASS what` / `FAIL what`; `report` prints
    `ok   name: detail` / `FAIL name: detail`. Both return `ok`."""

    def __init__(self):
        self.passed = 0
        self.failed = 0

    def _count(self, ok):
        if ok:
            self.passed += 1
        else:
            self.failed += 1

    def check(self, ok, what):
        self._count(ok)
        print(f"{'PASS' if ok else 'FAIL'} {what}", flush=True)
        return ok

    def report(self, ok, name, detail=""):
        self._count(ok)
        print(f"{'ok  ' if ok else 'FAIL'} {name}{(': ' + detail) if detail else ''}", flush=True)
        return ok


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------- network

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=3.0):
    """(status, body) or (None, error string); never raises."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")
    except Exception as e:  # noqa: BLE001 - any failure means "not yet"
        return None, str(e)


def http_get_or_raise(url, timeout=5):
    """(status, body); raises on connection errors and HTTP errors (for `wait_for`)."""
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode("utf-8", "replace")


def wait_until(pred, timeout, interval=0.25):
    """pred()'s first truthy value within `timeout` seconds, else its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    return pred()


def wait_for(what, fn, timeout, procs=()):
    """fn()'s first truthy value; raises RuntimeError on timeout or when one of
    `procs` ((name, Popen) pairs) exits. Connection errors in fn() mean "not yet"."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        for name, p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited with status {p.returncode} while waiting for {what}")
        try:
            v = fn()
            if v:
                return v
        except (OSError, ValueError, urllib.error.URLError) as e:
            last = e
        time.sleep(0.25)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what} (last error: {last})")


def which(*names):
    """The first of `names` (paths or commands; None/empty skipped) that is executable."""
    for n in names:
        if n and (os.path.isfile(n) and os.access(n, os.X_OK) or shutil.which(n)):
            return n if os.path.isfile(n) else shutil.which(n)
    return None


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


# ---------------------------------------------------------------- processes

class Procs:
    """Processes started by a test, each in its own session; its output goes to
    TMP/NAME.log (appended, so a restarted process keeps one log). Stopped by their
    own process group only: SIGTERM, then SIGKILL after the timeout."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.procs = {}  # name -> (Popen, log file), in start order

    def start(self, name, argv, env=None):
        out = open(self.log_path(name), "ab")
        log(f"start {name}: {' '.join(argv)}")
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             cwd=self.tmp, env=env, start_new_session=True)
        self.procs[name] = (p, out)
        return p

    def log_path(self, name):
        return os.path.join(self.tmp, f"{name}.log")

    def items(self):
        """[(name, Popen)] of the processes still managed here (for `wait_for`)."""
        return [(n, p) for n, (p, _) in self.procs.items()]

    def alive(self, name):
        p = self.procs.get(name, (None,))[0]
        return p is not None and p.poll() is None

    def tail(self, name, lines=25):
        try:
            with open(self.log_path(name), "rb") as f:
                data = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return ""
        return "\n".join(f"    {name}| {line}" for line in data[-lines:])

    @staticmethod
    def _signal(p, sig):
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, name, timeout=10):
        """Stop one process (SIGTERM, SIGKILL after `timeout` s) and forget it."""
        p, out = self.procs.pop(name, (None, None))
        if p is None:
            return
        self._signal(p, signal.SIGTERM)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log(f"{name} did not stop on SIGTERM, killing process group {p.pid}")
            self._signal(p, signal.SIGKILL)
            p.wait(timeout=5)
        out.close()

    def stop_all(self, timeout=10):
        """SIGTERM to all (last started first), then wait for all within `timeout` s."""
        names = list(reversed(list(self.procs)))
        for name in names:
            self._signal(self.procs[name][0], signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name in names:
            self.stop(name, timeout=max(0.1, deadline - time.monotonic()))


# ---------------------------------------------------------------- prometheus / alertmanager

def env_bin(var, *names):
    """$VAR when set (./dev.sh test points PROMETHEUS_BIN, ALERTMANAGER_BIN and PROMTOOL_BIN
    at the Prometheus 3.5 / Alertmanager 0.33 of scripts/prometheus-versions.sh), else the
    first of `names` found. A set $VAR that is not executable gives None (with a note on
    stderr), never a silent fallback to another version."""
    v = os.environ.get(var)
    if v:
        found = which(v)
        if not found:
            print(f"{var}={v} is not an executable file", file=sys.stderr, flush=True)
        return found
    return which(*names)


def prometheus_bin():
    return env_bin("PROMETHEUS_BIN", "prometheus")


def alertmanager_bin():
    return env_bin("ALERTMANAGER_BIN", "prometheus-alertmanager", "alertmanager")


def prometheus_version(binary):
    """(major, minor, patch) from `BINARY --version`, e.g. (3, 5, 3) for "prometheus, version
    3.5.3+ds1 (branch: ...)"; the same for promtool, alertmanager and amtool. None when it
    does not run or says no version."""
    if not binary:
        return None
    try:
        r = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"\bversion (\d+)\.(\d+)\.(\d+)", r.stdout + r.stderr)
    return tuple(int(g) for g in m.groups()) if m else None


def prometheus_config(static_configs, rule_files=(), alertmanagers=(), scrape_timeout="1s",
                      scrape_interval="1s", evaluation_interval="1s"):
    """Scrape and evaluate every second (unless told otherwise); one job "statuswatch"
    with `static_configs` ([{"targets": [...], "labels": {...}}]). Returned as text:
    JSON is valid YAML."""
    cfg = {"global": {"scrape_interval": scrape_interval, "scrape_timeout": scrape_timeout,
                      "evaluation_interval": evaluation_interval}}
    if rule_files:
        cfg["rule_files"] = list(rule_files)
    if alertmanagers:
        cfg["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": list(alertmanagers)}]}]}
    cfg["scrape_configs"] = [{"job_name": "statuswatch", "metrics_path": "/metrics",
                              "static_configs": static_configs}]
    return json.dumps(cfg, indent=2) + "\n"


def start_prometheus(procs, config_text, prom_bin=None, data_dir="prom-data", log_level=None, name="prometheus"):
    """Write TMP/NAME.yml, start Prometheus on a free loopback port; returns a Prom.
    Does not wait: use `prom.ready()`."""
    prom_bin = prom_bin or prometheus_bin()
    if not prom_bin:
        raise RuntimeError("prometheus not found (apt-get install prometheus, or set PROMETHEUS_BIN)")
    port = free_port()
    cfg = write(os.path.join(procs.tmp, f"{name}.yml"), config_text)
    data = os.path.join(procs.tmp, data_dir)
    os.makedirs(data, exist_ok=True)
    argv = [prom_bin, f"--config.file={cfg}", f"--storage.tsdb.path={data}", f"--web.listen-address=127.0.0.1:{port}"]
    if log_level:
        argv.append(f"--log.level={log_level}")
    procs.start(name, argv)
    return Prom(port)


def start_alertmanager(procs, webhook_url, am_bin=None, name="alertmanager"):
    """Alertmanager routing every alert to `webhook_url` within about a second
    (group_wait/group_interval 1s, grouped by alertname, tenant, signal; no resolved
    notifications); returns its base URL. Does not wait: poll BASE/-/ready."""
    am_bin = am_bin or alertmanager_bin()
    if not am_bin:
        raise RuntimeError("alertmanager not found (apt-get install prometheus-alertmanager, or set ALERTMANAGER_BIN)")
    port = free_port()
    cfg = write(os.path.join(procs.tmp, "alertmanager.yml"), f"""\
route:
  receiver: test-webhook
  group_by: [alertname, tenant, signal]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: test-webhook
    webhook_configs:
      - url: {webhook_url}
        send_resolved: false
""")
    data = os.path.join(procs.tmp, "am-data")
    os.makedirs(data, exist_ok=True)
    procs.start(name, [am_bin, f"--config.file={cfg}", f"--storage.path={data}",
                       f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="])
    return f"http://127.0.0.1:{port}"


class Prom:
    """Prometheus HTTP API on 127.0.0.1:PORT. API calls return the decoded JSON
    answer; HTTP errors come back as the error document Prometheus sent (or
    {"status": "error"}); connection errors raise (callers poll with wait_for)."""

    def __init__(self, port, timeout=15):
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.timeout = timeout

    def api(self, path, **params):
        url = f"{self.base}{path}?{urllib.parse.urlencode(params, doseq=True)}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            try:
                return json.loads(e.read())
            except ValueError:
                return {"status": "error", "error": f"HTTP {e.code}"}

    def try_api(self, path, **params):
        """As api(), but a connection error is {"status": "error"} too (never raises)."""
        try:
            return self.api(path, **params)
        except (OSError, ValueError, urllib.error.URLError) as e:
            return {"status": "error", "error": str(e)}

    def ready(self):
        return http_get(f"{self.base}/-/ready")[0] == 200

    def query(self, expr, t=None):
        return self.api("/api/v1/query", query=expr, **({"time": f"{t:.3f}"} if t else {}))

    def query_range(self, expr, start, end, step):
        return self.api("/api/v1/query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=step)

    def result(self, expr):
        """The instant query's result list, or None if the query failed (never raises)."""
        r = self.try_api("/api/v1/query", query=expr)
        return r["data"]["result"] if r.get("status") == "success" else None

    def scalar(self, expr):
        r = self.query(expr)
        res = r.get("data", {}).get("result") or []
        return float(res[0]["value"][1]) if res else None

    def rules(self, kind=None):
        """[rule] of every loaded group (kind "alert" or "record" filters), or None."""
        r = self.try_api("/api/v1/rules", **({"type": kind} if kind else {}))
        if r.get("status") != "success":
            return None
        return [rule for g in r["data"]["groups"] for rule in g["rules"]]


# ---------------------------------------------------------------- exposition

def parse_exposition(text):
    """[(name, {label: value})] of a Prometheus text exposition."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s', line)
        if m:
            labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            out.append((m.group(1), labels))
    return out


def promtool_check_metrics(text):
    """(ok, detail): `promtool check metrics` on an exposition. promtool prints
    nothing for a clean exposition, parse errors (exit 1) or lint problems such as
    counter naming (exit 3) otherwise; statuswatch's scrape is clean, so any output
    or a non-zero exit fails."""
    tool = env_bin("PROMTOOL_BIN", "promtool")
    if not tool:
        return False, ("PROMTOOL_BIN is not an executable file" if os.environ.get("PROMTOOL_BIN") else
                       "promtool not found (Debian: apt-get install prometheus, or set PROMTOOL_BIN)")
    r = subprocess.run([tool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    out = (r.stdout + r.stderr).strip()
    series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
    if r.returncode == 0 and not out:
        return True, f"{series} samples, no problems"
    return False, f"exit {r.returncode}, {series} samples:\n" + "\n".join("    " + line for line in out.splitlines())


def finish_run(procs, tmp, failed):
    """The end of every e2e run: on failure the tail of each process's log, then stop
    them all and remove the temp dir (kept with E2E_KEEP_TMP=1)."""
    if failed:
        for name in list(procs.procs):
            t = procs.tail(name, 10)
            if t:
                print(t)
    procs.stop_all()
    if os.environ.get("E2E_KEEP_TMP"):
        log(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


def run_main(results, name, run, *args, note=""):
    """Run `run(*args)`, count an unexpected exception as a failure, print the closing
    line `NAME: N passed, M failed` and exit non-zero on failure (or on no check at all)."""
    started = time.monotonic()
    try:
        run(*args)
    except Exception as e:  # noqa: BLE001 - report, count, and fail
        import traceback
        traceback.print_exc()
        results.check(False, f"unexpected error: {e!r}")
    print(f"(took {time.monotonic() - started:.0f} s{note})")
    print(f"{name}: {results.passed} passed, {results.failed} failed", flush=True)
    sys.exit(1 if results.failed or not results.passed else 0)


# ---------------------------------------------------------------- traffic and alert watching

def replay_code(rng, mode, background_5xx=0.02):
    """The status a request of a tenant in `mode` asks the demo upstream for, REV23-like:
    "bg" (a `background_5xx` share of 500/503, some 404 and 201), "5xx40" / "5xx35" (an
    incident: 40 % / 35 % 5xx), "chronic" (30 % 500 all along), "pastdue" (70 % 402, the
    rest as "bg"), "451" (suspended)."""
    u = rng.random()
    if mode == "451":
        return 451
    if mode == "5xx40":
        return 500 if u < 0.3 else 503 if u < 0.4 else 200
    if mode == "5xx35":
        return 500 if u < 0.25 else 503 if u < 0.35 else 200
    if mode == "chronic":
        return 500 if u < 0.3 else 200
    if mode == "pastdue":
        if u < 0.7:
            return 402
        u = (u - 0.7) / 0.3
    if u < background_5xx:
        return 500 if u < background_5xx * 0.7 else 503
    return 404 if u < 0.06 else 201 if u < 0.15 else 200


class Load:
    """Poisson arrivals per tenant at `rates` (tenant -> req/s), for each fleet
    (name -> [proxy ports]) independently; each request goes to a random sidecar of its
    fleet through keep-alive connections and asks the demo upstream for the status
    `code(rng, mode)` picks for the tenant's current mode (`set`; mode "off" sends
    nothing). `counts[(fleet, code asked, status got or "error")]` tallies the answers."""

    def __init__(self, fleets, rates, modes, code, seed, workers=8):
        self.fleets, self.rates, self.code = fleets, dict(rates), code
        self.mode = dict(modes)
        self.rng = random.Random(seed)
        self.workers = workers
        self.stop_ev = threading.Event()
        self.queue = []
        self.cv = threading.Condition()
        self.lock = threading.Lock()
        self.counts = {}
        self.threads = []

    def set(self, tenant, mode):
        with self.lock:
            self.mode[tenant] = mode

    def start(self):
        self.threads.append(threading.Thread(target=self._schedule, daemon=True))
        for i in range(self.workers):
            self.threads.append(threading.Thread(target=self._work, args=(i,), daemon=True))
        for t in self.threads:
            t.start()

    def _schedule(self):
        step = 0.1
        nxt = time.monotonic()
        while not self.stop_ev.is_set():
            batch = []
            with self.lock:
                modes = dict(self.mode)
            for fleet, ports in self.fleets.items():
                for t, rate in self.rates.items():
                    if modes.get(t, "off") == "off":
                        continue
                    lam = rate * step
                    # Poisson by inversion
                    n, p, lim = 0, self.rng.random(), pow(2.718281828459045, -lam)
                    while p > lim:
                        n += 1
                        p *= self.rng.random()
                    for _ in range(n):
                        batch.append((fleet, self.rng.choice(ports), t, self.code(self.rng, modes[t])))
            self.rng.shuffle(batch)
            with self.cv:
                self.queue.extend(batch)
                self.cv.notify_all()
            nxt += step
            time.sleep(max(0.0, nxt - time.monotonic()))

    def _work(self, i):
        conns = {}
        while not self.stop_ev.is_set():
            with self.cv:
                while not self.queue and not self.stop_ev.is_set():
                    self.cv.wait(0.2)
                if not self.queue:
                    continue
                fleet, port, tenant, code = self.queue.pop(0)
            got = "error"
            for _attempt in range(2):
                try:
                    c = conns.get(port)
                    if c is None:
                        c = conns[port] = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                    c.request("GET", f"/status/{code}", headers={"X-Tenant-Name": tenant, "X-Api-Key": "replay-key"})
                    r = c.getresponse()
                    r.read()
                    got = r.status
                    if r.getheader("connection", "").lower() == "close":
                        c.close()
                        conns.pop(port, None)
                    break
                except (OSError, http.client.HTTPException):
                    c = conns.pop(port, None)
                    if c:
                        c.close()
            with self.lock:
                k = (fleet, code, got)
                self.counts[k] = self.counts.get(k, 0) + 1

    def stop(self):
        self.stop_ev.set()
        with self.cv:
            self.cv.notify_all()
        for t in self.threads:
            t.join(timeout=5)


class Watch:
    """Polls Prometheus every second: firing alerts (and, with `spikes`, in-process
    spikes), as onsets. `history` holds (t, active set) at every poll; an element of a set
    is (cluster, kind, name, tenant, extra): kind "alert" (name = alertname, extra = the
    labels as JSON) or "spike" (name = signal, extra = instance)."""

    def __init__(self, prom, spikes=True):
        self.prom = prom
        self.spikes = spikes
        self.onsets = []   # (t, fleet, kind, name, tenant, extra)
        self.active = set()
        self.history = []  # (t, active set) at every poll
        self.wall = {}     # onset t -> wall clock (for range queries)
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.errors = 0

    def query(self, q):
        res = self.prom.result(q)
        if res is None:
            self.errors += 1
        return res

    def _loop(self):
        while not self.stop_ev.is_set():
            t = time.monotonic()
            wall = time.time()
            now = set()
            alerts = self.query('ALERTS{alertstate="firing"}')
            spikes = self.query("statuswatch_spike_active == 1") if self.spikes else []
            if alerts is not None and spikes is not None:
                for r in alerts:
                    m = r["metric"]
                    now.add((m.get("cluster", "?"), "alert", m["alertname"], m.get("tenant"),
                             json.dumps(m, sort_keys=True)))
                for r in spikes:
                    m = r["metric"]
                    now.add((m.get("cluster", "?"), "spike", m["signal"], m.get("tenant"), m.get("instance")))
                for key in now - self.active:
                    fleet, kind, name, tenant, extra = key
                    self.onsets.append((t, fleet, kind, name, tenant, extra))
                    self.wall[t] = wall
                self.active = now
                self.history.append((t, now))
            time.sleep(max(0.0, 1.0 - (time.monotonic() - t)))

    def start(self):
        self.thread.start()

    def stop(self):
        self.stop_ev.set()
        self.thread.join(timeout=5)

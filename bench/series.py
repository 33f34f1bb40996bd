#!/usr/bin/env python3
"""Series per pod, measured: fill one statuswatch with N tenants of REV23-like traffic and
count what /metrics exports, per per-tenant latency mode, next to `statuswatch check`'s
estimate for the same config.

For each tenant count and mode: start `statuswatch demo-upstream` (GET /status/{code}
answers that code, ?delay_ms=N after N ms) and statuswatch in front of it with
tenant.max_tenants = N and tenant.latency = MODE, send REQUESTS_PER_TENANT requests for each
of tenants t1..tN over keep-alive connections with pipelining, codes drawn (seeded) from
bench/traffic.lua's REV23 mix (200 70 %, 201 8 %, 404 6 %, 400/401 3 %, 403/409/429 2 %,
402/451/500/503 1 %; 429 is undocumented), 1 % of them 700 ms slow (above the default 500 ms
objective), wait until nothing is in flight, then scrape /metrics once and count its series
by family. `statuswatch check` runs with the
same environment; its worst-case and expected totals are printed beside the measured one.

    cargo build --release && python3 bench/series.py                 # 1k and 10k, every mode
    python3 bench/series.py --tenants 10000 --modes slow              # the default only
Env/flags: --bin (default target/release/statuswatch or $STATUSWATCH_BIN), --requests-per-tenant
(default 8: 80,000 requests at 10,000 tenants), --connections (default 16).
stdlib only. Prints one markdown table row per run.
"""
import argparse
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# bench/traffic.lua's mixed workload: code -> weight (percent)
MIXED = [(200, 70), (201, 8), (404, 6), (400, 3), (401, 3), (403, 2), (409, 2), (429, 2), (402, 1), (451, 1),
         (500, 1), (503, 1)]
SLOW_SHARE = 0.01
SLOW_MS = 700


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode()


def wait(what, pred, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        try:
            if pred():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def request(tenant, code, slow):
    query = f"?delay_ms={SLOW_MS}" if slow else ""
    return (f"GET /status/{code}{query} HTTP/1.1\r\nHost: api.rev23.com\r\nX-Tenant-Name: t{tenant}\r\n"
            "X-Api-Key: demo_k3y_0123456789abcdef\r\n\r\n").encode()


def plan(tenants, per_tenant, seed=24):
    rng = random.Random(seed)
    codes = [c for c, w in MIXED for _ in range(w)]
    return [(1 + i % tenants, rng.choice(codes), rng.random() < SLOW_SHARE) for i in range(tenants * per_tenant)]


def read_response(f):
    line = f.readline()
    if not line:
        raise EOFError("connection closed")
    length = 0
    while True:
        h = f.readline()
        if h in (b"\r\n", b""):
            break
        k, _, v = h.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v.strip())
    f.read(length)
    return int(line.split()[1])


def worker(port, jobs, batch, errors):
    s = socket.create_connection(("127.0.0.1", port))
    f = s.makefile("rb")
    for start in range(0, len(jobs), batch):
        chunk = jobs[start:start + batch]
        s.sendall(b"".join(request(*job) for job in chunk))
        for _ in chunk:
            try:
                read_response(f)
            except (EOFError, ValueError, IndexError):
                errors.append(1)
                s.close()
                s = socket.create_connection(("127.0.0.1", port))
                f = s.makefile("rb")
                break
    s.close()


def family_of(name, families):
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)] in families:
            return name[: -len(suffix)]
    return name


def count(text):
    families, by = set(), {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            families.add(line.split()[2])
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name = re.split(r"[{ ]", line, maxsplit=1)[0]
            f = family_of(name, families)
            by[f] = by.get(f, 0) + 1
    return by


def run(bin_path, tenants, mode, per_tenant, connections):
    up, proxy, admin = free_port(), free_port(), free_port()
    env = dict(os.environ, STATUSWATCH__PROXY__LISTEN=f"127.0.0.1:{proxy}",
               STATUSWATCH__PROXY__UPSTREAM=f"127.0.0.1:{up}", STATUSWATCH__ADMIN__LISTEN=f"127.0.0.1:{admin}",
               STATUSWATCH__PROXY__THREADS="2", STATUSWATCH__TENANT__MAX_TENANTS=str(tenants),
               STATUSWATCH__TENANT__LATENCY=mode, STATUSWATCH__LOG__LEVEL="warn")
    env.pop("STATUSWATCH_CONFIG", None)
    logs = tempfile.TemporaryFile()
    procs = [subprocess.Popen([bin_path, "demo-upstream", "--listen", f"127.0.0.1:{up}"], env=env,
                              stdout=logs, stderr=logs),
             subprocess.Popen([bin_path], env=env, stdout=logs, stderr=logs)]
    try:
        wait("statuswatch ready", lambda: get(f"http://127.0.0.1:{admin}/readyz")[0] == 200)
        jobs = plan(tenants, per_tenant)
        per = [jobs[c::connections] for c in range(connections)]
        errors, t0 = [], time.time()
        threads = [threading.Thread(target=worker, args=(proxy, p, 32, errors)) for p in per]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.time() - t0
        wait("nothing in flight", lambda: re.search(r"^statuswatch_requests_in_flight 0$",
                                                     get(f"http://127.0.0.1:{admin}/metrics")[1], re.M))
        text = get(f"http://127.0.0.1:{admin}/metrics", timeout=30)[1]
        by = count(text)
        measured = sum(by.values())
        gauge = int(float(re.search(r"^statuswatch_series (\S+)$", text, re.M).group(1)))
        check = subprocess.run([bin_path, "check"], env=env, capture_output=True, text=True, check=True).stdout
        worst, expected = (int(v.replace(",", "")) for v in
                           re.search(r"total per pod\s+([\d,]+)\s+([\d,]+)", check).groups())
        tracked = int(float(re.search(r"^statuswatch_tenants_tracked (\S+)$", text, re.M).group(1)))
        return dict(tenants=tenants, mode=mode, requests=len(jobs), took=took, errors=len(errors),
                    tracked=tracked, measured=measured, gauge=gauge, worst=worst, expected=expected, by=by)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.environ.get("STATUSWATCH_BIN",
                                                    os.path.join(ROOT, "target", "release", "statuswatch")))
    ap.add_argument("--tenants", default="1000,10000")
    ap.add_argument("--modes", default="slow,summary,histogram,off")
    ap.add_argument("--requests-per-tenant", type=int, default=8)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("-v", "--verbose", action="store_true", help="series per family too")
    a = ap.parse_args()
    print("| tenants | tenant.latency | requests | measured series | per tenant | statuswatch_series "
          "| check: expected | check: worst case | measured / expected |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for tenants in (int(t) for t in a.tenants.split(",")):
        for mode in a.modes.split(","):
            r = run(a.bin, tenants, mode, a.requests_per_tenant, a.connections)
            print(f"| {tenants:,} | `{mode}` | {r['requests']:,} | {r['measured']:,} | "
                  f"{r['measured'] / tenants:.2f} | {r['gauge']:,} | {r['expected']:,} | {r['worst']:,} | "
                  f"{r['measured'] / r['expected']:.2f} |", flush=True)
            if r["errors"] or r["tracked"] != tenants or r["gauge"] != r["measured"]:
                print(f"  note: {r['errors']} connection errors, {r['tracked']} tenants tracked, "
                      f"statuswatch_series {r['gauge']} vs {r['measured']} counted", file=sys.stderr)
            if a.verbose:
                for f, n in sorted(r["by"].items(), key=lambda x: -x[1]):
                    print(f"  {n:>8,}  {f}", file=sys.stderr)
                print(f"  fill took {r['took']:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Body flood: what 4,096 connections that each send most of a small request
body and go silent cost statuswatch, with the body budget
(`proxy.max_buffered_body_bytes`, default 16 MiB) and without it (set past
what the flood can reach), in one run.

    python3 bench/body_flood.py [--conns 4096] [--body 65536] [--bin target/release/statuswatch]

For each setting: starts `statuswatch demo-upstream` and statuswatch in front of
it (max_connections raised past the flood, so the cap is not what protects it),
opens the connections, sends each a POST head declaring `--body` bytes and all
of them but one byte, waits until the proxy's RSS settles, serves one normal
request beside the flood, and prints the proxy's RSS (VmRSS and its peak, VmHWM).
Prints the ratio of the two RSS figures. Exits 1 if the normal request was not
answered 200 or the budgeted RSS is 256 MiB or more. Python standard library only.
"""
import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def rss_kib(pid):
    vals = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                vals[k] = int(v.split()[0])
    return vals


def one(args, budget, tmp):
    up, pp, ap = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATUSWATCH")}
    logs = open(os.path.join(tmp, f"logs-{budget}.txt"), "w")
    upstream = subprocess.Popen([args.bin, "demo-upstream", "--listen", f"127.0.0.1:{up}"],
                                stdout=logs, stderr=logs, env=env)
    env.update(STATUSWATCH__PROXY__LISTEN=f"127.0.0.1:{pp}", STATUSWATCH__ADMIN__LISTEN=f"127.0.0.1:{ap}",
               STATUSWATCH__PROXY__UPSTREAM=f"127.0.0.1:{up}", STATUSWATCH__LOG__LEVEL="error",
               STATUSWATCH__PROXY__MAX_CONNECTIONS=str(args.conns * 2),
               STATUSWATCH__PROXY__MAX_BUFFERED_BODY_BYTES=str(budget))
    env.update(kv.split("=", 1) for kv in args.env)
    proxy = subprocess.Popen([args.bin], stdout=logs, stderr=logs, env=env)
    socks = []
    try:
        if not (wait_port(up) and wait_port(pp)):
            raise RuntimeError("upstream or proxy did not start")
        idle = rss_kib(proxy.pid)["VmRSS"]
        head = (f"POST /status/200 HTTP/1.1\r\nHost: x\r\nX-Tenant-Name: flood\r\n"
                f"Content-Length: {args.body}\r\n\r\n").encode()
        part = b"z" * (args.body - 1)
        for _ in range(args.conns):
            s = socket.create_connection(("127.0.0.1", pp))
            s.setblocking(False)
            socks.append([s, head + part])
        # send without waiting on any one socket
        pending = list(socks)
        end = time.time() + 60
        while pending and time.time() < end:
            rest = []
            for item in pending:
                try:
                    n = item[0].send(item[1])
                    item[1] = item[1][n:]
                except BlockingIOError:
                    pass
                if item[1]:
                    rest.append(item)
            pending = rest
            if pending:
                time.sleep(0.01)
        unsent = sum(len(i[1]) for i in pending)
        # let the proxy read what it will
        last, stable = 0, 0
        for _ in range(60):
            time.sleep(0.5)
            now = rss_kib(proxy.pid)["VmRSS"]
            stable = stable + 1 if abs(now - last) < 512 else 0
            last = now
            if stable >= 4:
                break
        t = time.time()
        try:
            with urllib.request.urlopen(urllib.request.Request(
                    f"http://127.0.0.1:{pp}/status/200", headers={"X-Tenant-Name": "normal"}), timeout=10) as r:
                normal = r.status
        except Exception as e:  # noqa: BLE001
            normal = f"failed: {e}"
        normal_ms = (time.time() - t) * 1000
        mem = rss_kib(proxy.pid)
        alive = proxy.poll() is None
        return {"idle": idle, "rss": mem["VmRSS"], "hwm": mem["VmHWM"], "normal": normal,
                "normal_ms": normal_ms, "unsent": unsent, "alive": alive}
    finally:
        for s, _ in socks:
            s.close()
        for p in (proxy, upstream):
            p.terminate()
        for p in (proxy, upstream):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        logs.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--conns", type=int, default=4096)
    ap.add_argument("--body", type=int, default=64 * 1024)
    ap.add_argument("--env", action="append", default=[], help="extra KEY=VALUE for statuswatch")
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "statuswatch"))
    args = ap.parse_args()
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    tmp = tempfile.mkdtemp(prefix="statuswatch-flood-")
    rows = {}
    for name, budget in (("budget 16 MiB (default)", 16 * 1024 * 1024), ("no budget", 1 << 40)):
        r = rows[name] = one(args, budget, tmp)
        print(f"{name:<24} idle {r['idle'] / 1024:6.1f} MiB  flooded {r['rss'] / 1024:6.1f} MiB"
              f"  peak {r['hwm'] / 1024:6.1f} MiB  normal request: {r['normal']} in {r['normal_ms']:.0f} ms"
              f"  unsent bytes {r['unsent']}  alive {r['alive']}", flush=True)
    a, b = rows["budget 16 MiB (default)"], rows["no budget"]
    print(f"RSS with the budget / without: {a['rss'] / b['rss']:.2f} (peak {a['hwm'] / b['hwm']:.2f});"
          f" {args.conns} connections x {args.body} B bodies less one byte; logs in {tmp}")
    ok = a["normal"] == 200 and a["rss"] < 256 * 1024 and a["alive"]
    print("ok" if ok else "FAIL: the budgeted proxy is not under 256 MiB or did not serve the normal request")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

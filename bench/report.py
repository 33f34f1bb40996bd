#!/usr/bin/env python3
"""Turn one bench/run.sh output directory into the markdown report.

usage: report.py OUT_DIR RESULTS_MD
Reads OUT_DIR/{runs,latency,info}.tsv (written by run.sh) and, when present,
criterion's estimates under target/criterion/ written during the run (run.sh's pass 4:
cargo bench --bench hot_path --bench scrape).
"""
import csv
import json
import os
import statistics
import sys
from datetime import datetime, timezone

out_dir, results_md = sys.argv[1], sys.argv[2]
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tsv(name):
    path = os.path.join(out_dir, name)
    if not os.path.exists(path):
        return []
    return list(csv.DictReader(open(path), delimiter="\t"))


runs = tsv("runs.tsv")
lat = tsv("latency.tsv")
info = {r["key"]: r["value"] for r in tsv("info.tsv")}


def fnum(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def med_spread(vals, fmt="{:.0f}"):
    vals = [v for v in vals if v is not None]
    if not vals:
        return None, "n/a"
    m = statistics.median(vals)
    if len(vals) == 1:
        return m, fmt.format(m)
    lo, hi = min(vals), max(vals)
    spread = (hi - lo) / m * 100 if m else 0
    return m, f"{fmt.format(m)} (±{spread / 2:.1f}%)"


def cell(target, workload):
    rs = [r for r in runs if r["target"] == target and r["workload"] == workload]
    if not rs:
        return None
    rps, rps_s = med_spread([fnum(r["rps"]) for r in rs])
    cpu, cpu_s = med_spread([fnum(r["cpu_us_per_req"]) for r in rs], "{:.2f}")
    util, _ = med_spread([fnum(r["cpu_util"]) for r in rs], "{:.2f}")
    p = {k: statistics.median([fnum(r[k]) or 0 for r in rs]) for k in ("p50_us", "p99_us", "p999_us")}
    errs = sum(int(r["errors"] or 0) for r in rs)
    return dict(rps=rps, rps_s=rps_s, cpu=cpu, cpu_s=cpu_s, util=util, errs=errs, **p)


def mem(target, phase):
    v = info.get(f"mem/{target}/{phase}")
    if not v:
        return None
    rss, hwm = (int(x) for x in v.split())
    return rss / 1024, hwm / 1024


targets = []
for r in runs:
    if r["target"] not in targets:
        targets.append(r["target"])
workloads = [w for w in ("keepalive", "close", "mixed") if any(r["workload"] == w for r in runs)]

L = []
w = L.append
smoke = info.get("settings", "").endswith("smoke=1")
w("# statuswatch benchmark results")
w("")
w(f"Generated {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} by `bash bench/run.sh{' --smoke' if smoke else ''}`"
  f" (raw data: `bench/out/{os.path.basename(out_dir)}/`, git-ignored).")
w("")
w("## Machine")
w("")
for k, label in [("nproc", "nproc"), ("cpu", "CPU model (/proc/cpuinfo)"), ("kernel", "kernel"), ("os", "OS"),
                 ("versions", "versions"), ("layout", "layout"), ("upstream", "upstream"),
                 ("settings", "settings"), ("latency_tool", "fixed-rate tool"), ("nginx_lua", "nginx-lua"),
                 ("tally/nginx-lua", "nginx-lua tally dict after its runs"),
                 ("loadavg_start", "load average at start"), ("loadavg_end", "load average at end"),
                 ("noise", "noise")]:
    if k in info:
        w(f"- **{label}**: {info[k]}")
w("")
w("Every proxy runs 1 worker/thread with access logs off, and keeps upstream connections alive "
  "(statuswatch/bare pingora: pool 128; nginx: `keepalive 128`, `proxy_http_version 1.1`, `Connection \"\"`; "
  "HAProxy: `http-reuse always`). **nginx-lua** is the same nginx plus an OpenResty-style per-tenant tally "
  "(`lua_shared_dict` counters keyed by `tenant status`, `incr` in `log_by_lua_block`): the usual do-it-yourself "
  "alternative to statuswatch's per-tenant counters. Load: wrk, 1 thread, "
  f"{info.get('settings', '').split('connections=')[-1].split()[0] if 'connections=' in info.get('settings', '') else '64'} "
  "connections, tenant header `X-Tenant-Name` drawn from a Zipf(s=1) distribution over N tenants "
  "(peers get the 10,000-tenant mix too). **CPU-µs/req** = proxy utime+stime delta (/proc/PID/stat, all "
  "processes/threads of the proxy) ÷ requests completed over the measured run; **util** = proxy CPU "
  "seconds per wall second (1.00 = its core is saturated). Values are medians over the runs, ± half the "
  "min–max spread. Latencies in this table are wrk's closed-loop latencies at saturation; fixed-rate "
  "latencies follow below.")
w("")

for wl in workloads:
    title = {"keepalive": "Keep-alive, ~1 KB responses (saturation)",
             "close": "New connection per request (`Connection: close`)",
             "mixed": "Mixed status (REV23 codes 200,201,400,401,402,403,404,409,451,500,503 + 429), keep-alive"}[wl]
    w(f"## {title}")
    w("")
    w("| target | req/s | CPU-µs/req | util | p50 µs | p99 µs | p99.9 µs | errors | RSS idle MiB (HWM) | RSS loaded MiB (HWM) |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for t in targets:
        c = cell(t, wl)
        if not c:
            continue
        mi, ml = mem(t, "idle"), mem(t, "loaded")
        fm = lambda m: f"{m[0]:.1f} ({m[1]:.1f})" if m else "–"
        util = f"{c['util']:.2f}" if c["util"] is not None else "–"
        w(f"| {t} | {c['rps_s']} | {c['cpu_s'] if c['cpu'] is not None else '–'} | "
          f"{util} | {c['p50_us']:.0f} | {c['p99_us']:.0f} | "
          f"{c['p999_us']:.0f} | {c['errs']} | {fm(mi)} | {fm(ml)} |")
    w("")

# ratios
w("## Ratios (CPU-µs per request; req/s vs direct)")
w("")
w("| statuswatch | workload | vs bare pingora (A) | vs bare pingora (B) | vs nginx | vs nginx+Lua | vs HAProxy | req/s vs direct |")
w("|---|---|---:|---:|---:|---:|---:|---:|")
for t in targets:
    if not t.startswith("statuswatch"):
        continue
    for wl in workloads:
        c = cell(t, wl)
        if not c or c["cpu"] is None:
            continue
        def ratio(peer, key="cpu"):
            p = cell(peer, wl)
            if not p or not p[key]:
                return "–"
            return f"{c[key] / p[key]:.3f}"
        w(f"| {t} | {wl} | {ratio('bare-A')} | {ratio('bare-B')} | {ratio('nginx')} | {ratio('nginx-lua')} | {ratio('haproxy')} | {ratio('direct', 'rps')} |")
a, b = cell("bare-A", "keepalive"), cell("bare-B", "keepalive")
if a and b and a["cpu"] and b["cpu"]:
    w("")
    w(f"A/A noise check: bare pingora B / A = {b['cpu'] / a['cpu']:.3f} CPU-µs/req, {b['rps'] / a['rps']:.3f} req/s. "
      "Differences of statuswatch vs bare pingora smaller than this are noise.")
w("")

# latency
if lat:
    w(f"## Fixed-rate latency (same absolute rates for every target; slowest peer saturates at {info.get('slowest_saturation_rps', '?')} req/s)")
    w("")
    w("| target | rate req/s | tool | p50 µs | p99 µs | p99.9 µs | added p50 µs | added p99 µs | added p99.9 µs | ok | errors |")
    w("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    direct = {r["rate"]: r for r in lat if r["target"] == "direct" and r["scrape"] == "0"}
    for r in lat:
        if r["scrape"] != "0":
            continue
        d = direct.get(r["rate"])
        add = lambda k: (f"{int(r[k]) - int(d[k])}" if d and r["target"] != "direct" else "–")
        w(f"| {r['target']} | {r['rate']} | {r['tool']} | {r['p50_us']} | {r['p99_us']} | {r['p999_us']} | "
          f"{add('p50_us')} | {add('p99_us')} | {add('p999_us')} | {r['requests']} | {r['errors']} |")
    w("")
    sc = [r for r in lat if r["scrape"] == "1"]
    if sc:
        s = sc[0]
        base = next((r for r in lat if r["target"] == s["target"] and r["rate"] == s["rate"] and r["scrape"] == "0"), None)
        w("### Scrape interference")
        w("")
        w(f"{s['target']} with {info.get('tenants_tracked/statuswatch-10000', '10000')} tenants tracked, "
          f"{s['rate']} req/s, `/metrics` scraped every second: p50 {s['p50_us']} µs, p99 {s['p99_us']} µs, "
          f"**p99.9 {s['p999_us']} µs**" + (f" (without scraping: p99.9 {base['p999_us']} µs)" if base else "") +
          f". Scrapes: {info.get('scrape', 'n/a')}.")
        w("")

# scrape under saturation (run.sh pass 3)
scrapes = tsv("scrape.tsv")
if scrapes:
    w("## Scrape under saturation")
    w("")
    w("statuswatch with N tenants primed and wrk saturating it (mixed codes, keep-alive, same connections as "
      "above); `/metrics` scraped once a second by curl on the load generator's CPU. The admin thread shares "
      "the proxy's core. **admin CPU** = the admin thread's own CPU time per scrape "
      "(`/proc/PID/task/TID/schedstat`: render, the `process_*` reads, writing the body to the socket); "
      "**run-queue wait** = time it was runnable while the core ran something else (the proxy's worker). "
      "Wall time minus both is time the thread waited on the socket for curl. Means per scrape.")
    w("")
    w("| tenants | series | bytes | scrapes | mean ms | p50 ms | max ms | admin CPU ms | run-queue wait ms | proxy req/s | proxy util |")
    w("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in sorted({int(r["tenants"]) for r in scrapes}):
        rs = [r for r in scrapes if int(r["tenants"]) == n]
        wall = [fnum(r["wall_ms"]) or 0 for r in rs]
        cpu = [v for v in (fnum(r["admin_cpu_ms"]) for r in rs) if v is not None]
        wait = [v for v in (fnum(r["admin_wait_ms"]) for r in rs) if v is not None]
        kv = dict(x.split("=", 1) for x in info.get(f"scrape_saturated/{n}", "").split() if "=" in x)
        mean = lambda v: f"{statistics.mean(v):.2f}" if v else "–"
        w(f"| {n} | {kv.get('series') or '–'} | {int(statistics.median(int(r['bytes'] or 0) for r in rs))} | "
          f"{len(rs)} | {mean(wall)} | {statistics.median(wall):.2f} | {max(wall):.2f} | {mean(cpu)} | "
          f"{mean(wait)} | {kv.get('rps', '–')} | {kv.get('util', '–')} |")
    w("")

# criterion


def estimates(crit, since=None):
    """Criterion's median estimate of each benchmark under `crit`, by name ("group/bench"),
    leaving out estimates written before `since` (a Unix time)."""
    found = {}
    if not os.path.isdir(crit):
        return found
    for dirpath, _, files in os.walk(crit):
        if dirpath.endswith(os.path.join("new")) and "estimates.json" in files:
            bench = os.path.relpath(os.path.dirname(dirpath), crit)
            path = os.path.join(dirpath, "estimates.json")
            if since is not None and os.path.getmtime(path) < since:
                continue
            try:
                found[bench] = json.load(open(path))["median"]["point_estimate"]
            except Exception:
                pass
    return found


# Only what this run measured: target/criterion keeps estimates from earlier runs, other
# branches and benchmarks since removed.
crit_since = fnum(info.get("criterion_started"))
est = estimates(os.path.join(root, "target", "criterion"), crit_since) if crit_since is not None else {}


def fmt_ns(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.1f} ns"


if est:
    w("## Micro-benchmarks (`cargo bench --bench hot_path`, `--bench scrape`; criterion median)")
    w("")
    w("| benchmark | median |")
    w("|---|---:|")
    for k in sorted(est):
        w(f"| {k} | {fmt_ns(est[k])} |")
    w("")

# targets
w("## Targets")
w("")
w("| target | measured | met? |")
w("|---|---|---|")


def verdict(ok):
    return "met" if ok else "**missed**"


control = est.get("hot_path/two_threads_separate_state")
# run.sh pass 4b: the single-thread benchmark while a twin process runs it on the other vCPU.
beside_twin = estimates(os.path.join(out_dir, "criterion-beside-twin")).get("hot_path/single_thread")
controls = []
if control:
    controls.append(f"two threads sharing nothing: {fmt_ns(control)}")
if beside_twin:
    controls.append(f"one thread while another process runs the same loop on the other vCPU: {fmt_ns(beside_twin)}")
for k in sorted(est):
    if "hot_path/two_threads" in k and not k.endswith("separate_state"):
        note = f" (controls: {'; '.join(controls)})" if controls else ""
        w(f"| hot path < 50 ns, two threads ({k.split('/')[-1]}) | {fmt_ns(est[k])}{note} | {verdict(est[k] < 50)} |")
for k in sorted(est):
    if k.startswith("metrics_render/") and "_series" in k:
        series = int(k.split("_")[-2])
        if series < 50_000:
            w(f"| /metrics with ~10,000 series < 5 ms ({series} series) | {fmt_ns(est[k])} | {verdict(est[k] < 5e6)} |")
sw10 = next((t for t in targets if t == "statuswatch-10000"), None)
if sw10:
    mp, ml = mem(sw10, "primed"), mem(sw10, "loaded")
    if ml:
        peak = max(ml[1], mp[1] if mp else 0)
        w(f"| RSS with 10,000 active tenants < 64 MiB | VmRSS {ml[0]:.1f} MiB, VmHWM {peak:.1f} MiB "
          f"({info.get('tenants_tracked_end/' + sw10, '?')} tenants tracked) | {verdict(peak < 64)} |")
# Issue 14: keep-alive CPU per request at most 0.75 x bare pingora (the mean of
# its A and B runs, so one lucky or unlucky bare run does not decide) and at
# most nginx with a Lua per-tenant tally, in the same run.
bares = [b["cpu"] for b in (cell("bare-A", "keepalive"), cell("bare-B", "keepalive")) if b and b["cpu"]]
bare_cpu = sum(bares) / len(bares) if bares else None
for t in targets:
    if not t.startswith("statuswatch"):
        continue
    c, lua = cell(t, "keepalive"), cell("nginx-lua", "keepalive")
    if c and c["cpu"] and bare_cpu:
        w(f"| CPU-µs/req ≤ 0.75 × bare pingora, mean of A and B ({t}, keep-alive) | {c['cpu']:.2f} vs {bare_cpu:.2f} "
          f"(× {c['cpu'] / bare_cpu:.3f}) | {verdict(c['cpu'] <= 0.75 * bare_cpu)} |")
    if c and c["cpu"] and lua and lua["cpu"]:
        w(f"| CPU-µs/req ≤ nginx + Lua tally ({t}, keep-alive) | {c['cpu']:.2f} vs {lua['cpu']:.2f} "
          f"(× {c['cpu'] / lua['cpu']:.3f}) | {verdict(c['cpu'] <= lua['cpu'])} |")
w("")

with open(results_md, "w") as f:
    f.write("\n".join(L) + "\n")
print("\n".join(L))

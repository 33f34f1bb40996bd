#!/usr/bin/env python3
"""Group a `perf report --sort dso,symbol --stdio` flat profile (stdin) into
components: kernel, pingora-proxy, the rest of pingora, tokio, the allocator, memcpy/memmove, the http
parsing crates, statuswatch's own code, and the rest. Prints one line per
component with its share of self time, largest first."""
import re
import sys

RULES = [
    ("kernel", lambda d, s: d.startswith("[kernel")),
    ("statuswatch (own code)", lambda d, s: "statuswatch::" in s or "hot_path::" in s),
    ("allocator (mimalloc/malloc)", lambda d, s: re.match(r"_?mi_|malloc|free|calloc|realloc|__rust_(alloc|dealloc)", s)),
    ("memcpy/memmove/memset/memcmp", lambda d, s: re.match(r"__mem|memcpy|memmove|memset|memcmp", s)),
    # An impl of a pingora-core trait for a pingora-proxy type names both; the
    # first rule that matches wins, so proxy machinery is counted as such.
    ("pingora-proxy", lambda d, s: re.match(r"(<)?pingora_proxy", s)),
    ("pingora (core, pool, timeout, …)", lambda d, s: "pingora" in s),
    ("tokio", lambda d, s: "tokio" in s or "mio::" in s),
    ("http/httparse/bytes", lambda d, s: re.search(r"\bhttp::|httparse|bytes::", s)),
    ("clock (vdso)", lambda d, s: "vdso" in d or "clock_gettime" in s),
    ("libc (other)", lambda d, s: d.startswith("libc")),
]

totals = {}
for line in sys.stdin:
    m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[[.k]\]\s+(.*)$", line)
    if not m:
        continue
    pct, dso, sym = float(m.group(1)), m.group(2), m.group(3).strip()
    name = next((n for n, f in RULES if f(dso, sym)), "other user space")
    totals[name] = totals.get(name, 0.0) + pct
for name, pct in sorted(totals.items(), key=lambda kv: -kv[1]):
    print(f"{pct:7.2f}%  {name}")

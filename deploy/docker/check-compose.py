#!/usr/bin/env python3
"""The compose demo (deploy/docker/compose.yaml), checked without Docker.

    STATUSWATCH_BIN=target/release/statuswatch python3 deploy/docker/check-compose.py

(a) The file, structurally: every service has an image (exact tag, within the supported
    Prometheus 3.x / Alertmanager >= 0.28 / Grafana 11-12) or a build whose context and
    Dockerfile exist; every bind-mounted host path exists; ports are well-formed and publish
    a port the service listens on beyond its loopback; depends_on names exist; every
    `service:port` a service or a mounted Prometheus / Grafana file names is a port that
    service listens on, and the naming service depends on it; each statuswatch service's
    command is accepted by the binary (`$STATUSWATCH_BIN COMMAND --help`) and its
    environment passes `statuswatch check` with the mounted config (service names, which
    resolve on the compose network only, replaced by 127.0.0.1); prometheus.yml's
    intervals are those the shipped rules were generated for (their header).
(b) The same commands without Docker: the statuswatch services (demo-upstream, statuswatch,
    traffic) with their command and environment, and Prometheus ($PROMETHEUS_BIN, else
    $PROMETHEUS_3_BIN, else `prometheus`) with the mounted prometheus.yml and rules; every
    listening address and `service:port` rewritten to a free loopback port, container paths
    to the host paths mounted there. Within 90 s Prometheus must have loaded every shipped
    rule and evaluated it without error, scraped statuswatch, and hold
    statuswatch_responses_total for several tenants and at least one class, and the rules'
    first recording rule must have produced series. Alertmanager and Grafana are not run.

Needs PyYAML (Debian: python3-yaml, in deploy/apt-packages.txt) and Python >= 3.11
(tomllib); the process helpers are tests/e2e/e2e_common.py's. Every process is stopped, on
failure too. The last line is `compose-check: N passed, M failed`; exit 1 on any failure.
"""
import glob
import ipaddress
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import tomllib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
import e2e_common as ec  # noqa: E402

try:
    import yaml
except ImportError:
    print("PyYAML is missing (Debian: apt-get install python3-yaml)")
    print("compose-check: 0 passed, 1 failed")
    sys.exit(1)

COMPOSE = os.path.join(HERE, "compose.yaml")
RULES = ec.RULES
STUDIOS = ["inkhouse", "rosegarden", "ironneedle", "linework", "bluelotus", "blackcat", "shadyink"]
# Listening port of the third-party images (the flag that moves it), and the versions
# statuswatch supports: (major, minor) bounds, inclusive.
IMAGES = {
    "prom/prometheus": ("--web.listen-address", 9090, (3, 0), (3, 99)),
    "prom/alertmanager": ("--web.listen-address", 9093, (0, 28), (0, 99)),
    "grafana/grafana-oss": (None, 3000, (11, 0), (12, 99)),
}
LOOPBACK = ("127.", "localhost", "[::1]", "::1")
DEADLINE = 90  # seconds for (b)'s assertions

R = ec.Results()
check = R.check


# ---------------------------------------------------------------- the compose model

def listify(v):
    if v is None:
        return []
    return shlex.split(v) if isinstance(v, str) else [str(x) for x in v]


def env_of(svc):
    e = svc.get("environment") or {}
    if isinstance(e, list):
        e = dict(x.split("=", 1) if "=" in x else (x, "") for x in e)
    return {str(k): "" if v is None else str(v) for k, v in e.items()}


def depends(svc):
    d = svc.get("depends_on") or []
    return list(d) if isinstance(d, (list, dict)) else []


def mounts(svc):
    """[(host path, container path)] of the bind mounts (relative to the compose file)."""
    out = []
    for v in svc.get("volumes") or []:
        if isinstance(v, dict):
            src, dst = v.get("source", ""), v.get("target", "")
        else:
            parts = v.split(":")
            src, dst = (parts[0], parts[1]) if len(parts) > 1 else ("", parts[0])
        if src.startswith((".", "/")):
            out.append((os.path.normpath(os.path.join(HERE, src)), dst))
    return out


def host_path(svc, path):
    """The host path a container path of `svc` is mounted from, or None."""
    for src, dst in mounts(svc):
        if path == dst or path.startswith(dst.rstrip("/") + "/"):
            return src + path[len(dst.rstrip("/")):]
    return None


def is_statuswatch(svc):
    b = svc.get("build") or {}
    df = b.get("dockerfile", "") if isinstance(b, dict) else ""
    return df.endswith("deploy/docker/Dockerfile") or str(svc.get("image", "")).startswith("statuswatch:")


def split_image(image):
    name, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
    return name, tag


def subcommand(args):
    """(statuswatch subcommand or "run", its args, --config value or None)."""
    config, rest, i = None, [], 0
    while i < len(args):
        a = args[i]
        if a in ("--config", "-c") and i + 1 < len(args):
            config, i = args[i + 1], i + 2
            continue
        if a.startswith("--config="):
            config = a.split("=", 1)[1]
        elif a != "--upgrade":
            rest.append(a)
        i += 1
    cmd = rest[0] if rest and not rest[0].startswith("-") else "run"
    return cmd, (rest[1:] if rest and rest[0] == cmd else rest), config


def flag(args, name, default=None):
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return default


def port_of(addr):
    m = re.fullmatch(r"(.*):(\d+)", addr or "")
    return (m.group(1), int(m.group(2))) if m else (None, None)


def sw_config(name, svc):
    """The statuswatch config a `run` service sees: (host path of the file or None,
    {section.key: value} of the listeners, environment applied)."""
    env = env_of(svc)
    _, _, cfg = subcommand(listify(svc.get("command")))
    cfg = cfg or env.get("STATUSWATCH_CONFIG")
    path = host_path(svc, cfg) if cfg else os.path.join(ROOT, "config", "statuswatch.toml")
    data = {}
    if path and os.path.isfile(path):
        with open(path, "rb") as f:
            data = tomllib.load(f)
    keys = {}
    for key, default in (("proxy.listen", "0.0.0.0:8080"), ("admin.listen", "127.0.0.1:9464"),
                         ("tls.listen", "")):
        section, k = key.split(".")
        v = env.get(f"STATUSWATCH__{section.upper()}__{k.upper()}",
                    data.get(section, {}).get(k, default))
        if v:
            keys[key] = v
    return path, keys


def listeners(name, svc):
    """{container port: bind host} the service listens on, or None when unknown."""
    if is_statuswatch(svc):
        cmd, args, _ = subcommand(listify(svc.get("command")))
        if cmd == "run":
            addrs = list(sw_config(name, svc)[1].values())
        elif cmd == "demo-upstream":
            addrs = [flag(args, "--listen", "127.0.0.1:3000")]
        elif cmd == "demo":
            addrs = [flag(args, "--listen", "127.0.0.1:8080"), flag(args, "--admin-listen", "127.0.0.1:9464"),
                     flag(args, "--upstream-listen", "127.0.0.1:3000")]
        else:
            addrs = []
        return {p: h for h, p in map(port_of, addrs) if p}
    known = IMAGES.get(split_image(str(svc.get("image", "")))[0])
    if not known:
        return None
    h, p = port_of(flag(listify(svc.get("command")), known[0], f"0.0.0.0:{known[1]}") if known[0]
                   else f"0.0.0.0:{known[1]}")
    return {p: h or "0.0.0.0"}


def parse_port(spec):
    """(host ip, host port, container port) of a `ports` entry; raises ValueError."""
    if isinstance(spec, dict):
        ip, pub, target = spec.get("host_ip", ""), spec.get("published"), spec.get("target")
    else:
        s = str(spec).split("/")[0]
        m = re.fullmatch(r"(?:(\[[0-9a-fA-F:]+\]|[0-9.]+):)?(?:(\d+):)?(\d+)", s)
        if not m:
            raise ValueError(f"not [IP:]HOST:CONTAINER: {spec!r}")
        ip, pub, target = (m.group(1) or "").strip("[]"), m.group(2), m.group(3)
    if ip:
        ipaddress.ip_address(ip)
    ports = [int(target)] + ([int(pub)] if pub else [])
    if not all(1 <= p <= 65535 for p in ports):
        raise ValueError(f"port out of 1..65535: {spec!r}")
    return ip, int(pub) if pub else None, int(target)


def mounted_yaml(svc, container_path):
    p = host_path(svc, container_path)
    if not p or not os.path.isfile(p):
        return None, None
    with open(p) as f:
        return p, yaml.safe_load(f)


def references(services):
    """[(from service, "svc:port", where)] of every other-service address it names: a
    statuswatch service's args and environment, a Prometheus' scrape and Alertmanager
    targets, a Grafana's provisioned datasource URLs."""
    out = []
    names = set(services)
    pat = re.compile(r"(?:^|//)([A-Za-z0-9_.-]+):(\d+)")
    for name, svc in services.items():
        texts = []
        if is_statuswatch(svc):
            texts += [(a, "command") for a in listify(svc.get("command"))]
            texts += [(v, f"environment {k}") for k, v in env_of(svc).items()]
        image = split_image(str(svc.get("image", "")))[0]
        if image == "prom/prometheus":
            path, cfg = mounted_yaml(svc, flag(listify(svc.get("command")), "--config.file", ""))
            for t in prom_targets(cfg or {}):
                texts.append((t, os.path.relpath(path, ROOT)))
        if image.startswith("grafana/"):
            for f in glob.glob(os.path.join(host_path(svc, "/etc/grafana/provisioning") or "/nonexistent",
                                            "datasources", "*.y*ml")):
                with open(f) as fh:
                    for ds in (yaml.safe_load(fh) or {}).get("datasources", []):
                        texts.append((str(ds.get("url", "")), os.path.relpath(f, ROOT)))
        for text, where in texts:
            for m in pat.finditer(text):
                if m.group(1) in names:
                    out.append((name, f"{m.group(1)}:{m.group(2)}", where))
    return out


def prom_targets(cfg):
    for sc in cfg.get("scrape_configs") or []:
        for st in sc.get("static_configs") or []:
            yield from st.get("targets") or []
    for am in (cfg.get("alerting") or {}).get("alertmanagers") or []:
        for st in am.get("static_configs") or []:
            yield from st.get("targets") or []


def rules_cadence():
    """(scrape, evaluation) interval of the shipped rules' header."""
    with open(RULES) as f:
        head = f.read(4000)
    s = re.search(r"--scrape-interval (\S+)", head)
    e = re.search(r"--evaluation-interval (\S+)", head)
    return (s.group(1) if s else None), (e.group(1) if e else None)


# ---------------------------------------------------------------- (a) structure

def sw_bin():
    return os.environ.get("STATUSWATCH_BIN") or os.path.join(ROOT, "target", "release", "statuswatch")


def sw_env(extra):
    """The environment of a statuswatch process here: ours minus any STATUSWATCH* (a
    container has none but its own), plus the service's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATUSWATCH")}
    env.update(extra)
    return env


def structure(services):
    names = set(services)
    for name, svc in services.items():
        image, build = svc.get("image"), svc.get("build")
        check(bool(image or build), f"{name}: has an image or a build")
        if build:
            b = build if isinstance(build, dict) else {"context": build}
            ctx = os.path.normpath(os.path.join(HERE, b.get("context", ".")))
            df = os.path.join(ctx, b.get("dockerfile", "Dockerfile"))
            check(os.path.isdir(ctx) and os.path.isfile(df),
                  f"{name}: build context {os.path.relpath(ctx, ROOT) or '.'} and {os.path.relpath(df, ROOT)} exist")
        elif image:
            iname, tag = split_image(str(image))
            known = IMAGES.get(iname)
            m = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)", tag)
            ok = bool(m) and (not known or known[2] <= (int(m.group(1)), int(m.group(2))) <= known[3])
            check(ok, f"{name}: image {image} pinned to an exact version"
                      + (f" within the supported {known[2][0]}.{known[2][1]}..{known[3][0]}.x" if known else ""))
        for src, dst in mounts(svc):
            check(os.path.exists(src), f"{name}: bind mount {os.path.relpath(src, ROOT)} -> {dst} exists")
        listen = listeners(name, svc)
        for spec in svc.get("ports") or []:
            try:
                _, _, target = parse_port(spec)
            except ValueError as e:
                check(False, f"{name}: port {spec!r} well-formed ({e})")
                continue
            if listen is None:
                check(True, f"{name}: port {spec} well-formed")
                continue
            host = listen.get(target)
            check(host is not None and not host.startswith(LOOPBACK),
                  f"{name}: port {spec} publishes {target}, which it listens on beyond loopback "
                  f"(listens on {', '.join(f'{h}:{p}' for p, h in sorted(listen.items())) or 'nothing'})")
        for d in depends(svc):
            check(d in names, f"{name}: depends_on {d} names a service")

    for frm, ref, where in references(services):
        svc, port = ref.rsplit(":", 1)
        listen = listeners(svc, services[svc])
        if svc == frm:
            continue
        if listen is not None:
            host = listen.get(int(port))
            check(host is not None and not host.startswith(LOOPBACK),
                  f"{frm} ({where}) -> {ref}: {svc} listens there beyond loopback")
        check(svc in depends(services[frm]), f"{frm} ({where}) -> {ref}: {frm} depends_on {svc}")

    for name, svc in services.items():
        if not is_statuswatch(svc):
            continue
        args = listify(svc.get("command"))
        r = subprocess.run([sw_bin(), *args, "--help"], capture_output=True, text=True, timeout=30)
        check(r.returncode == 0, f"{name}: `statuswatch {' '.join(args)}` accepted (--help)"
              + ("" if r.returncode == 0 else f": {(r.stderr or r.stdout).strip()}"))
        cmd, _, _ = subcommand(args)
        path, _ = sw_config(name, svc) if cmd == "run" else (None, None)
        # service names resolve on the compose network only
        env = {k: re.sub(rf"^({'|'.join(map(re.escape, services))}):", "127.0.0.1:", v)
               for k, v in env_of(svc).items()}
        argv = [sw_bin(), *(["--config", path] if path else []), "check"]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=sw_env(env))
        check(r.returncode == 0, f"{name}: its environment ({', '.join(env) or 'none'}) passes `statuswatch check`"
              + (f" with {os.path.relpath(path, ROOT)}" if path else "")
              + ("" if r.returncode == 0 else f": {(r.stderr or r.stdout).strip()}"))

    for name, svc in services.items():
        if split_image(str(svc.get("image", "")))[0] != "prom/prometheus":
            continue
        path, cfg = mounted_yaml(svc, flag(listify(svc.get("command")), "--config.file", ""))
        if not check(cfg is not None, f"{name}: its --config.file is mounted from a file here"):
            continue
        g = cfg.get("global") or {}
        want = rules_cadence()
        got = (g.get("scrape_interval", "1m"), g.get("evaluation_interval", "1m"))
        check(got == want, f"{name}: {os.path.relpath(path, ROOT)} scrapes every {got[0]} and evaluates every "
                           f"{got[1]}, as the shipped rules were generated for ({want[0]}, {want[1]})")
        files = [f for rf in cfg.get("rule_files") or [] for f in glob.glob(host_path(svc, rf) or "")]
        check(os.path.realpath(RULES) in map(os.path.realpath, files),
              f"{name}: its rule_files load the shipped rules ({len(files)} file(s))")


# ---------------------------------------------------------------- (b) the same commands

def order(services):
    done, out = set(), []

    def visit(n):
        if n not in done:
            done.add(n)
            for d in depends(services[n]):
                if d in services:
                    visit(d)
            out.append(n)
    for n in services:
        visit(n)
    return out


def run_them(services, tmp):
    procs = ec.Procs(tmp)
    failed = True
    try:
        # every (service, container port) -> a free loopback port
        ports = {n: {p: ec.free_port() for p in (listeners(n, s) or {})} for n, s in services.items()}

        def rewrite(text, own):
            def sub(m):
                host, port = m.group(1), int(m.group(2))
                svc = own if host in ("0.0.0.0", "[::]", "127.0.0.1", "localhost") else host
                if svc in ports and port in ports[svc]:
                    return f"127.0.0.1:{ports[svc][port]}"
                return m.group(0)
            return re.sub(r"(\[::\]|[A-Za-z0-9_.-]+):(\d+)", sub, text)

        prom = None
        for name in order(services):
            svc = services[name]
            if is_statuswatch(svc):
                args = listify(svc.get("command"))
                cmd, _, cfg = subcommand(args)
                argv = []
                for i, a in enumerate(args):
                    if i > 0 and args[i - 1] in ("--config", "-c"):
                        a = host_path(svc, a) or a
                    argv.append(rewrite(a, name))
                env = {k: rewrite(v, name) for k, v in env_of(svc).items()}
                if cmd == "run":  # the listeners the config file sets, moved by the environment
                    for key, addr in sw_config(name, svc)[1].items():
                        section, k = key.split(".")
                        env[f"STATUSWATCH__{section.upper()}__{k.upper()}"] = rewrite(addr, name)
                procs.start(name, [sw_bin(), *argv], env=sw_env(env))
            elif split_image(str(svc.get("image", "")))[0] == "prom/prometheus":
                prom = start_prometheus(procs, name, svc, rewrite, ports[name])
        check(prom is not None, "a Prometheus service to run")
        if prom:
            assert_prometheus(procs, prom, services)
        failed = R.failed > 0
    finally:
        ec.finish_run(procs, tmp, failed)


def start_prometheus(procs, name, svc, rewrite, ports):
    binary = ec.env_bin("PROMETHEUS_BIN", os.environ.get("PROMETHEUS_3_BIN"), "prometheus")
    if not check(binary is not None, "a prometheus binary ($PROMETHEUS_BIN, $PROMETHEUS_3_BIN or prometheus)"):
        return None
    version = ec.prometheus_version(binary)
    ec.log(f"prometheus {'.'.join(map(str, version or ())) or '?'}: {binary}")
    args = listify(svc.get("command"))
    path, cfg = mounted_yaml(svc, flag(args, "--config.file", ""))
    for sc in cfg.get("scrape_configs") or []:
        for st in sc.get("static_configs") or []:
            st["targets"] = [rewrite(t, name) for t in st.get("targets") or []]
    for am in (cfg.get("alerting") or {}).get("alertmanagers") or []:
        for st in am.get("static_configs") or []:
            # Alertmanager is not run: alerts go to a closed port (Prometheus logs it)
            st["targets"] = [rewrite(t, name) if rewrite(t, name) != t else f"127.0.0.1:{ec.free_port()}"
                             for t in st.get("targets") or []]
    cfg["rule_files"] = [host_path(svc, rf) or rf for rf in cfg.get("rule_files") or []]
    conf = ec.write(os.path.join(procs.tmp, "prometheus.yml"), json.dumps(cfg, indent=2) + "\n")
    data = os.path.join(procs.tmp, "prom-data")
    argv = [binary]
    for a in args:
        key = a.split("=", 1)[0]
        if key == "--config.file":
            a = f"--config.file={conf}"
        elif key == "--storage.tsdb.path":
            a = f"--storage.tsdb.path={data}"
        elif key == "--web.listen-address":
            continue
        argv.append(a)
    port = ports[IMAGES["prom/prometheus"][1]]
    argv.append(f"--web.listen-address=127.0.0.1:{port}")
    procs.start(name, argv)
    return ec.Prom(port)


def assert_prometheus(procs, prom, services):
    started = time.monotonic()

    def left():
        return max(1.0, DEADLINE - (time.monotonic() - started))

    def wait(what, fn):
        try:
            return ec.wait_for(what, fn, left(), procs.items())
        except RuntimeError as e:
            ec.log(str(e))
            return None

    check(wait("Prometheus ready", prom.ready) is not None, "Prometheus is ready")
    with open(RULES) as f:
        shipped = sum(len(g.get("rules", [])) for g in yaml.safe_load(f)["groups"])
    rules = wait("the rules loaded", lambda: prom.rules())
    check(rules is not None and len(rules) == shipped,
          f"Prometheus loaded the {shipped} shipped rules (got {len(rules) if rules is not None else 'none'})")

    # A group first runs at an offset within its interval: those of up to a minute
    # must have run by now; a longer one (statuswatch.slo.long, 5m) may not have yet.
    def groups():
        r = prom.try_api("/api/v1/rules")
        return r["data"]["groups"] if r.get("status") == "success" else None

    def evaluated():
        g = groups()
        due = [r for x in g or [] if x.get("interval", 0) <= 60 for r in x["rules"]]
        return g if g and all(r.get("health") != "unknown" for r in due) else None
    g = wait("every rule of the groups of up to 1m evaluated", evaluated) or groups() or []
    rules = [r for x in g for r in x["rules"]]
    bad = [f"{r['name']}: {r.get('health')} {r.get('lastError') or ''}" for x in g for r in x["rules"]
           if r.get("health") == "err" or (r.get("health") == "unknown" and x.get("interval", 0) <= 60)]
    later = sorted({x["name"] for x in g for r in x["rules"] if r.get("health") == "unknown"} - {
        x["name"] for x in g if x.get("interval", 0) <= 60})
    check(rules and not bad, f"every rule evaluated without error ({len(rules)} rules"
          + (f"; not yet run: {', '.join(later)}" if later else "") + ")"
          + (": " + "; ".join(bad[:5]) if bad else ""))

    up = wait("statuswatch scraped", lambda: prom.scalar('sum(up{job="statuswatch"})'))
    check(up == 1, f"Prometheus scrapes statuswatch (up = {up})")

    def tenants():
        r = prom.result("sum by (tenant) (statuswatch_responses_total)") or []
        got = {x["metric"].get("tenant") for x in r if float(x["value"][1]) > 0}
        return got if len(got & set(STUDIOS)) >= 4 else None
    got = wait("responses of 4 studios", tenants)
    check(got is not None, f"statuswatch_responses_total of several tenants: {sorted(got or [])}")
    classes = prom.result("sum by (class) (statuswatch_responses_total)") or []
    check(len(classes) >= 1, f"... and classes {sorted(x['metric'].get('class') for x in classes)}")
    rec = wait("the first recording rule's series",
               lambda: prom.result("tenant:statuswatch_requests:increase1m > 0"))
    check(bool(rec), f"the rules record: tenant:statuswatch_requests:increase1m for {len(rec or [])} tenant(s)")
    for name in order(services):
        if is_statuswatch(services[name]):
            check(procs.alive(name), f"{name} still runs")
    ec.log(f"assertions took {time.monotonic() - started:.0f} s")


def run():
    if not check(os.path.isfile(sw_bin()) and os.access(sw_bin(), os.X_OK),
                 f"statuswatch binary {sw_bin()} (set STATUSWATCH_BIN)"):
        return
    with open(COMPOSE) as f:
        compose = yaml.safe_load(f)
    services = compose.get("services") or {}
    if not check(bool(services), f"{os.path.relpath(COMPOSE, ROOT)} has services"):
        return
    structure(services)
    tmp = tempfile.mkdtemp(prefix="statuswatch-compose-check-", dir=os.environ.get("TMPDIR"))
    run_them(services, tmp)


if __name__ == "__main__":
    ec.run_main(R, "compose-check", run)

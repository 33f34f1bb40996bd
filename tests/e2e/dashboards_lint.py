#!/usr/bin/env python3
"""Lint the Grafana dashboards in dashboards/*.json against the project's conventions.

Checks, per dashboard:
  json          the file parses and is a JSON object
  meta          uid (statuswatch-*, unique across files), title, schemaVersion 39, tags,
                editable false (provisioned dashboards are changed in the repository, not in the UI)
  variables     $datasource (type datasource, query prometheus); $cluster, $namespace, $job,
                $instance (query variables, multi, include All, chained in that order on
                statuswatch_build_info); $job and $instance allValue ".+" (the labels always exist,
                as common dashboard linters require); $cluster and $namespace allValue ".*",
                because a single-cluster Prometheus or a static scrape has no such label and
                ".+" would match nothing there; $tenant if a panel uses it; every query variable
                uses ${datasource}
  panel-ids     every panel, including panels nested in collapsed rows, has a unique integer id,
                a gridPos, and a title unique within the dashboard
  datasource    every panel and every target uses {"type":"prometheus","uid":"${datasource}"}
  no-uid        no datasource UID literal anywhere (any "datasource" value other than the
                variable, no ${DS_...} import placeholders, no __inputs)
  units         fieldConfig.defaults.unit is set on every (non-row) panel
  descriptions  every (non-row) panel has a description of at least a sentence or two
  targets       every panel has targets; each has a non-empty expr, a unique refId,
                balanced brackets and quotes
  windows       every range selector ([...]) is [$__rate_interval] or [$__range]; no
                fixed window such as [5m], no subquery, no literal offset; every
                rate/irate/increase/*_over_time/... has a range
  selectors     every statuswatch_* metric in a panel target has a {...} selector that
                contains cluster=~"$cluster", namespace=~"$namespace", job=~"$job" and
                instance=~"$instance" (each pod's own series)
  fleet         fleet-level series -- the shipped rules' recorded series (tenant:statuswatch_...,
                job:statuswatch_..., literal or as {__name__=~"..."}) and ALERTS / ALERTS_FOR_STATE --
                carry cluster=~"$cluster", namespace=~"$namespace", job=~"$job" and never filter on
                instance (they have no instance label: all pods summed); ALERTS* select alertname
                =~"Statuswatch..." and ALERTS alertstate="firing"; a recorded name never spells its
                window (ratio1m, sum1h: the window changes when the rules are generated for another
                scrape interval), only a regex such as {__name__=~"tenant:statuswatch_signal_events:ratio[0-9a-z]+"};
                a panel reading fleet series uses no $instance at all and its description says it
                shows the fleet decision ("fleet") and ignores $instance; a panel reading a pod's
                in-process spike gauges (statuswatch_spike_active, statuswatch_signal_ratio,
                statuswatch_spikes_total) is titled "... (per pod, in-process)"
  links         every /d/<uid> link points at a dashboard in this directory; links to the
                tenant dashboard pass var-tenant; the tenant dashboard links back to overview
  promql        (only if promtool is on PATH) every expr, with the variables substituted,
                parses as PromQL (via `promtool check rules` on a throw-away rule file)

A self-test then mutates copies of the dashboards (a fixed [5m] window, a UID literal, a
missing unit, a duplicate id, a selector without $job, a fleet panel filtering on $instance, a
recorded name with a literal window, ...) and checks each mutation is caught.

stdlib only. Usage: dashboards_lint.py [DASHBOARD_DIR]. Last line:
  dashboards-lint: N passed, M failed
"""
import copy
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DS_VAR = {"${datasource}", "$datasource"}
RANGE_FUNCS = ("rate", "irate", "increase", "delta", "idelta", "deriv", "resets", "changes",
               "predict_linear", "holt_winters", "avg_over_time", "min_over_time", "max_over_time",
               "sum_over_time", "count_over_time", "quantile_over_time", "stddev_over_time",
               "stdvar_over_time", "last_over_time", "present_over_time", "absent_over_time")
SCOPE_LABELS = (("cluster", "$cluster"), ("namespace", "$namespace"), ("job", "$job"), ("instance", "$instance"))
SCOPE = ",".join(f'{lbl}=~"{var}"' for lbl, var in SCOPE_LABELS)
VARIABLES = {  # name: (allValue, label_values query)
    "cluster": (".*", "label_values(statuswatch_build_info, cluster)"),
    "namespace": (".*", 'label_values(statuswatch_build_info{cluster=~"$cluster"}, namespace)'),
    "job": (".+", 'label_values(statuswatch_build_info{cluster=~"$cluster",namespace=~"$namespace"}, job)'),
    "instance": (".+", 'label_values(statuswatch_build_info{cluster=~"$cluster",namespace=~"$namespace",job=~"$job"}, instance)'),
}
ALLOWED_WINDOWS = {"$__rate_interval", "${__rate_interval}", "$__range", "${__range}"}
DURATION = re.compile(r"^\d+(ms|s|m|h|d|w|y)")
METRIC = re.compile(r"(?<![A-Za-z0-9_:$])(statuswatch_[A-Za-z0-9_:]+)\s*(\{)?")
# Fleet-level series: the rules' recorded series (level:statuswatch_...:operation) and the alerts' own.
FLEET_SCOPE = SCOPE_LABELS[:3]
RECORDED = re.compile(r"(?<![A-Za-z0-9_:$])([A-Za-z_][A-Za-z0-9_]*:statuswatch_[A-Za-z0-9_:]+)\s*(\{)?")
ALERTS_RE = re.compile(r"(?<![A-Za-z0-9_:$])(ALERTS(?:_FOR_STATE)?)(?![A-Za-z0-9_:])\s*(\{)?")
NAME_MATCHER = re.compile(r'__name__\s*(=~|=|!=|!~)\s*"((?:[^"\\]|\\.)*)"')
LITERAL_WINDOW = re.compile(r"\d+(?:ms|s|m|h|d|w|y)(?![a-z])")
POD_SPIKE_METRICS = ("statuswatch_spike_active", "statuswatch_signal_ratio", "statuswatch_spikes_total")
POD_TITLE = "(per pod, in-process)"


def all_panels(panels):
    """Every panel, with panels nested in (collapsed) rows."""
    for p in panels or []:
        yield p
        if p.get("type") == "row":
            yield from all_panels(p.get("panels"))


def walk(obj, path="$"):
    """Yield (path, key, value) for every dict entry in a JSON tree."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield path, k, v
            yield from walk(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from walk(v, f"{path}[{i}]")


def strip_strings(expr):
    """expr with the contents of string literals blanked (so label values never look like syntax)."""
    out, q, i = [], None, 0
    while i < len(expr):
        c = expr[i]
        if q:
            if c == "\\":
                out.append("  ")
                i += 2
                continue
            if c == q:
                q = None
                out.append(c)
            else:
                out.append(" ")
        else:
            if c in "\"'`":
                q = c
            out.append(c)
        i += 1
    return "".join(out), q is None


def matching(s, i, open_c, close_c):
    depth = 0
    for j in range(i, len(s)):
        if s[j] == open_c:
            depth += 1
        elif s[j] == close_c:
            depth -= 1
            if depth == 0:
                return j
    return -1


def check_expr(expr, where):
    """Problems of one PromQL expression (string) as a list of messages."""
    errs = []
    if not isinstance(expr, str) or not expr.strip():
        return [f"{where}: empty expr"]
    bare, closed = strip_strings(expr)
    if not closed:
        errs.append(f"{where}: unterminated string literal")
    for o, c in ("()", "{}", "[]"):
        depth = 0
        for ch in bare:
            depth += (ch == o) - (ch == c)
            if depth < 0:
                break
        if depth != 0:
            errs.append(f"{where}: unbalanced {o}{c}")
    # range windows (outside string literals: a __name__ regex may hold a character class)
    for m in re.finditer(r"\[([^\]]*)\]", bare):
        w = expr[m.start(1):m.end(1)].strip()
        if w not in ALLOWED_WINDOWS:
            errs.append(f"{where}: range [{w}] must be [$__rate_interval] (or [$__range] for "
                        f"whole-range totals), not a fixed window or a subquery")
    if re.search(r"\boffset\s+-?\d", bare):
        errs.append(f"{where}: literal offset")
    for m in re.finditer(r"\b(" + "|".join(RANGE_FUNCS) + r")\s*\(", bare):
        end = matching(bare, m.end() - 1, "(", ")")
        inner = expr[m.end():end] if end > 0 else ""
        if "[" not in inner:
            errs.append(f"{where}: {m.group(1)}() without a range selector")
    # selectors of statuswatch_ metrics
    for m in METRIC.finditer(bare):
        name = m.group(1)
        if m.group(2) is None:
            errs.append(f"{where}: {name} without a label selector (needs {SCOPE})")
            continue
        start = m.end() - 1
        end = matching(bare, start, "{", "}")
        sel = expr[start:end + 1] if end > 0 else expr[start:]
        for lbl, var in SCOPE_LABELS:
            if not re.search(r'\b' + lbl + r'\s*=~\s*"' + re.escape(var) + r'"', sel):
                errs.append(f'{where}: {name}{sel} does not select {lbl}=~"{var}"')
    return errs


def fleet_selectors(expr):
    """[(kind, name, selector text)] of the fleet-level series an expression reads: kind "alerts"
    (ALERTS, ALERTS_FOR_STATE), "recorded" (a recorded name written out) or "regex" (a
    {__name__=~"level:statuswatch_..."} selector; name = the regex). selector is None when bare."""
    bare, _ = strip_strings(expr)
    out = []

    def selector_at(start):
        end = matching(bare, start, "{", "}")
        return expr[start:end + 1] if end > 0 else expr[start:]

    for rx, kind in ((ALERTS_RE, "alerts"), (RECORDED, "recorded")):
        for m in rx.finditer(bare):
            out.append((kind, m.group(1), selector_at(m.end() - 1) if m.group(2) else None))
    # selectors without a metric name in front: {__name__=~"...", ...}
    for m in re.finditer(r"\{", bare):
        before = bare[:m.start()].rstrip()
        if before and re.search(r"[A-Za-z0-9_:]$", before):
            continue
        sel = selector_at(m.start())
        nm = NAME_MATCHER.search(sel)
        if nm and re.match(r"\^?\(?[A-Za-z_|()]*:statuswatch_", nm.group(2)):
            out.append(("regex", nm.group(2), sel))
    return out


def check_fleet_expr(expr, where):
    """Problems of the fleet-level selectors of one expression (see the module docstring)."""
    errs = []
    if not isinstance(expr, str):
        return errs
    for kind, name, sel in fleet_selectors(expr):
        if sel is None:
            errs.append(f"{where}: {name} without a label selector (needs " +
                        ",".join(f'{lbl}=~"{var}"' for lbl, var in FLEET_SCOPE) + ")")
            continue
        for lbl, var in FLEET_SCOPE:
            if not re.search(r'\b' + lbl + r'\s*=~\s*"' + re.escape(var) + r'"', sel):
                errs.append(f'{where}: fleet series {name}{sel if kind != "regex" else ""} does not select '
                            f'{lbl}=~"{var}"')
        if re.search(r"\binstance\s*[=!]", sel) or "$instance" in sel or "${instance" in sel:
            errs.append(f"{where}: fleet series {name} filters on instance ({sel}): recorded series and "
                        "alerts sum all pods and have no instance label")
        if kind == "alerts":
            if not re.search(r'\balertname\s*=~?\s*"Statuswatch', sel):
                errs.append(f'{where}: {name}{sel} does not select alertname=~"Statuswatch..." (other alerts)')
            if name == "ALERTS" and not re.search(r'\balertstate\s*=\s*"firing"', sel):
                errs.append(f'{where}: {name}{sel} does not select alertstate="firing" (pending does not page)')
        else:
            op = name.rsplit(":", 1)[-1]
            if LITERAL_WINDOW.search(op):
                errs.append(f"{where}: recorded name {name!r} spells its window ({LITERAL_WINDOW.search(op).group(0)}),"
                            " which changes when the rules are generated for another scrape interval: match it with"
                            ' {__name__=~"' + name.rsplit(":", 1)[0] + ":" + LITERAL_WINDOW.split(op)[0]
                            + '[0-9a-z]+",...}')
    return errs


def check_fleet_panel(p, where):
    """Panel-level rules: fleet panels ignore $instance and say so; per-pod spike panels say so."""
    errs = []
    exprs = [t.get("expr") or "" for t in p.get("targets") or [] if isinstance(t.get("expr"), str)]
    fleet = any(fleet_selectors(e) for e in exprs)
    title, desc = p.get("title") or "", p.get("description") or ""
    if fleet:
        if any("$instance" in e or "${instance" in e for e in exprs):
            errs.append(f"{where}: reads fleet series (all pods summed) but filters on $instance: "
                        "a fleet panel filters on cluster/namespace/job/tenant only")
        if "fleet" not in desc.lower() or "$instance" not in desc:
            errs.append(f"{where}: fleet panel's description must say it shows the fleet decision "
                        "(\"fleet\") and ignores $instance")
        if POD_TITLE in title:
            errs.append(f"{where}: fleet panel titled {POD_TITLE!r}")
    pod_spike = any(re.search(r"(?<![A-Za-z0-9_:])(" + "|".join(POD_SPIKE_METRICS) + r")\b", e) for e in exprs)
    if pod_spike and POD_TITLE not in title:
        errs.append(f"{where}: reads a pod's in-process spike gauges ({', '.join(POD_SPIKE_METRICS)}): "
                    f"title it '... {POD_TITLE}' (the alerts and the fleet panels use the fleet decision)")
    return errs


def substitute(expr, tenant="demo"):
    return (expr.replace("${datasource}", "prometheus").replace("$datasource", "prometheus")
            .replace("$__rate_interval", "1m").replace("${__rate_interval}", "1m")
            .replace("$__range", "1h").replace("${__range}", "1h")
            .replace("$__interval", "15s").replace("$job", "statuswatch").replace("$instance", ".*")
            .replace("$cluster", ".*").replace("$namespace", ".*")
            .replace("$tenant", tenant))


class Result:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.failed_names = set()

    def check(self, name, errs, quiet=False):
        if errs:
            self.failed += 1
            self.failed_names.add(name.rsplit(": ", 1)[-1])
            if not quiet:
                print(f"FAIL {name}")
                for e in errs[:30]:
                    print(f"     {e}")
                if len(errs) > 30:
                    print(f"     ... and {len(errs) - 30} more")
        else:
            self.passed += 1
            if not quiet:
                print(f"ok   {name}")
        return not errs


def lint_dashboard(d, name, uids):
    """{check name: [problems]} for one parsed dashboard."""
    r = {}
    # meta
    e = []
    uid = d.get("uid")
    if not isinstance(uid, str) or not re.fullmatch(r"statuswatch-[a-z0-9-]+", uid or ""):
        e.append(f"uid {uid!r} must be a stable 'statuswatch-...' string")
    if not d.get("title"):
        e.append("title missing")
    if d.get("schemaVersion") != 39:
        e.append(f"schemaVersion {d.get('schemaVersion')!r}, expected 39")
    if "statuswatch" not in (d.get("tags") or []):
        e.append("tag 'statuswatch' missing (dashboard links use it)")
    if d.get("editable") is not False:
        e.append("editable must be false (provisioned: edit the JSON in the repository)")
    if d.get("id") not in (None,):
        e.append("top-level id must be null (Grafana assigns it)")
    r["meta"] = e

    panels = list(all_panels(d.get("panels")))
    leaf = [p for p in panels if p.get("type") != "row"]
    exprs = [(p, t) for p in leaf for t in (p.get("targets") or [])]

    # variables
    e = []
    tvars = {v.get("name"): v for v in (d.get("templating") or {}).get("list") or []}
    dsv = tvars.get("datasource")
    if not dsv or dsv.get("type") != "datasource" or dsv.get("query") != "prometheus":
        e.append("$datasource variable (type datasource, query prometheus) missing")
    names = [v.get("name") for v in (d.get("templating") or {}).get("list") or []]
    if [n for n in names if n in VARIABLES] != list(VARIABLES):
        e.append(f"variables {names}: $cluster, $namespace, $job, $instance must come in this order")
    for n, (all_value, query) in VARIABLES.items():
        v = tvars.get(n)
        if not v:
            e.append(f"${n} variable missing")
            continue
        if not (v.get("multi") and v.get("includeAll") and v.get("allValue") == all_value):
            e.append(f"${n} must be multi, include All, allValue {all_value!r}")
        q = v.get("definition") or (v.get("query") or {}).get("query")
        if (q or "").replace(" ", "") != query.replace(" ", ""):
            e.append(f"${n} query is {q!r}, expected {query!r}")
    uses_tenant = any("$tenant" in (t.get("expr") or "") for _, t in exprs)
    if uses_tenant:
        v = tvars.get("tenant")
        q = v and (v.get("definition") or (v.get("query") or {}).get("query") if isinstance(v.get("query"), dict)
                   else v and v.get("query"))
        want = "label_values(statuswatch_responses_total{" + SCOPE + "}, tenant)"
        if not v:
            e.append("panels use $tenant but there is no tenant variable")
        elif (q or "").replace(" ", "") != want.replace(" ", ""):
            e.append(f"$tenant query is {q!r}, expected {want!r}")
    for n, v in tvars.items():
        if v.get("type") == "query":
            ds = v.get("datasource")
            if not (isinstance(ds, dict) and ds.get("uid") in DS_VAR):
                e.append(f"variable ${n} does not use ${{datasource}}")
    r["variables"] = e

    # panel ids
    e, seen, titles = [], {}, set()
    for p in panels:
        pid = p.get("id")
        if not isinstance(pid, int) or isinstance(pid, bool):
            e.append(f"panel {p.get('title')!r} has no integer id ({pid!r})")
        elif pid in seen:
            e.append(f"panel id {pid} used by {seen[pid]!r} and {p.get('title')!r}")
        else:
            seen[pid] = p.get("title")
        if p.get("type") != "row" and p.get("title") in titles:
            e.append(f"panel title {p.get('title')!r} used twice (titles name panels in tests and links)")
        titles.add(p.get("title"))
        if "gridPos" not in p:
            e.append(f"panel {p.get('title')!r} has no gridPos")
    r["panel-ids"] = e

    # datasource on every panel and target
    e = []
    for p in leaf:
        ds = p.get("datasource")
        if not (isinstance(ds, dict) and ds.get("type") == "prometheus" and ds.get("uid") in DS_VAR):
            e.append(f"panel {p.get('id')} {p.get('title')!r}: datasource {ds!r}")
        for t in p.get("targets") or []:
            ds = t.get("datasource")
            if not (isinstance(ds, dict) and ds.get("type") == "prometheus" and ds.get("uid") in DS_VAR):
                e.append(f"panel {p.get('id')} target {t.get('refId')}: datasource {ds!r}")
    r["datasource"] = e

    # no UID literal anywhere
    e = []
    if "__inputs" in d:
        e.append("__inputs present (exported-for-sharing dashboard); use the $datasource variable")
    for path, k, v in walk(d):
        if k == "datasource":
            if isinstance(v, str) and v not in DS_VAR:
                e.append(f"{path}.datasource = {v!r}")
            elif isinstance(v, dict) and v.get("uid") not in DS_VAR:
                e.append(f"{path}.datasource.uid = {v.get('uid')!r}")
        if isinstance(v, str) and "${DS_" in v:
            e.append(f"{path}.{k} uses an import placeholder {v!r}")
    r["no-uid"] = e

    # units and descriptions
    e1, e2 = [], []
    for p in leaf:
        unit = ((p.get("fieldConfig") or {}).get("defaults") or {}).get("unit")
        if not isinstance(unit, str) or not unit.strip():
            e1.append(f"panel {p.get('id')} {p.get('title')!r}: fieldConfig.defaults.unit missing")
        desc = p.get("description")
        if not isinstance(desc, str) or len(desc.strip()) < 60:
            e2.append(f"panel {p.get('id')} {p.get('title')!r}: description missing or too short "
                      "(say what it shows and what to do when it looks bad)")
    r["units"] = e1
    r["descriptions"] = e2

    # targets / windows / selectors
    et, ew, es = [], [], []
    for p in leaf:
        ts = p.get("targets") or []
        if not ts:
            et.append(f"panel {p.get('id')} {p.get('title')!r}: no targets")
        refs = [t.get("refId") for t in ts]
        if len(set(refs)) != len(refs) or None in refs:
            et.append(f"panel {p.get('id')}: refIds {refs} not unique")
        for t in ts:
            where = f"panel {p.get('id')} {p.get('title')!r} {t.get('refId')}"
            for msg in check_expr(t.get("expr"), where):
                if "range [" in msg or "offset" in msg or "without a range" in msg:
                    ew.append(msg)
                elif "statuswatch_" in msg:
                    es.append(msg)
                else:
                    et.append(msg)
    r["targets"] = et
    r["windows"] = ew
    r["selectors"] = es

    # fleet-level series and the panels that read them
    ef = []
    for p in leaf:
        where = f"panel {p.get('id')} {p.get('title')!r}"
        for t in p.get("targets") or []:
            ef.extend(check_fleet_expr(t.get("expr"), f"{where} {t.get('refId')}"))
        ef.extend(check_fleet_panel(p, where))
    r["fleet"] = ef

    # links
    e = []
    urls = [(path, v) for path, k, v in walk(d) if k == "url" and isinstance(v, str) and v]
    for path, u in urls:
        m = re.search(r"/d/([A-Za-z0-9_-]+)", u)
        if m:
            if m.group(1) not in uids:
                e.append(f"{path}: link to unknown dashboard uid {m.group(1)!r}")
            if m.group(1) == "statuswatch-tenant" and "var-tenant=" not in u:
                e.append(f"{path}: link to the tenant dashboard without var-tenant")
            for var in ("cluster", "namespace", "job", "instance", "datasource"):
                if f"${{{var}:queryparam}}" not in u:
                    e.append(f"{path}: link does not carry ${{{var}:queryparam}}")
        if re.search(r"https?://", u):
            e.append(f"{path}: absolute URL {u!r} (use /d/<uid> paths)")
    if uid == "statuswatch-tenant" and not any("/d/statuswatch-overview" in u for _, u in urls):
        e.append("tenant dashboard has no link back to the overview")
    if uid == "statuswatch-overview" and not any("/d/statuswatch-tenant" in u for _, u in urls):
        e.append("overview has no link to the tenant dashboard")
    r["links"] = e
    return r


def promtool_check(dashboards):
    """{dashboard name: [problems]} from promtool parsing every substituted expr; None if no promtool."""
    promtool = shutil.which("promtool")
    if not promtool:
        return None
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, d in dashboards:
            rules, index = [], {}
            for p in all_panels(d.get("panels")):
                for t in p.get("targets") or []:
                    rec = f"lint:panel_{p.get('id')}_{t.get('refId')}".lower()
                    index[rec] = f"panel {p.get('id')} {p.get('title')!r} {t.get('refId')}"
                    rules.append({"record": rec, "expr": substitute(t.get("expr") or "")})
            f = os.path.join(tmp, re.sub(r"\W", "_", name) + ".rules.json")
            # A JSON document is valid YAML, so no YAML library is needed.
            with open(f, "w") as fh:
                json.dump({"groups": [{"name": "lint", "rules": rules}]}, fh)
            pr = subprocess.run([promtool, "check", "rules", f], capture_output=True, text=True)
            errs = []
            if pr.returncode != 0:
                text = (pr.stdout + pr.stderr).strip()
                errs = [line for line in text.splitlines() if line.strip() and "Checking" not in line][:20] \
                    or [text]
            out[name] = errs
    return out


def lint_all(dashboards, res, quiet=False):
    """Run every check over [(name, dashboard or exception)]; returns True if all passed."""
    ok = True
    uids = {}
    for name, d in dashboards:
        if isinstance(d, dict) and isinstance(d.get("uid"), str):
            uids.setdefault(d["uid"], []).append(name)
    for name, d in dashboards:
        if not isinstance(d, dict):
            ok &= res.check(f"{name}: json", [f"{d}"], quiet)
            continue
        ok &= res.check(f"{name}: json", [], quiet)
        checks = lint_dashboard(d, name, set(uids))
        dup = uids.get(d.get("uid"), [])
        if len(dup) > 1:
            checks["meta"].append(f"uid {d.get('uid')!r} shared by {dup}")
        for cname, errs in checks.items():
            ok &= res.check(f"{name}: {cname}", errs, quiet)
    pt = promtool_check([(n, d) for n, d in dashboards if isinstance(d, dict)])
    if pt is None:
        if not quiet:
            print("skip promql parse check: promtool not on PATH")
    else:
        for name, errs in pt.items():
            ok &= res.check(f"{name}: promql", errs, quiet)
    return ok


def load(dirpath):
    out = []
    for f in sorted(glob.glob(os.path.join(dirpath, "*.json"))):
        try:
            with open(f) as fh:
                out.append((os.path.basename(f), json.load(fh)))
        except (OSError, ValueError) as e:
            out.append((os.path.basename(f), f"invalid JSON: {e}"))
    return out


def first_target(d, pred=lambda p, t: True):
    for p in all_panels(d["panels"]):
        for t in p.get("targets") or []:
            if pred(p, t):
                return p, t
    raise AssertionError("no matching target to mutate")


def mutations():
    """(name, function mutating a deep copy of the dashboard list in place)."""
    def fixed_window(ds):
        _, t = first_target(ds[0][1], lambda p, t: "[$__rate_interval]" in t["expr"])
        t["expr"] = t["expr"].replace("[$__rate_interval]", "[5m]", 1)

    def subquery(ds):
        _, t = first_target(ds[0][1], lambda p, t: "[$__rate_interval]" in t["expr"])
        t["expr"] = f"max_over_time(({t['expr']})[1h:1m])"

    def uid_literal_panel(ds):
        p, _ = first_target(ds[0][1])
        p["datasource"] = {"type": "prometheus", "uid": "P1809F7CD0C75ACF3"}

    def uid_literal_target(ds):
        _, t = first_target(ds[-1][1])
        t["datasource"] = {"type": "prometheus", "uid": "PBFA97CFB590B2093"}

    def ds_string(ds):
        _, t = first_target(ds[0][1])
        t["datasource"] = "Prometheus"

    def no_unit(ds):
        p, _ = first_target(ds[0][1])
        del p["fieldConfig"]["defaults"]["unit"]

    def no_unit_nested(ds):
        rows = [p for p in ds[0][1]["panels"] if p.get("type") == "row" and p.get("panels")]
        del rows[0]["panels"][0]["fieldConfig"]["defaults"]["unit"]

    def no_description(ds):
        p, _ = first_target(ds[-1][1])
        p["description"] = ""

    def dup_id_nested(ds):
        rows = [p for p in ds[0][1]["panels"] if p.get("type") == "row" and p.get("panels")]
        top = [p for p in ds[0][1]["panels"] if p.get("type") != "row"]
        rows[0]["panels"][0]["id"] = top[0]["id"]

    def no_job(ds):
        _, t = first_target(ds[0][1], lambda p, t: 'job=~"$job",' in t["expr"])
        t["expr"] = t["expr"].replace('job=~"$job",', "", 1)

    def bare_metric(ds):
        _, t = first_target(ds[0][1], lambda p, t: "rate(" in t["expr"])
        t["expr"] = re.sub(r"(statuswatch_\w+)\{[^}]*\}", r"\1", t["expr"], count=1)

    def unbalanced(ds):
        _, t = first_target(ds[-1][1])
        t["expr"] = t["expr"] + ")"

    def bad_schema(ds):
        ds[0][1]["schemaVersion"] = 27

    def dup_uid(ds):
        ds[-1][1]["uid"] = ds[0][1]["uid"]

    def no_ds_var(ds):
        tl = ds[0][1]["templating"]["list"]
        tl[:] = [v for v in tl if v["name"] != "datasource"]

    def job_not_all(ds):
        for v in ds[0][1]["templating"]["list"]:
            if v["name"] == "job":
                v["includeAll"] = False

    def broken_link(ds):
        for p in all_panels(ds[0][1]["panels"]):
            for o in (p.get("fieldConfig") or {}).get("overrides") or []:
                for prop in o.get("properties") or []:
                    if prop.get("id") == "links":
                        prop["value"][0]["url"] = prop["value"][0]["url"].replace("var-tenant=", "var-x=")
                        return
        raise AssertionError("no table link to mutate")

    def invalid_json(ds):
        ds[0] = (ds[0][0], "invalid JSON: mutated")

    def editable(ds):
        ds[-1][1]["editable"] = True

    def job_all_star(ds):
        for v in ds[0][1]["templating"]["list"]:
            if v["name"] == "job":
                v["allValue"] = ".*"

    def no_namespace_var(ds):
        tl = ds[-1][1]["templating"]["list"]
        tl[:] = [v for v in tl if v["name"] != "namespace"]

    def no_namespace_selector(ds):
        _, t = first_target(ds[-1][1], lambda p, t: 'namespace=~"$namespace",' in t["expr"])
        t["expr"] = t["expr"].replace('namespace=~"$namespace",', "", 1)

    def link_without_cluster(ds):
        for link in ds[-1][1].get("links") or []:
            if "/d/" in (link.get("url") or ""):
                link["url"] = link["url"].replace("&${cluster:queryparam}", "")
                return
        raise AssertionError("no dashboard link to mutate")

    def no_targets(ds):
        p, _ = first_target(ds[0][1])
        p["targets"] = []

    def fleet_target(ds, i=0):
        return first_target(ds[i][1], lambda p, t: bool(fleet_selectors(t.get("expr") or "")))

    def fleet_instance(ds):
        # a fleet panel filtering on $instance, as the per-pod panels do
        _, t = fleet_target(ds)
        t["expr"] = t["expr"].replace('job=~"$job"', 'job=~"$job",instance=~"$instance"', 1)

    def fleet_instance_tenant(ds):
        _, t = fleet_target(ds, -1)
        t["expr"] = t["expr"].replace('job=~"$job"', 'job=~"$job",instance=~"$instance"', 1)

    def fleet_literal_window(ds):
        # a recorded name with its window spelled out (what the rules file holds today)
        _, t = first_target(ds[-1][1], lambda p, t: '{__name__=~"tenant:statuswatch_signal_events:ratio' in t["expr"])
        t["expr"] = re.sub(r'\{__name__=~"(tenant:statuswatch_signal_events:ratio)\[0-9a-z\]\+",', r"\g<1>1m{",
                           t["expr"], count=1)

    def fleet_literal_window_regex(ds):
        _, t = first_target(ds[0][1], lambda p, t: '[0-9a-z]+"' in t["expr"])
        t["expr"] = t["expr"].replace('[0-9a-z]+"', '1m"', 1)

    def fleet_no_job(ds):
        _, t = fleet_target(ds, -1)
        t["expr"] = t["expr"].replace(',job=~"$job"', "", 1)

    def alerts_any_state(ds):
        _, t = first_target(ds[0][1], lambda p, t: 'ALERTS{alertstate="firing",' in t["expr"])
        t["expr"] = t["expr"].replace('ALERTS{alertstate="firing",', "ALERTS{", 1)

    def fleet_description(ds):
        p, _ = fleet_target(ds)
        p["description"] = p["description"].replace("$instance", "the instance variable")

    def pod_panel_title(ds):
        p, _ = first_target(ds[-1][1], lambda p, t: "statuswatch_spike_active" in t["expr"])
        p["title"] = p["title"].replace(" " + POD_TITLE, "")

    muts = [(fixed_window, "windows"), (subquery, "windows"), (uid_literal_panel, "no-uid"),
            (uid_literal_target, "no-uid"), (ds_string, "datasource"), (no_unit, "units"),
            (no_unit_nested, "units"), (no_description, "descriptions"), (dup_id_nested, "panel-ids"),
            (no_job, "selectors"), (bare_metric, "selectors"), (unbalanced, "targets"), (bad_schema, "meta"),
            (dup_uid, "meta"), (no_ds_var, "variables"), (job_not_all, "variables"), (broken_link, "links"),
            (invalid_json, "json"), (no_targets, "targets"), (editable, "meta"), (job_all_star, "variables"),
            (no_namespace_var, "variables"), (no_namespace_selector, "selectors"), (link_without_cluster, "links"),
            (fleet_instance, "fleet"), (fleet_instance_tenant, "fleet"), (fleet_literal_window, "fleet"),
            (fleet_literal_window_regex, "fleet"), (fleet_no_job, "fleet"), (alerts_any_state, "fleet"),
            (fleet_description, "fleet"), (pod_panel_title, "fleet")]
    if shutil.which("promtool"):
        def promql_syntax(ds):
            _, t = first_target(ds[0][1], lambda p, t: "sum by" in t["expr"])
            t["expr"] = t["expr"].replace("sum by", "sum bye", 1)
        muts.append((promql_syntax, "promql"))
    return [(m.__name__, m, want) for m, want in muts]


def self_test(dashboards, res):
    print("self-test: each mutation of a copy must be caught")
    if len([d for _, d in dashboards if isinstance(d, dict)]) < 2:
        res.check("self-test: needs the two dashboards", ["fewer than two dashboards loaded"])
        return
    for name, mut, want in mutations():
        ds = copy.deepcopy(dashboards)
        try:
            mut(ds)
        except (AssertionError, KeyError, IndexError) as e:
            res.check(f"self-test: {name}", [f"could not apply the mutation: {e!r}"])
            continue
        r = Result()
        lint_all(ds, r, quiet=True)
        res.check(f"self-test: {name} is caught by '{want}'",
                  [] if want in r.failed_names else
                  [f"check '{want}' passed a broken dashboard (failed checks: {sorted(r.failed_names) or 'none'})"])


def main():
    dirpath = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "dashboards")
    dashboards = load(dirpath)
    res = Result()
    if not dashboards:
        res.check("dashboards found", [f"no *.json in {dirpath}"])
    else:
        lint_all(dashboards, res)
        self_test(dashboards, res)
    print(f"dashboards-lint: {res.passed} passed, {res.failed} failed")
    return 1 if res.failed else 0


if __name__ == "__main__":
    sys.exit(main())

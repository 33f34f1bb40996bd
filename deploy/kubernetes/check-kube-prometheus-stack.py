#!/usr/bin/env python3
"""Prove that kube-prometheus-stack, installed with its DEFAULT values, picks up every
statuswatch object a user applies, and that the routing it then runs is alertmanager.yml's.

    check-kube-prometheus-stack.py BUILD.yaml...   # rendered kustomize builds (render.py)

For every object of the builds that the chart's Prometheus, Alertmanager or Grafana selects
by label, the object must be selected by the chart's default selector for its kind:
  PrometheusRule      ruleSelector + ruleNamespaceSelector
  PodMonitor          podMonitorSelector + podMonitorNamespaceSelector
  ServiceMonitor, Probe, ScrapeConfig  likewise (none shipped today)
  AlertmanagerConfig  alertmanagerConfigSelector + alertmanagerConfigNamespaceSelector
  ConfigMap/Secret    the Grafana dashboard sidecar's label/labelValue and searchNamespace,
                      for every object carrying the sidecar's label key, and every
                      dashboards/*.json must be in one of them, verbatim.
The dashboards must pick their datasource through a variable that resolves to the chart's
default Prometheus datasource. Then the chart's Alertmanager configuration is computed both
ways (Helm's merge of values-alertmanager.yaml into the chart's default alertmanager.config;
the operator's merge of the AlertmanagerConfig) and compared with alertmanager.yml, through
amtool when installed. A negative test proves the check fails: copies of the shipped
objects without the label the chart selects by must be reported as not selected.
Needs PyYAML. Exit 1 on any problem.
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

import yaml

sys.dont_write_bytecode = True  # render.py and gen-prometheusrule.py are imported below

# ---- kube-prometheus-stack's defaults: ONE table, a chart bump is one edit --------------
# Read from prometheus-community/helm-charts, charts/kube-prometheus-stack, chart version
# 88.5.3 (appVersion v0.93.1, the prometheus-operator), values.yaml keys as named, and how
# templates/prometheus/prometheus.yaml and templates/alertmanager/alertmanager.yaml turn
# them into the Prometheus and Alertmanager objects' selectors; the Grafana keys are the
# chart's grafana: section over the grafana subchart 12.11.1 (grafana-community/helm-charts)
# defaults; the datasource from templates/grafana/configmaps-datasources.yaml.
CHART = "kube-prometheus-stack 88.5.3 (prometheus-operator v0.93.1, grafana chart 12.11.1)"
RELEASE = "kube-prometheus-stack"  # the release name users install the chart as (docs/kubernetes.md)
DEFAULTS = {
    "prometheus.prometheusSpec.ruleSelectorNilUsesHelmValues": True,
    "prometheus.prometheusSpec.ruleSelector": {},
    "prometheus.prometheusSpec.ruleNamespaceSelector": {},
    "prometheus.prometheusSpec.podMonitorSelectorNilUsesHelmValues": True,
    "prometheus.prometheusSpec.podMonitorSelector": {},
    "prometheus.prometheusSpec.podMonitorNamespaceSelector": {},
    "prometheus.prometheusSpec.serviceMonitorSelectorNilUsesHelmValues": True,
    "prometheus.prometheusSpec.serviceMonitorSelector": {},
    "prometheus.prometheusSpec.serviceMonitorNamespaceSelector": {},
    "prometheus.prometheusSpec.probeSelectorNilUsesHelmValues": True,
    "prometheus.prometheusSpec.probeSelector": {},
    "prometheus.prometheusSpec.probeNamespaceSelector": {},
    "prometheus.prometheusSpec.scrapeConfigSelectorNilUsesHelmValues": True,
    "prometheus.prometheusSpec.scrapeConfigSelector": {},
    "prometheus.prometheusSpec.scrapeConfigNamespaceSelector": {},
    "alertmanager.alertmanagerSpec.alertmanagerConfigSelector": {},
    "alertmanager.alertmanagerSpec.alertmanagerConfigNamespaceSelector": {},
    "alertmanager.alertmanagerSpec.alertmanagerConfigMatcherStrategy": {},  # {} = operator's OnNamespace
    "grafana.sidecar.dashboards.enabled": True,
    "grafana.sidecar.dashboards.label": "grafana_dashboard",
    "grafana.sidecar.dashboards.labelValue": "1",
    "grafana.sidecar.dashboards.searchNamespace": "ALL",
    "grafana.sidecar.dashboards.folderAnnotation": None,  # grafana chart default, not set by kps
    "grafana.sidecar.datasources.defaultDatasourceEnabled": True,
    "grafana.sidecar.datasources.isDefaultDatasource": True,
    "grafana.sidecar.datasources.name": "Prometheus",  # type prometheus
    "grafana.sidecar.datasources.uid": "prometheus",
    "alertmanager.config": {
        "global": {"resolve_timeout": "5m"},
        "inhibit_rules": [
            {"source_matchers": ["severity = critical"], "target_matchers": ["severity =~ warning|info"],
             "equal": ["namespace", "alertname"]},
            {"source_matchers": ["severity = warning"], "target_matchers": ["severity = info"],
             "equal": ["namespace", "alertname"]},
            {"source_matchers": ["alertname = InfoInhibitor"], "target_matchers": ["severity = info"],
             "equal": ["namespace"]},
            {"target_matchers": ["alertname = InfoInhibitor"]},
        ],
        "route": {"group_by": ["namespace"], "group_wait": "30s", "group_interval": "5m",
                  "repeat_interval": "12h", "receiver": "null",
                  "routes": [{"receiver": "null", "matchers": ['alertname = "Watchdog"']}]},
        "receivers": [{"name": "null"}],
        "templates": ["/etc/alertmanager/config/*.tmpl"],
    },
}

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
V = DEFAULTS
problems = []

yaml.SafeLoader.add_constructor("tag:yaml.org,2002:value", lambda l, n: l.construct_scalar(n))


def need(cond, msg):
    if not cond:
        problems.append(msg)
    return cond


# ---- the objects' selectors, as the chart's templates render them -------------------------
def monitor_selector(kind_key):
    """templates/prometheus/prometheus.yaml: the values' selector if non-empty, else
    matchLabels {release: <release>} if ...NilUsesHelmValues, else {} (everything)."""
    sel = V[f"prometheus.prometheusSpec.{kind_key}Selector"]
    if sel:
        return sel
    if V[f"prometheus.prometheusSpec.{kind_key}SelectorNilUsesHelmValues"]:
        return {"matchLabels": {"release": RELEASE}}
    return {}


def namespace_selector(value):
    """The templates render a {} value as {}: every namespace (prometheus-operator: a nil
    namespace selector would mean the Prometheus/Alertmanager's own namespace only)."""
    return value


SELECTORS = {  # kind -> (what selects it, object selector, namespace selector)
    "PrometheusRule": ("ruleSelector", monitor_selector("rule"),
                       namespace_selector(V["prometheus.prometheusSpec.ruleNamespaceSelector"])),
    "PodMonitor": ("podMonitorSelector", monitor_selector("podMonitor"),
                   namespace_selector(V["prometheus.prometheusSpec.podMonitorNamespaceSelector"])),
    "ServiceMonitor": ("serviceMonitorSelector", monitor_selector("serviceMonitor"),
                       namespace_selector(V["prometheus.prometheusSpec.serviceMonitorNamespaceSelector"])),
    "Probe": ("probeSelector", monitor_selector("probe"),
              namespace_selector(V["prometheus.prometheusSpec.probeNamespaceSelector"])),
    "ScrapeConfig": ("scrapeConfigSelector", monitor_selector("scrapeConfig"),
                     namespace_selector(V["prometheus.prometheusSpec.scrapeConfigNamespaceSelector"])),
    # templates/alertmanager/alertmanager.yaml: {} when the value is empty
    "AlertmanagerConfig": ("alertmanagerConfigSelector",
                           V["alertmanager.alertmanagerSpec.alertmanagerConfigSelector"] or {},
                           namespace_selector(V["alertmanager.alertmanagerSpec.alertmanagerConfigNamespaceSelector"])),
}


def label_selector_matches(sel, labels):
    """metav1.LabelSelector: {} selects everything; None nothing."""
    if sel is None:
        return False
    for k, v in (sel.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in sel.get("matchExpressions") or []:
        k, op, vals = e["key"], e["operator"], e.get("values", [])
        if op == "In" and labels.get(k) not in vals or op == "NotIn" and k in labels and labels[k] in vals \
                or op == "Exists" and k not in labels or op == "DoesNotExist" and k in labels:
            return False
    return True


def namespace_selected(sel):
    if sel is None:
        return False, "null: only the Prometheus/Alertmanager's own namespace"
    if sel == {}:
        return True, "{} (any namespace)"
    return False, f"{sel}: depends on your namespaces' labels"


def is_dashboard_carrier(o):
    return o["kind"] in ("ConfigMap", "Secret") and \
        V["grafana.sidecar.dashboards.label"] in (o["metadata"].get("labels") or {})


def selected(o):
    """(selected?, why) for one object, or None if the chart does not select this kind."""
    labels = o["metadata"].get("labels") or {}
    if o["kind"] in SELECTORS:
        what, sel, ns_sel = SELECTORS[o["kind"]]
        ok_ns, ns_why = namespace_selected(ns_sel)
        ok = label_selector_matches(sel, labels) and ok_ns
        return ok, f"{what} {json.dumps(sel, sort_keys=True)}, namespace selector {ns_why}"
    if is_dashboard_carrier(o):
        if not V["grafana.sidecar.dashboards.enabled"]:
            return False, "grafana.sidecar.dashboards.enabled is false"
        key, value = V["grafana.sidecar.dashboards.label"], V["grafana.sidecar.dashboards.labelValue"]
        ns = V["grafana.sidecar.dashboards.searchNamespace"]
        ok = labels.get(key) == value and ns == "ALL"
        return ok, f"dashboard sidecar label {key}={value!r}, searchNamespace {ns}"
    return None


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def where(path, o):
    ns = o["metadata"].get("namespace")
    return f"{os.path.basename(path)}: {o['kind']} {(ns + '/') if ns else ''}{o['metadata']['name']}"


# ---- dashboards -------------------------------------------------------------------------------
def check_dashboards(carriers):
    """Every dashboards/*.json is in a selected ConfigMap verbatim, and resolves its datasource
    to the chart's default Prometheus datasource."""
    lines = []
    texts = {v: o["metadata"]["name"] for o in carriers for v in (o.get("data") or {}).values()}
    for path in sorted(glob.glob(os.path.join(ROOT, "dashboards", "*.json"))):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        rel = os.path.relpath(path, ROOT)
        cm = texts.get(text)
        need(cm, f"{rel}: in no ConfigMap the Grafana sidecar loads (rerun gen-dashboards.py)")
        d = json.loads(text)
        variables = {v["name"]: v for v in d.get("templating", {}).get("list", [])}
        refs = set()

        def walk(x):
            if isinstance(x, dict):
                if isinstance(x.get("datasource"), dict):
                    refs.add((x["datasource"].get("type"), x["datasource"].get("uid")))
                for v in x.values():
                    walk(v)
            elif isinstance(x, list):
                for v in x:
                    walk(v)
        walk(d.get("panels", []))
        walk(d.get("templating", {}))
        walk(d.get("annotations", {}))
        need("__inputs" not in d and "${DS_" not in text,
             f"{rel}: an 'export for sharing' (__inputs / ${{DS_...}}): the sidecar does not substitute them")
        uids = {uid for _, uid in refs}
        var = re.fullmatch(r"\$\{?(\w+)\}?", next(iter(uids))) if len(uids) == 1 else None
        dsvar = variables.get(var.group(1)) if var else None
        ok = need(dsvar and dsvar.get("type") == "datasource" and dsvar.get("query") == "prometheus"
                  and not (dsvar.get("current") or {}).get("value"),
                  f"{rel}: datasources {sorted(uids)} are not one variable of type datasource (prometheus) "
                  "without a saved value")
        need(V["grafana.sidecar.datasources.defaultDatasourceEnabled"] and V["grafana.sidecar.datasources.isDefaultDatasource"],
             "the chart's Prometheus datasource is not the default: the dashboards' datasource variable would not pick it")
        if cm and ok:
            lines.append(f"{rel}: in ConfigMap {cm}, verbatim; every datasource reference is ${var.group(1)} "
                         f"(type datasource, prometheus, no saved value) -> the chart's default datasource "
                         f"{V['grafana.sidecar.datasources.name']!r} (uid {V['grafana.sidecar.datasources.uid']})")
    return lines


# ---- Alertmanager: what the chart ends up running -----------------------------------------------
def helm_merge(base, over):
    """Helm's values merge: maps recursively, anything else replaced."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = helm_merge(base.get(k), v) if k in base else copy.deepcopy(v)
        return out
    return copy.deepcopy(over)


def operator_merge(base, amc, namespace):
    """prometheus-operator v0.93 (pkg/alertmanager/amcfg.go) with the default matcher strategy
    OnNamespace: receivers renamed <ns>/<name>/<receiver>, the top route gets
    namespace="<ns>" and continue: true and goes first, inhibit rules get namespace="<ns>"
    on both sides."""
    cfg = copy.deepcopy(base)
    prefix = f"{namespace}/{amc['metadata']['name']}/"
    ns_matcher = f'namespace="{namespace}"'
    keys = {"groupBy": "group_by", "groupWait": "group_wait", "groupInterval": "group_interval",
            "repeatInterval": "repeat_interval", "continue": "continue", "receiver": "receiver"}

    def m(x):
        return f'{x["name"]}{x["matchType"]}{json.dumps(x["value"])}'

    def route(r):
        out = {keys[k]: (prefix + v if k == "receiver" else v) for k, v in r.items() if k in keys}
        if r.get("matchers"):
            out["matchers"] = [m(x) for x in r["matchers"]]
        if r.get("routes"):
            out["routes"] = [route(c) for c in r["routes"]]
        return out
    top = route(amc["spec"]["route"])
    top["matchers"] = top.get("matchers", []) + [ns_matcher]
    top["continue"] = True
    cfg["route"]["routes"] = [top] + cfg["route"].get("routes", [])
    for rule in amc["spec"].get("inhibitRules", []):
        cfg.setdefault("inhibit_rules", []).append({
            "source_matchers": [m(x) for x in rule.get("sourceMatch", [])] + [ns_matcher],
            "target_matchers": [m(x) for x in rule.get("targetMatch", [])] + [ns_matcher],
            **({"equal": rule["equal"]} if rule.get("equal") else {})})
    for r in amc["spec"]["receivers"]:
        out = {"name": prefix + r["name"]}
        if r.get("webhookConfigs"):
            out["webhook_configs"] = [{"url": w["url"], "send_resolved": w.get("sendResolved", True)}
                                      for w in r["webhookConfigs"]]
        cfg["receivers"].append(out)
    return cfg


def amtool_route(cfg_path, labels):
    out = subprocess.run(["amtool", "config", "routes", "test", f"--config.file={cfg_path}"]
                         + [f"{k}={v}" for k, v in labels.items()], capture_output=True, text=True)
    return out.stdout.strip()


def check_alertmanager(amcs):
    lines = []
    with open(os.path.join(ROOT, "deploy", "alertmanager", "alertmanager.yml")) as f:
        am = yaml.safe_load(f)
    with open(os.path.join(HERE, "kube-prometheus-stack", "values-alertmanager.yaml")) as f:
        snippet = yaml.safe_load(f)
    merged = helm_merge(V["alertmanager.config"], snippet["alertmanager"]["config"])
    extra = {k: v for k, v in merged.items() if k not in am}
    need({k: v for k, v in merged.items() if k in am} == am,
         "values-alertmanager.yaml merged into the chart's alertmanager.config is not alertmanager.yml")
    lines.append(f"values path: Helm's merge of values-alertmanager.yaml into the chart's default "
                 f"alertmanager.config == alertmanager.yml, plus the chart's {sorted(extra)}")
    amtool = shutil.which("amtool")
    ns = "api"
    with tempfile.TemporaryDirectory() as tmp:
        paths = {"alertmanager.yml": os.path.join(ROOT, "deploy", "alertmanager", "alertmanager.yml"),
                 "values path": os.path.join(tmp, "values.yml"), "AlertmanagerConfig path": os.path.join(tmp, "amc.yml")}
        with open(paths["values path"], "w") as f:
            yaml.safe_dump(merged, f)
        for amc in amcs:
            with open(paths["AlertmanagerConfig path"], "w") as f:
                yaml.safe_dump(operator_merge(V["alertmanager.config"], amc, ns), f)
        if not amtool:
            lines.append("amtool not installed: the computed configurations were not run through it")
            return lines
        for name, p in paths.items():
            if name == "AlertmanagerConfig path" and not amcs:
                continue
            r = subprocess.run(["amtool", "check-config", p], capture_output=True, text=True)
            need(r.returncode == 0, f"amtool check-config rejects the {name} configuration: {r.stdout}{r.stderr}")
        cases = [({"alertname": f"Statuswatch{sev.title()}Test", "severity": sev, "namespace": ns,
                   "job": "rev23-api-statuswatch"}, True) for sev in ("critical", "warning", "info")]
        cases += [({"alertname": "Watchdog", "severity": "none"}, True),
                  ({"alertname": "StatuswatchAbsent", "severity": "critical"}, False)]
        for labels, amc_same in cases:
            want = amtool_route(paths["alertmanager.yml"], labels)
            got_v = amtool_route(paths["values path"], labels)
            need(got_v == want, f"values path routes {labels} to {got_v!r}, alertmanager.yml to {want!r}")
            if not amcs:
                continue
            got_a = amtool_route(paths["AlertmanagerConfig path"], labels).replace(f"{ns}/statuswatch/", "")
            if amc_same:
                need(got_a == want, f"AlertmanagerConfig path routes {labels} to {got_a!r}, alertmanager.yml to {want!r}")
            else:
                need(got_a != want, f"AlertmanagerConfig path was expected to differ for {labels} (namespace enforcement)")
            lines.append(f"route {','.join(f'{k}={v}' for k, v in labels.items())}: alertmanager.yml -> {want}; "
                         f"values -> {got_v}; AlertmanagerConfig in {ns} -> {got_a}"
                         + ("" if amc_same else " (differs: no namespace label, the operator's namespace matcher)"))
    return lines


# ---- the release label: one place -----------------------------------------------------------
def check_release_one_place():
    """The Component kube-prometheus-stack/ is the one place: the shipped defaults agree with
    it, and changing its value alone relabels every statuswatch monitoring object of the
    example and monitoring builds (rendered from a copy with render.py)."""
    import importlib.util

    def module(name):
        spec = importlib.util.spec_from_file_location(name.replace("-", "_"), os.path.join(HERE, f"{name}.py"))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    render, genrule = module("render"), module("gen-prometheusrule")
    value = genrule.release_label()
    need(value == RELEASE, f"kube-prometheus-stack/kustomization.yaml sets release {value!r}, "
                           f"this check's table {RELEASE!r}")
    with open(os.path.join(HERE, "sidecar", "podmonitor.yaml")) as f:
        pm = yaml.safe_load(f)
    need(pm["metadata"]["labels"].get("release") == value,
         f"sidecar/podmonitor.yaml's default release {pm['metadata']['labels'].get('release')!r} != {value!r}")
    with tempfile.TemporaryDirectory() as tmp:
        copy_root = os.path.join(tmp, "kubernetes")
        shutil.copytree(HERE, copy_root, ignore=shutil.ignore_patterns("testdata", "__pycache__"))
        comp = os.path.join(copy_root, "kube-prometheus-stack", "kustomization.yaml")
        with open(comp) as f:
            text = f.read()
        with open(comp, "w") as f:
            f.write(text.replace(f"value: {value}", "value: my-release"))
        objs = render.build(copy_root)
    mon = [o for o in objs if o["apiVersion"].startswith("monitoring.coreos.com/")]
    wrong = [f"{o['kind']} {o['metadata']['name']}" for o in mon
             if o["metadata"].get("labels", {}).get("release") != "my-release"]
    need(mon and not wrong, f"with release my-release set in the Component only, still other values: {wrong}")
    return (f"release label: set once, in kube-prometheus-stack/kustomization.yaml ({value!r}); changing only "
            f"that value relabels all {len(mon)} monitoring objects of the example build "
            f"({', '.join(sorted(o['kind'] for o in mon))})")


# ---- main ---------------------------------------------------------------------------------------
def check(paths, report=True):
    lines, carriers, amcs, seen = [], [], [], 0
    for path in paths:
        for o in load(path):
            res = selected(o)
            if res is None:
                continue
            seen += 1
            ok, why = res
            need(ok, f"{where(path, o)}: NOT selected by {CHART}'s defaults ({why}, "
                     f"labels {o['metadata'].get('labels') or {}})")
            if ok:
                lines.append(f"{where(path, o)}: selected by {why}")
            if is_dashboard_carrier(o) and ok:
                carriers.append(o)
            if o["kind"] == "AlertmanagerConfig" and ok:
                amcs.append(o)
    need(seen, "no object the chart selects in the builds")
    return lines, carriers, amcs


def negative_test(paths):
    """Copies of the shipped objects without the label the chart selects them by, and a
    dashboard ConfigMap with another label value, must be reported as NOT selected."""
    global problems
    saved, problems = problems, []
    broken = []
    for path in paths:
        for o in load(path):
            labels = o["metadata"].get("labels") or {}
            if o["kind"] in ("PrometheusRule", "PodMonitor") and "release" in labels:
                b = copy.deepcopy(o)
                del b["metadata"]["labels"]["release"]
                broken.append(b)
            if is_dashboard_carrier(o):
                b = copy.deepcopy(o)
                b["metadata"]["labels"][V["grafana.sidecar.dashboards.label"]] = "true"
                broken.append(b)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump_all(broken, f)
    try:
        check([f.name])
        caught = len([p for p in problems if "NOT selected" in p])
    finally:
        os.unlink(f.name)
    problems = saved
    kinds = sorted({b["kind"] for b in broken})
    need(broken and caught == len(broken),
         f"negative test: {caught} of {len(broken)} unlabelled copies reported as not selected")
    return f"negative test: {caught} of {len(broken)} copies of {', '.join(kinds)} without the chart's " \
           f"label (release removed; {V['grafana.sidecar.dashboards.label']}=\"true\") reported NOT selected"


def main(paths):
    if not paths:
        print(__doc__)
        return 2
    print(f"{CHART} defaults, release {RELEASE!r}:")
    lines, carriers, amcs = check(paths)
    lines += check_dashboards(carriers)
    lines.append(negative_test(paths))
    lines.append(check_release_one_place())
    lines += check_alertmanager(amcs)
    for line in lines:
        print(f"  {line}")
    for p in problems:
        print(f"  problem: {p}")
    print(f"kube-prometheus-stack selection: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

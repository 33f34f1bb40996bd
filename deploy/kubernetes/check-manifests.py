#!/usr/bin/env python3
"""Structural checks of rendered kustomize builds that a JSON schema cannot express, and of
the CRD objects (PodMonitor, PrometheusRule) the offline schema validator has no schema for.

    check-manifests.py BUILD.yaml...     # each file: one rendered kustomization
    check-manifests.py --health-alerts BUILD.yaml...
        # the PrometheusRule's StatuswatchDown/Absent select every job the PodMonitor makes

For every Deployment the Component selected (label statuswatch.io/sidecar=enabled) the
sidecar must be complete and wired (ports, probes, token, config, security, resources,
stop budget, upstream = a port of another container); unselected Deployments must be
untouched; selected Services must send their first port to the proxy; the PodMonitor must
select the patched pods and give each Deployment's pods the job "<Deployment>-statuswatch"
(Prometheus' relabelling simulated), so two APIs in one namespace stay apart. The worked example (Deployment rev23-api) must also run the
shipped config. Needs PyYAML and tomllib (Python >= 3.11). Exit 1 on any problem.
"""
import os
import re
import sys
import tomllib

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
SIDECAR = ("statuswatch.io/sidecar", "enabled")
IANA = re.compile(r"^(?=.{1,15}$)(?=.*[a-z])[a-z0-9]+(-[a-z0-9]+)*$")
HASHED = re.compile(r"^statuswatch-config-[a-z0-9]{10}$")
problems = []


def need(cond, msg):
    if not cond:
        problems.append(msg)
    return cond


def secs(s):
    m = re.fullmatch(r"(\d+)(ms|s|m)", s)
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[m.group(2)]


def check_security(where, c, pod):
    sc = c.get("securityContext", {})
    need(sc.get("allowPrivilegeEscalation") is False and sc.get("readOnlyRootFilesystem") is True
         and sc.get("capabilities", {}).get("drop") == ["ALL"]
         and (sc.get("runAsNonRoot") or pod.get("securityContext", {}).get("runAsNonRoot")),
         f"{where}: securityContext must set runAsNonRoot, readOnlyRootFilesystem, "
         "allowPrivilegeEscalation=false, drop ALL")
    need(c.get("resources", {}).get("requests") and c.get("resources", {}).get("limits", {}).get("memory"),
         f"{where}: resources.requests and a memory limit")


# ---- the PodMonitor's job label, by Prometheus' relabelling simulated ---------------------
# The operator first sets job="<namespace>/<PodMonitor name>", then applies the endpoint's
# relabelings (prometheus-operator pkg/prometheus/promcfg.go, generatePodMonitorConfig).
JOB_REGEX = "(.+-)?statuswatch"   # what the rules' health alerts must select (--job-regex)
FOREIGN_JOBS = ["apiserver", "kubelet", "node-exporter", "kube-state-metrics", "coredns",
                "monitoring/kube-prometheus-stack-prometheus", "kube-prometheus-stack-alertmanager",
                "shop/orders-api", "rev23-api", "statuswatchers", "statuswatch-exporter"]


def relabel(labels, rules):
    labels = dict(labels)
    for r in rules:
        action = r.get("action", "replace").lower()
        value = r.get("separator", ";").join(labels.get(s, "") for s in r.get("sourceLabels", []))
        m = re.fullmatch(r.get("regex", "(.*)"), value)
        if action == "keep" and not m or action == "drop" and m:
            return None
        if action == "replace":
            if m:
                out = re.sub(r"\$\{?(\w+)\}?", lambda g: m.group(int(g.group(1))) or "", r.get("replacement", "$1"))
                if out:
                    labels[r["targetLabel"]] = out
                else:
                    labels.pop(r["targetLabel"], None)
        elif action not in ("keep", "drop"):
            raise SystemExit(f"relabel action {action} is not simulated")
    return labels


def replicaset_pod(deployment, template_hash="5d8c7f9b7"):
    return {"controller_kind": "ReplicaSet", "controller_name": f"{deployment}-{template_hash}",
            "template_hash": template_hash}


def pod_job(pm, ep, namespace, controller_kind="", controller_name="", template_hash=""):
    meta = {"__meta_kubernetes_namespace": namespace,
            "__meta_kubernetes_pod_controller_kind": controller_kind,
            "__meta_kubernetes_pod_controller_name": controller_name,
            "__meta_kubernetes_pod_label_pod_template_hash": template_hash,
            "job": f"{namespace}/{pm['metadata']['name']}"}
    out = relabel(meta, ep.get("relabelings", []))
    return out and out.get("job")


def check_jobs(name, pm, ep):
    """Two APIs in one namespace keep separate jobs, every job is selected by JOB_REGEX."""
    cases = {
        "Deployment orders-api": (replicaset_pod("orders-api"), "orders-api-statuswatch"),
        "Deployment billing-api, same namespace": (replicaset_pod("billing-api", "7c4b9d6f88"), "billing-api-statuswatch"),
        "Deployment api-v2": (replicaset_pod("api-v2", "68bd7f5c9"), "api-v2-statuswatch"),
        "StatefulSet db": ({"controller_kind": "StatefulSet", "controller_name": "db"}, "db-statuswatch"),
        "pod without owner": ({}, "statuswatch"),
    }
    for case, (pod, want) in cases.items():
        got = pod_job(pm, ep, "shop", **pod)
        need(got == want, f"{name}: PodMonitor job for {case}: {got!r}, want {want!r}")
        need(got and re.fullmatch(JOB_REGEX, got), f"{name}: job {got!r} ({case}) does not match {JOB_REGEX}")
    for job in FOREIGN_JOBS:
        need(not re.fullmatch(JOB_REGEX, job), f"{name}: {JOB_REGEX} would select the foreign job {job!r}")


def health_alerts(paths):
    """The rules' health alerts (up{job=~"..."}) select the job of every pod the PodMonitor
    scrapes, and the plain-Prometheus job "statuswatch", and no foreign job."""
    bad, jobs, regexes = [], {"statuswatch"}, set()
    for path in paths:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        for d in docs:
            if d["kind"] == "PodMonitor":
                for dep in (x for x in docs if x["kind"] == "Deployment"
                            and x["metadata"].get("labels", {}).get(SIDECAR[0]) == SIDECAR[1]):
                    for ep in d["spec"]["podMetricsEndpoints"]:
                        jobs.add(pod_job(d, ep, "ns", **replicaset_pod(dep["metadata"]["name"])))
            if d["kind"] == "PrometheusRule":
                for g in d["spec"]["groups"]:
                    for r in g["rules"]:
                        if r.get("alert") in ("StatuswatchDown", "StatuswatchAbsent"):
                            regexes |= set(re.findall(r'up\{job=~"([^"]*)"\}', r["expr"]))
    if not regexes:
        bad.append("no PrometheusRule with StatuswatchDown/StatuswatchAbsent up{job=~...} in the builds")
    for rx in sorted(regexes):
        for job in sorted(jobs):
            if not re.fullmatch(rx, job):
                bad.append(f'up{{job=~"{rx}"}} does not select job {job!r}: the health alerts miss those '
                           f"sidecars; generate the rules with --job-regex '{JOB_REGEX}'")
        for job in FOREIGN_JOBS:
            if re.fullmatch(rx, job):
                bad.append(f'up{{job=~"{rx}"}} also selects the foreign job {job!r}')
    for b in bad:
        print(f"  problem: {b}")
    print(f"health alerts: up{{job=~{sorted(regexes)}}} against jobs {sorted(jobs)}: {len(bad)} problem(s)")
    return 1 if bad else 0


def check_build(path):
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    name = os.path.basename(path)
    objs = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    need(len(objs) == len(docs), f"{name}: duplicate objects")
    deps = [d for (k, _), d in objs.items() if k == "Deployment"]
    selected = [d for d in deps if d["metadata"].get("labels", {}).get(SIDECAR[0]) == SIDECAR[1]]
    need(selected, f"{name}: no Deployment labelled {SIDECAR[0]}={SIDECAR[1]}")
    tokens = set()
    for dep in deps:
        where = f"{name}: Deployment {dep['metadata']['name']}"
        pod = dep["spec"]["template"]["spec"]
        ctrs = {c["name"]: c for c in pod["containers"]}
        if dep not in selected:
            need("statuswatch" not in ctrs, f"{where}: not selected, yet patched")
            continue
        need(dep["spec"]["template"]["metadata"]["labels"].get(SIDECAR[0]) == SIDECAR[1],
             f"{where}: pod template lacks the label the PodMonitor selects")
        need(dep["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items(),
             f"{where}: selector does not match its pod labels")
        sw = ctrs.get("statuswatch")
        if not need(sw, f"{where}: no statuswatch container"):
            continue
        need(not any(c["name"] == "statuswatch" for c in pod.get("initContainers", [])),
             f"{where}: statuswatch must be a regular container (shutdown order), not a native sidecar")
        need(sw.get("command", []) + sw.get("args", []) in
             (["--config", "/etc/statuswatch/statuswatch.toml"],
              ["/usr/local/bin/statuswatch", "--config", "/etc/statuswatch/statuswatch.toml"]),
             f"{where}: statuswatch command line")
        ports = {p["name"]: p["containerPort"] for p in sw.get("ports", [])}
        need(ports == {"sw-proxy": 9080, "sw-admin": 9464}, f"{where}: statuswatch ports {ports}")
        all_ports = [p for c in pod["containers"] for p in c.get("ports", [])]
        for p in all_ports:
            need("name" not in p or IANA.match(p["name"]), f"{where}: port name {p.get('name')!r} is not an IANA_SVC_NAME")
        need(len({p["containerPort"] for p in all_ports}) == len(all_ports), f"{where}: two containers declare one port")
        need(sw["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "sw-admin"}, f"{where}: readiness /readyz on sw-admin")
        need(sw["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "sw-admin"}, f"{where}: liveness /healthz on sw-admin")
        env = {e["name"]: e for e in sw.get("env", [])}
        need(env.get("STATUSWATCH__PROXY__LISTEN", {}).get("value") == "0.0.0.0:9080", f"{where}: proxy must listen on 0.0.0.0:9080")
        upstream = env.get("STATUSWATCH__PROXY__UPSTREAM", {}).get("value", "")
        others = {p["containerPort"] for c in pod["containers"] if c is not sw for p in c.get("ports", [])}
        m = re.fullmatch(r"127\.0\.0\.1:(\d+)", upstream)
        need(m and int(m.group(1)) in others,
             f"{where}: STATUSWATCH__PROXY__UPSTREAM {upstream!r} must be 127.0.0.1:<a port of the API container> {sorted(others)}")
        tok = env.get("STATUSWATCH__ADMIN__BEARER_TOKEN", {}).get("valueFrom", {}).get("secretKeyRef", {})
        need(tok.get("name") and tok.get("key"), f"{where}: bearer token from a Secret")
        tokens.add((tok.get("name"), tok.get("key")))
        secret = objs.get(("Secret", tok.get("name")))
        if secret is not None:
            need(tok.get("key") in secret.get("stringData", secret.get("data", {})), f"{where}: Secret lacks key {tok.get('key')}")
        check_security(f"{where} container statuswatch", sw, pod)
        vols = {v["name"]: v for v in pod.get("volumes", [])}
        for c in pod["containers"]:
            for mnt in c.get("volumeMounts", []):
                need(mnt["name"] in vols, f"{where}: volumeMount {mnt['name']} has no volume")
        cfg = [m for m in sw.get("volumeMounts", []) if m["mountPath"] == "/etc/statuswatch"]
        cm_name = vols.get(cfg[0]["name"], {}).get("configMap", {}).get("name", "") if cfg else ""
        need(HASHED.match(cm_name), f"{where}: /etc/statuswatch must mount the hashed ConfigMap, got {cm_name!r}")
        cm = objs.get(("ConfigMap", cm_name))
        if need(cm, f"{where}: ConfigMap {cm_name} is not in the build"):
            conf = tomllib.loads(cm["data"]["statuswatch.toml"])
            need(conf.get("admin", {}).get("listen") == "0.0.0.0:9464",
                 f"{where}: config admin.listen must be 0.0.0.0:9464 (probes and Prometheus reach the pod IP)")
            proxy = conf.get("proxy", {})
            sleep = sw.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
            budget = sleep + secs(proxy.get("grace_period", "20s")) + secs(proxy.get("shutdown_timeout", "5s"))
            grace = pod.get("terminationGracePeriodSeconds", 30)
            need(budget < grace, f"{where}: preStop + grace_period + shutdown_timeout = {budget}s must be < "
                                 f"terminationGracePeriodSeconds {grace}s")
            if dep["metadata"]["name"] == "rev23-api":
                with open(os.path.join(ROOT, "config", "statuswatch.toml"), "rb") as f:
                    shipped = tomllib.load(f)
                need(conf == dict(shipped, admin=dict(shipped["admin"], listen="0.0.0.0:9464")),
                     f"{where}: config must be config/statuswatch.toml except admin.listen")
        if dep["metadata"]["name"] == "rev23-api":
            api = ctrs.get("api", {})
            need(api.get("readinessProbe"), f"{where}: the API container needs a readiness probe")
            for c in pod["containers"]:
                check_security(f"{where} container {c['name']}", c, pod)

    pod_labels = [d["spec"]["template"]["metadata"]["labels"] for d in selected]
    for (k, n), svc in objs.items():
        if k != "Service" or svc["metadata"].get("labels", {}).get(SIDECAR[0]) != SIDECAR[1]:
            continue
        where = f"{name}: Service {n}"
        sel = svc["spec"]["selector"]
        need(any(sel.items() <= lab.items() for lab in pod_labels), f"{where}: selects no patched pod")
        need(svc["spec"]["ports"][0]["targetPort"] == "sw-proxy", f"{where}: first port must target sw-proxy")
        for p in svc["spec"]["ports"][1:]:
            need(p.get("targetPort") != "sw-proxy", f"{where}: only the first port goes through statuswatch")

    pm = objs.get(("PodMonitor", "statuswatch"))
    if need(pm, f"{name}: PodMonitor statuswatch missing"):
        need(pm["apiVersion"] == "monitoring.coreos.com/v1", f"{name}: PodMonitor apiVersion")
        need("release" in pm["metadata"].get("labels", {}),
             f"{name}: PodMonitor needs the release label kube-prometheus-stack selects by")
        sel = pm["spec"]["selector"]["matchLabels"]
        need(pod_labels and all(sel.items() <= lab.items() for lab in pod_labels),
             f"{name}: PodMonitor must select every patched pod")
        for ep in pm["spec"]["podMetricsEndpoints"]:
            need(ep["port"] == "sw-admin" and ep.get("path") == "/metrics", f"{name}: PodMonitor scrapes sw-admin /metrics only")
            cred = ep.get("authorization", {}).get("credentials", {})
            need(ep.get("authorization", {}).get("type") == "Bearer" and {(cred.get("name"), cred.get("key"))} == tokens,
                 f"{name}: PodMonitor must send the sidecars' bearer token")
            for dep in selected:
                ns = dep["metadata"].get("namespace", "default")
                job = pod_job(pm, ep, ns, **replicaset_pod(dep["metadata"]["name"]))
                need(job == f"{dep['metadata']['name']}-statuswatch",
                     f"{name}: PodMonitor gives Deployment {dep['metadata']['name']}'s pods job {job!r}, "
                     f"want {dep['metadata']['name']}-statuswatch")
            check_jobs(name, pm, ep)
    if ("PrometheusRule", "statuswatch") in objs:
        pr = objs[("PrometheusRule", "statuswatch")]
        need(pr["apiVersion"] == "monitoring.coreos.com/v1" and pr["spec"]["groups"], f"{name}: PrometheusRule")
    return len(objs)


def main(paths):
    if not paths:
        print(__doc__)
        return 2
    if paths[0] == "--health-alerts":
        return health_alerts(paths[1:])
    total = sum(check_build(p) for p in paths)
    for p in problems:
        print(f"  problem: {p}")
    print(f"kubernetes structural checks: {len(problems)} problem(s) in {total} objects of {len(paths)} build(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""Structural checks of deploy/kubernetes that a JSON schema cannot express, and of the
two CRD objects (ServiceMonitor, PrometheusRule) that the offline schema validator has no
schema for. Needs PyYAML (and tomllib, Python >= 3.11). Exit 1 on any problem.
"""
import os
import re
import sys
import tomllib

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
problems = []


def need(cond, msg):
    if not cond:
        problems.append(msg)
    return cond


def load(name):
    with open(os.path.join(HERE, name)) as f:
        return [d for d in yaml.safe_load_all(f) if d]


kust = load("kustomization.yaml")[0]
objs = {}
for res in kust["resources"]:
    for d in load(res):
        objs[(d["kind"], d["metadata"]["name"])] = d
kinds = sorted({k for k, _ in objs})
need(kinds == ["ConfigMap", "Deployment", "PrometheusRule", "Secret", "Service", "ServiceMonitor"],
     f"unexpected kinds {kinds}")

dep = objs[("Deployment", "rev23-api")]
pod = dep["spec"]["template"]["spec"]
need(dep["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items(),
     "Deployment selector does not match its pod labels")
ctrs = {c["name"]: c for c in pod["containers"]}
need(set(ctrs) == {"api", "statuswatch"}, f"containers {sorted(ctrs)}")
sw = ctrs["statuswatch"]
need(sw.get("command", []) + sw.get("args", []) ==
     ["/usr/local/bin/statuswatch", "--config", "/etc/statuswatch/statuswatch.toml"], "statuswatch command line")
ports = {p["name"]: p["containerPort"] for c in ctrs.values() for p in c.get("ports", [])}
need(ports == {"http": 8080, "sw-admin": 9464}, f"container ports {ports}")
IANA = re.compile(r"^(?=.{1,15}$)(?=.*[a-z])[a-z0-9]+(-[a-z0-9]+)*$")
for c in ctrs.values():
    for p in c.get("ports", []):
        need(IANA.match(p["name"]), f"port name {p['name']!r} is not an IANA_SVC_NAME (<= 15 chars)")
need(sw["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "sw-admin"}, "readiness probe /readyz on 9464")
need(sw["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "sw-admin"}, "liveness probe /healthz on 9464")
env = {e["name"]: e for e in sw.get("env", [])}
tok = env.get("STATUSWATCH__ADMIN__BEARER_TOKEN", {}).get("valueFrom", {}).get("secretKeyRef", {})
secret = objs.get(("Secret", tok.get("name")))
need(secret and tok.get("key") in secret.get("stringData", secret.get("data", {})),
     "STATUSWATCH__ADMIN__BEARER_TOKEN must come from an existing Secret key")
for c in ctrs.values():
    sc = c.get("securityContext", {})
    need(sc.get("allowPrivilegeEscalation") is False and sc.get("readOnlyRootFilesystem") is True
         and sc.get("capabilities", {}).get("drop") == ["ALL"]
         and (sc.get("runAsNonRoot") or pod.get("securityContext", {}).get("runAsNonRoot")),
         f"container {c['name']}: securityContext must set runAsNonRoot, readOnlyRootFilesystem, "
         "allowPrivilegeEscalation=false, drop ALL")
    need(c.get("resources", {}).get("requests") and c.get("resources", {}).get("limits", {}).get("memory"),
         f"container {c['name']}: resources.requests and a memory limit")
vols = {v["name"]: v for v in pod.get("volumes", [])}
for m in sw.get("volumeMounts", []):
    need(m["name"] in vols, f"volumeMount {m['name']} has no volume")
cfg_vol = [m for m in sw["volumeMounts"] if m["mountPath"] == "/etc/statuswatch"]
need(cfg_vol and vols[cfg_vol[0]["name"]].get("configMap", {}).get("name") == "statuswatch-config",
     "/etc/statuswatch must mount ConfigMap statuswatch-config")

# config: config/statuswatch.toml with [admin] listen = 0.0.0.0:9464, nothing else changed
cm = objs[("ConfigMap", "statuswatch-config")]
conf = tomllib.loads(cm["data"]["statuswatch.toml"])
with open(os.path.join(ROOT, "config", "statuswatch.toml"), "rb") as f:
    shipped = tomllib.load(f)
expected = dict(shipped, admin=dict(shipped["admin"], listen="0.0.0.0:9464"))
need(conf == expected, "ConfigMap statuswatch.toml must equal config/statuswatch.toml except [admin] listen")
need(conf["proxy"]["upstream"] == "127.0.0.1:3000" and conf["proxy"]["listen"].endswith(":8080")
     and conf["admin"]["listen"] == "0.0.0.0:9464", "proxy/admin addresses in the ConfigMap")


def secs(s):
    m = re.fullmatch(r"(\d+)(ms|s|m)", s)
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[m.group(2)]


pre = sw.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", ["sleep", "0"])
stop_budget = int(pre[-1]) + secs(conf["proxy"]["grace_period"]) + secs(conf["proxy"]["shutdown_timeout"])
need(pod["terminationGracePeriodSeconds"] == 30 and stop_budget < 30,
     f"terminationGracePeriodSeconds 30 must exceed preStop + grace_period + shutdown_timeout ({stop_budget}s)")

# Services: client Service only to 8080; metrics Service for the ServiceMonitor
svc = objs[("Service", "rev23-api")]
need([(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [(8080, "http")],
     "Service rev23-api must expose only the proxy port 8080")
pod_labels = dep["spec"]["template"]["metadata"]["labels"]
for (k, n), o in objs.items():
    if k == "Service":
        need(o["spec"]["selector"].items() <= pod_labels.items(), f"Service {n} selects no pod")
        for p in o["spec"]["ports"]:
            need(p["targetPort"] in ports, f"Service {n} targetPort {p['targetPort']} is no container port")

# ServiceMonitor (CRD: structural check)
sm = objs[("ServiceMonitor", "statuswatch")]
need(sm["apiVersion"] == "monitoring.coreos.com/v1", "ServiceMonitor apiVersion")
sel = sm["spec"]["selector"]["matchLabels"]
msvcs = [o for (k, _), o in objs.items() if k == "Service" and sel.items() <= o["metadata"]["labels"].items()]
need(len(msvcs) == 1, "ServiceMonitor must select exactly one Service")
if msvcs:
    m = msvcs[0]
    need(m["metadata"]["labels"].get(sm["spec"].get("jobLabel")) == "statuswatch",
         'ServiceMonitor jobLabel must give job="statuswatch" (the alerts use up{job="statuswatch"})')
    names = {p["name"] for p in m["spec"]["ports"]}
    for ep in sm["spec"]["endpoints"]:
        need(ep["port"] in names, f"ServiceMonitor endpoint port {ep['port']} not on the Service")
        need(ep.get("path") == "/metrics", "ServiceMonitor path /metrics")
        cred = ep.get("authorization", {}).get("credentials", {})
        need(ep.get("authorization", {}).get("type") == "Bearer" and cred.get("name") == tok.get("name")
             and cred.get("key") == tok.get("key"), "ServiceMonitor must send the sidecars' bearer token")

# PrometheusRule (CRD: structural check; its groups are checked against the rules file separately)
pr = objs[("PrometheusRule", "statuswatch")]
need(pr["apiVersion"] == "monitoring.coreos.com/v1" and pr["spec"]["groups"], "PrometheusRule apiVersion/groups")

for p in problems:
    print(f"  problem: {p}")
print(f"kubernetes structural checks: {len(problems)} problem(s) in {len(objs)} objects")
sys.exit(1 if problems else 0)

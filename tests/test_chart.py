"""Tests of the Helm chart in charts/kubesweep, rendered by the real helm binary.

The ``helm`` fixture builds helm from the Go module proxy with hack/build-helm.sh, or reuses the
cached binary (under ${KUBESWEEP_CACHE:-~/.cache/kubesweep}). If helm cannot be built the tests
that need it FAIL; with KUBESWEEP_SKIP_CLUSTER=1 they are skipped instead, with the reason.
The dashboard and CRD-copy checks read files only and need no helm.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

# A cold helm build takes minutes (inside the first test's setup); every helm call below has
# its own, much shorter, timeout.
pytestmark = pytest.mark.timeout(1800)

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "kubesweep"
DASHBOARD = CHART / "dashboards" / "kubesweep.json"
METRICS_DOC = ROOT / "docs" / "metrics.md"
BUILD_HELM = ROOT / "hack" / "build-helm.sh"
SKIP_ENV = "KUBESWEEP_SKIP_CLUSTER"
RELEASE, RELEASE_NS = "ks", "kubesweep-system"
WATCHED = ["team-a", "team-b"]


def _skip_env() -> bool:
    return os.environ.get(SKIP_ENV, "").strip().lower() in ("1", "true", "yes")




def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HELM_CACHE_HOME": "/tmp/kubesweep-helm/cache",
                               "HELM_CONFIG_HOME": "/tmp/kubesweep-helm/config",
                               "HELM_DATA_HOME": "/tmp/kubesweep-helm/data"})


@functools.lru_cache(maxsize=None)
def _render(helm: str, sets: tuple[str, ...]) -> tuple[dict[str, Any], ...]:
    args = ["template", RELEASE, str(CHART), "--namespace", RELEASE_NS]
    for s in sets:
        args += ["--set", s]
    proc = run_helm(helm, *args)
    assert proc.returncode == 0, f"helm template {' '.join(sets)} failed:\n{proc.stderr}"
    return tuple(d for d in yaml.safe_load_all(proc.stdout) if d)


def render(helm: str, *sets: str) -> list[dict[str, Any]]:
    return list(_render(helm, tuple(sets)))


NS_MODE = ("watchNamespaces={" + ",".join(WATCHED) + "}",)
MODES = {"all-namespaces": (), "namespaced": NS_MODE}


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


# --------------------------------------------------------------------------- lint and render

@pytest.mark.parametrize("sets", [(), NS_MODE, ("serviceMonitor.enabled=true", "grafanaDashboard.enabled=false")],
                         ids=["defaults", "namespaced", "servicemonitor"])
def test_helm_lint(helm: str, sets: tuple[str, ...]) -> None:
    args = ["lint", "--strict", str(CHART)]
    for s in sets:
        args += ["--set", s]
    proc = run_helm(helm, *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "kubesweep"
    assert str(chart["appVersion"]) == "0.1.0"


@pytest.mark.parametrize("mode", MODES)
def test_template_renders_expected_objects(helm: str, mode: str) -> None:
    docs = render(helm, *MODES[mode])
    kinds = sorted(d["kind"] for d in docs)
    expected = {"ServiceAccount": 1, "Service": 1, "Deployment": 1, "ConfigMap": 1,
                "ClusterRole": 2 if mode == "all-namespaces" else 1,
                "ClusterRoleBinding": 2 if mode == "all-namespaces" else 1,
                "Role": 0 if mode == "all-namespaces" else len(WATCHED),
                "RoleBinding": 0 if mode == "all-namespaces" else len(WATCHED)}
    assert kinds == sorted(k for k, n in expected.items() for _ in range(n))
    for d in docs:
        if d["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert d["metadata"].get("namespace"), f"{d['kind']} {d['metadata']['name']} has no namespace"
        assert d["metadata"]["labels"]["app.kubernetes.io/name"] == "kubesweep"


# --------------------------------------------------------------------------- Deployment

HARDENED = {
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
}


@pytest.mark.parametrize("mode", MODES)
def test_deployment_is_hardened_and_single(helm: str, mode: str) -> None:
    (dep,) = of_kind(render(helm, *MODES[mode]), "Deployment")
    spec = dep["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    containers = pod["containers"] + pod.get("initContainers", [])
    assert containers
    for c in containers:
        sc = c["securityContext"]
        for key, value in HARDENED.items():
            assert sc.get(key) == value, f"container {c['name']}: securityContext.{key} should be {value}"
        assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add")
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert not sc.get("privileged")


def flag_values(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args[:-1]) if a == flag]


@pytest.mark.parametrize("mode", MODES)
def test_operator_args_and_probes(helm: str, mode: str) -> None:
    (dep,) = of_kind(render(helm, *MODES[mode]), "Deployment")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert "command" not in c, "the image's ENTRYPOINT (kubesweep) runs; the chart passes args only"
    args = c["args"]
    assert args[0] == "operator"
    assert flag_values(args, "--metrics-port") == ["8080"]
    assert flag_values(args, "--push-port") == ["8081"]
    assert flag_values(args, "--liveness") == ["http://0.0.0.0:8090/healthz"]
    if mode == "all-namespaces":
        assert "--all-namespaces" in args and "--namespace" not in args
    else:
        assert "--all-namespaces" not in args
        assert flag_values(args, "--namespace") == WATCHED
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"metrics": 8080, "push": 8081, "health": 8090}
    for probe in ("livenessProbe", "readinessProbe"):
        get = c[probe]["httpGet"]
        assert get["path"] == "/healthz" and ports[get["port"]] == 8090
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == of_kind(render(helm), "ServiceAccount")[0]["metadata"]["name"]


def test_service_ports(helm: str) -> None:
    docs = render(helm)
    (svc,) = of_kind(docs, "Service")
    assert {(p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]} == \
        {("metrics", 8080, "metrics"), ("push", 8081, "push")}
    (dep,) = of_kind(docs, "Deployment")
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()


# --------------------------------------------------------------------------- RBAC

def triples(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    out = set()
    for r in rules:
        assert set(r) <= {"apiGroups", "resources", "verbs"}, f"unexpected rule keys (resourceNames, nonResourceURLs?): {r}"
        for g in r["apiGroups"]:
            for res in r["resources"]:
                for v in r["verbs"]:
                    out.add((g, res, v))
    return out


def expand(spec: dict[tuple[str, str], str]) -> set[tuple[str, str, str]]:
    return {(g, r, v) for (g, r), verbs in spec.items() for v in verbs.split()}


NAMESPACED = expand({
    ("kubesweep.io", "sweeps"): "list watch patch",
    ("kubesweep.io", "sweeps/status"): "patch",
    ("kubesweep.io", "sweepruns"): "get list create",
    ("kubesweep.io", "sweepruns/status"): "patch",
    ("batch", "jobs"): "create patch",
    ("", "pods"): "get list watch delete",
    ("", "pods/log"): "get",
    ("", "events"): "create",
})
CLUSTER_ALWAYS = expand({
    ("authentication.k8s.io", "tokenreviews"): "create",
    ("apiextensions.k8s.io", "customresourcedefinitions"): "list watch",
})
# kopf lists and watches namespaces only when it serves a list of them (not with --all-namespaces);
# tests/cluster/test_chart_rbac.py runs the operator with exactly these rules in both modes.
CLUSTER_NAMESPACED_MODE = expand({("", "namespaces"): "list watch"})
NAMESPACED_RESOURCES = {r for _, r, _ in NAMESPACED}


def assert_no_broad_grants(rules: set[tuple[str, str, str]]) -> None:
    for g, r, v in rules:
        assert "*" not in (g, r, v), f"wildcard in {(g, r, v)}"
        assert r != "secrets", "no access to Secrets"
        assert v not in ("escalate", "bind", "impersonate")
    assert {v for g, r, v in rules if r == "pods/log"} <= {"get"}


def bound_subjects(docs: list[dict[str, Any]], binding_kind: str, role_kind: str, role: dict[str, Any]) -> list:
    return [
        (b["metadata"].get("namespace"), s["kind"], s["name"], s["namespace"])
        for b in of_kind(docs, binding_kind)
        if b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role["metadata"]["name"]}
        and b["metadata"].get("namespace") == role["metadata"].get("namespace")
        for s in b["subjects"]
    ]


def test_rbac_all_namespaces_is_exactly_least_privilege(helm: str) -> None:
    docs = render(helm)
    sa = of_kind(docs, "ServiceAccount")[0]["metadata"]["name"]
    assert not of_kind(docs, "Role") and not of_kind(docs, "RoleBinding")
    granted: set[tuple[str, str, str]] = set()
    for role in of_kind(docs, "ClusterRole"):
        granted |= triples(role["rules"])
        assert bound_subjects(docs, "ClusterRoleBinding", "ClusterRole", role) == \
            [(None, "ServiceAccount", sa, RELEASE_NS)], f"{role['metadata']['name']} is bound to the operator only"
    assert granted == NAMESPACED | CLUSTER_ALWAYS, "no namespaces list/watch: kopf does not read them with --all-namespaces"
    assert_no_broad_grants(granted)


def test_rbac_namespaced_uses_roles(helm: str) -> None:
    docs = render(helm, *NS_MODE)
    sa = of_kind(docs, "ServiceAccount")[0]["metadata"]["name"]
    (cluster_role,) = of_kind(docs, "ClusterRole")
    cluster = triples(cluster_role["rules"])
    assert cluster == CLUSTER_ALWAYS | CLUSTER_NAMESPACED_MODE, \
        "only cluster-scoped resources in the ClusterRole, with namespaces list/watch for kopf's namespace observer"
    assert not {r for _, r, _ in cluster} & NAMESPACED_RESOURCES
    assert bound_subjects(docs, "ClusterRoleBinding", "ClusterRole", cluster_role) == \
        [(None, "ServiceAccount", sa, RELEASE_NS)]
    roles = of_kind(docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == sorted(WATCHED)
    for role in roles:
        got = triples(role["rules"])
        assert got == NAMESPACED, f"Role in {role['metadata']['namespace']}"
        assert_no_broad_grants(got)
        assert bound_subjects(docs, "RoleBinding", "Role", role) == \
            [(role["metadata"]["namespace"], "ServiceAccount", sa, RELEASE_NS)]


# --------------------------------------------------------------------------- ServiceMonitor

def test_servicemonitor_only_when_enabled(helm: str) -> None:
    assert not of_kind(render(helm), "ServiceMonitor")
    assert not of_kind(render(helm, *NS_MODE), "ServiceMonitor")
    docs = render(helm, "serviceMonitor.enabled=true")
    (sm,) = of_kind(docs, "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    (svc,) = of_kind(docs, "Service")
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert [e["port"] for e in sm["spec"]["endpoints"]] == ["metrics"]
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [RELEASE_NS]}


# --------------------------------------------------------------------------- dashboard

def test_dashboard_configmap(helm: str) -> None:
    (cm,) = of_kind(render(helm), "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    (key,) = cm["data"]
    assert key.endswith(".json")
    dashboard = json.loads(cm["data"][key])
    assert dashboard == json.loads(DASHBOARD.read_text())
    assert not of_kind(render(helm, "grafanaDashboard.enabled=false"), "ConfigMap")


def contract_metrics() -> set[str]:
    """Metric names documented in docs/metrics.md, with a histogram's _bucket/_sum/_count series."""
    names = set()
    for line in METRICS_DOC.read_text().splitlines():
        m = re.match(r"\| `(kubesweep_[a-z0-9_]+)` \| (\w+) \|", line)
        if not m:
            continue
        names.add(m.group(1))
        if m.group(2) == "histogram":
            names |= {m.group(1) + s for s in ("_bucket", "_sum", "_count")}
    assert len(names) >= 10, f"could not read the metric table from {METRICS_DOC}: {names}"
    return names


PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
                "bool", "offset", "inf", "nan"}


def promql_metrics(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (not functions, labels, keywords or variables)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)                  # string literals
    s = re.sub(r"\$\{[^}]*\}|\$\w+", "", s)                        # Grafana variables
    s = re.sub(r"\{[^}]*\}", "", s)                                # label matchers
    s = re.sub(r"\[[^\]]*\]", "", s)                               # range selectors
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"\d[\w.]*|[A-Za-z_:][A-Za-z0-9_:]*", s):
        tok = m.group(0)
        if tok[0].isdigit() or tok.lower() in PROMQL_WORDS:
            continue
        if re.match(r"\s*\(", s[m.end():]):                        # a function call
            continue
        names.add(tok)
    return names


def test_promql_parser_sanity() -> None:
    assert promql_metrics('histogram_quantile(0.99, sum by (le) (rate(a_bucket{x=~"$ns"}[$__rate_interval])))') == {"a_bucket"}
    assert promql_metrics("sum(a_total{s=\"b\"}) / (sum(b) + c offset 5m) > 1e3") == {"a_total", "b", "c"}


def dashboard_panels(node: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in node.get("panels", []):
        out.append(p)
        out += dashboard_panels(p)
    return out


def test_dashboard_uses_only_contract_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    allowed = contract_metrics()
    used: set[str] = set()
    exprs = []
    for p in dashboard_panels(dashboard):
        if p["type"] == "row":
            continue
        assert p.get("targets"), f"panel {p['title']!r} has no query"
        assert p["datasource"]["uid"] == "${datasource}", f"panel {p['title']!r} ignores the datasource variable"
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}"
            names = promql_metrics(t["expr"])
            assert names, f"panel {p['title']!r}: no metric in {t['expr']!r}"
            assert names <= allowed, f"panel {p['title']!r} uses metrics not in the contract: {names - allowed}"
            # Series without a sweep label must not be filtered by one (they would vanish).
            if names & {"kubesweep_decision_latency_seconds_bucket", "kubesweep_push_rejected_total"}:
                assert "sweep=" not in t["expr"] and "sweep=~" not in t["expr"], t["expr"]
            used |= names
            exprs.append(t["expr"])
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            q = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            m = re.fullmatch(r"label_values\(\s*([A-Za-z_:][\w:]*)\s*(?:\{[^}]*\})?\s*,\s*(\w+)\s*\)", q)
            assert m, f"variable {var['name']}: unexpected query {q!r}"
            assert m.group(1) in allowed
    # The panels the dashboard is for.
    for metric in ("kubesweep_gpu_seconds_saved_total", "kubesweep_gpu_seconds_used_total",
                   "kubesweep_iterations_trained_total", "kubesweep_iterations_saved_total",
                   "kubesweep_runs", "kubesweep_early_stops_total", "kubesweep_best_value",
                   "kubesweep_decision_latency_seconds_bucket"):
        assert metric in used, f"no panel shows {metric}"
    joined = "\n".join(exprs)
    assert "histogram_quantile(0.5," in joined and "histogram_quantile(0.99," in joined
    assert "by (state)" in joined and "by (band)" in joined
    assert re.search(r"rate\(kubesweep_gpu_seconds_saved_total", joined), "GPU-seconds saved as a rate"
    assert re.search(r"sum\(kubesweep_gpu_seconds_saved_total", joined), "GPU-seconds saved as a total"


def test_dashboard_variables() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for name in ("namespace", "sweep"):
        assert variables[name]["type"] == "query"
        assert variables[name]["datasource"]["uid"] == "${datasource}"
    assert "$namespace" in json.dumps(variables["sweep"]["query"]), "sweep choices follow the namespace"
    assert dashboard["uid"] and dashboard["title"]
    ids = [p["id"] for p in dashboard_panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids are unique"


# --------------------------------------------------------------------------- CRD copies

def test_chart_crds_are_byte_identical_copies() -> None:
    top = {p.name: p.read_bytes() for p in (ROOT / "crds").glob("*.yaml")}
    chart = {p.name: p.read_bytes() for p in (CHART / "crds").iterdir() if p.is_file()}
    assert set(top) == {"sweeps.kubesweep.io.yaml", "sweepruns.kubesweep.io.yaml"}
    assert chart.keys() == top.keys(), "charts/kubesweep/crds/ holds exactly the files of crds/"
    for name in top:
        assert chart[name] == top[name], f"charts/kubesweep/crds/{name} differs from crds/{name}: cp crds/*.yaml charts/kubesweep/crds/"


def test_readme_tells_the_crd_upgrade_story() -> None:
    readme = (CHART / "README.md").read_text()
    # The commands, in that order: CRDs first (Helm never upgrades crds/), then the release.
    assert re.search(r"^kubectl apply --server-side -f crds/\n(?:.*\n)*?helm upgrade ", readme, re.M)

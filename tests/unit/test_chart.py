"""The Helm chart rendered offline: lint, schema errors, security, RBAC shape,
optional objects, and the contract with `corral operator`'s command line.
Needs only the pinned helm binary (built by scripts/k8s/build on first use)."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import corral_worker.metrics
from corral_operator.metrics import OperatorMetrics
from tests.support.k8s import k8s_bin_dir

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "corral"
KUBE_VERSION = "1.34.0"
NAMESPACE = "corral-system"

# Operator series the alerts and the dashboard use (labels namespace, taskqueue;
# corral_operator_dead_letter also queue).
OPERATOR_METRICS = {
    "corral_operator_backlog", "corral_operator_in_flight", "corral_operator_dead_letter",
    "corral_operator_current_replicas", "corral_operator_desired_replicas",
    "corral_operator_max_replicas", "corral_operator_redis_up",
    "corral_operator_scale_decisions_total", "corral_operator_reconcile_errors_total",
}
# Worker metric families (corral_worker/metrics.py) and the series names Prometheus gives them.
WORKER_SERIES = {
    "corral_tasks": {"corral_tasks_total"},
    "corral_task_duration_seconds": {"corral_task_duration_seconds_bucket"},
    "corral_task_wait_seconds": {"corral_task_wait_seconds_bucket"},
}

ALL_ON = {
    "replicaCount": 2,
    "peering": {"enabled": True},
    "metrics": {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True},
                "prometheusRule": {"enabled": True}},
    "grafanaDashboard": {"enabled": True},
    "podDisruptionBudget": {"enabled": True},
    "networkPolicy": {"enabled": True},
}


@pytest.fixture(scope="session")
def helm() -> str:
    path = k8s_bin_dir() / "helm"
    if not path.exists():
        subprocess.run([str(REPO / "scripts" / "k8s" / "build"), "helm"], check=True)
    return str(path)


def run_helm(helm: str, *args: str, values: dict[str, Any] | None = None,
             tmp_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    argv = [helm, *args]
    if values is not None:
        assert tmp_path is not None
        file = tmp_path / f"values-{len(list(tmp_path.iterdir()))}.yaml"
        file.write_text(yaml.safe_dump(values))
        argv += ["-f", str(file)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def template(helm: str, tmp_path: Path, values: dict[str, Any] | None = None,
             *extra: str) -> list[dict[str, Any]]:
    proc = run_helm(helm, "template", "corral", str(CHART), "--namespace", NAMESPACE,
                    "--kube-version", KUBE_VERSION, *extra, values=values or {},
                    tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def template_error(helm: str, tmp_path: Path, values: dict[str, Any]) -> str:
    proc = run_helm(helm, "template", "corral", str(CHART), "--kube-version", KUBE_VERSION,
                    values=values, tmp_path=tmp_path)
    assert proc.returncode != 0, f"accepted {values}"
    return proc.stderr


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind
             and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''} in {[d['kind'] for d in docs]}"
    return found[0]


def kinds(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(d["kind"] for d in docs)


def operator_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["operator"]
    return dict(containers[0])


def rules_of(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}


# -- lint and schema ------------------------------------------------------------------


@pytest.mark.parametrize("values", [{}, ALL_ON, {**ALL_ON, "watchNamespaces": ["a", "b"]}],
                         ids=["defaults", "all-on", "all-on-namespaced"])
def test_lint_strict(helm: str, tmp_path: Path, values: dict[str, Any]) -> None:
    proc = run_helm(helm, "lint", "--strict", str(CHART), values=values, tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(("values", "message"), [
    ({"replicas": 2}, "additional properties 'replicas' not allowed"),
    ({"replicaCount": "two"}, "replicaCount"),
    ({"replicaCount": 0}, "replicaCount"),
    ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
    ({"image": {"digest": "latest"}}, "digest"),
    ({"watchNamespaces": ["Team_A"]}, "watchNamespaces"),
    ({"watchNamespaces": ["a", "a"]}, "watchNamespaces"),
    ({"operator": {"logFormat": "xml"}}, "logFormat"),
    ({"operator": {"metricsPort": 70000}}, "metricsPort"),
    ({"service": {"type": "Ingress"}}, "type"),
    ({"resources": {"requests": {"cpu": "lots"}}}, "cpu"),
    ({"metrics": {"serviceMonitor": {"interval": "5 minutes"}}}, "interval"),
    ({"metrics": {"serviceMonitr": {"enabled": True}}}, "serviceMonitr"),
    ({"networkPolicy": {"apiServerCIDRs": ["10.0.0.1"]}}, "apiServerCIDRs"),
    ({"peering": {"name": "Not_A_Name"}}, "name"),
], ids=lambda v: json.dumps(v) if isinstance(v, dict) else None)
def test_schema_refuses_wrong_values(helm: str, tmp_path: Path, values: dict[str, Any],
                                     message: str) -> None:
    error = template_error(helm, tmp_path, values)
    assert "values don't meet the specifications of the schema" in error
    assert message in error


@pytest.mark.parametrize(("values", "message"), [
    ({"replicaCount": 2}, "replicaCount is 2 but peering.enabled is false"),
    ({"operator": {"metricsPort": 9000, "healthPort": 9000}}, "must differ"),
    ({"podDisruptionBudget": {"enabled": True, "minAvailable": 1}}, "not both"),
], ids=["replicas-without-peering", "same-ports", "pdb-both"])
def test_cross_value_checks(helm: str, tmp_path: Path, values: dict[str, Any],
                            message: str) -> None:
    assert message in template_error(helm, tmp_path, values)


# -- defaults -------------------------------------------------------------------------


def test_defaults_render_the_core_objects_only(helm: str, tmp_path: Path) -> None:
    docs = template(helm, tmp_path)
    assert kinds(docs) == ["ClusterRole", "ClusterRole", "ClusterRole", "ClusterRoleBinding",
                           "Deployment", "Job", "Service", "ServiceAccount"]
    assert one(docs, "Job")["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert kinds(template(helm, tmp_path, None, "--skip-tests")) == [
        "ClusterRole", "ClusterRole", "ClusterRole", "ClusterRoleBinding", "Deployment",
        "Service", "ServiceAccount"]


def test_a_plain_helm_template_succeeds(helm: str) -> None:
    """No --kube-version: helm's built-in Kubernetes version must satisfy the chart's
    kubeVersion, as it does for a released helm (and for scanners that run it)."""
    proc = subprocess.run([helm, "template", "corral", str(CHART)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_operator_pod_security(helm: str, tmp_path: Path) -> None:
    docs = template(helm, tmp_path)
    for spec in (one(docs, "Deployment")["spec"]["template"]["spec"],
                 one(docs, "Job")["spec"]["template"]["spec"]):
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True
        assert pod["runAsUser"] > 0
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert set(container["resources"]) == {"requests", "limits"}
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])
            assert "memory" in container["resources"]["limits"]


def test_operator_deployment(helm: str, tmp_path: Path) -> None:
    docs = template(helm, tmp_path)
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    # Without peering a rolling update would run two operators at once.
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == one(docs, "ServiceAccount")["metadata"]["name"]
    container = operator_container(docs)
    assert container["image"] == "corral:0.1.0"
    assert container["args"] == ["operator", "--metrics-port=8080", "--health-port=8081",
                                 "--log-format=json"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8080, "health": 8081}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp"}
    service = one(docs, "Service")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == ports


def test_image_digest_wins_over_tag(helm: str, tmp_path: Path) -> None:
    digest = "sha256:" + "a" * 64
    docs = template(helm, tmp_path, {"image": {"repository": "r.example/corral", "tag": "9",
                                               "digest": digest}})
    assert operator_container(docs)["image"] == f"r.example/corral@{digest}"


def test_health_test_targets_the_service(helm: str, tmp_path: Path) -> None:
    docs = template(helm, tmp_path)
    script = one(docs, "Job")["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert f"http://corral-operator.{NAMESPACE}.svc:8081/healthz" in script
    compile(script, "helm-test", "exec")


# -- RBAC -----------------------------------------------------------------------------

NAMESPACED_RULES = {
    ("corral.dev", "taskqueues", "get"), ("corral.dev", "taskqueues", "list"),
    ("corral.dev", "taskqueues", "watch"), ("corral.dev", "taskqueues", "patch"),
    ("corral.dev", "taskqueues/status", "get"), ("corral.dev", "taskqueues/status", "patch"),
    *{("apps", "deployments", v) for v in
      ("get", "list", "watch", "create", "patch", "update", "delete")},
    ("", "pods", "list"), ("", "pods", "watch"), ("", "pods", "patch"),
    *{("policy", "poddisruptionbudgets", v) for v in ("get", "create", "patch", "delete")},
    ("", "events", "create"), ("", "events", "patch"),
    ("events.k8s.io", "events", "create"), ("events.k8s.io", "events", "patch"),
    ("", "secrets", "get"),
}
CRD_RULES = {("apiextensions.k8s.io", "customresourcedefinitions", "list"),
             ("apiextensions.k8s.io", "customresourcedefinitions", "watch")}


def peering_rules(resource: str) -> set[tuple[str, str, str]]:
    return {(g, resource, v) for g in ("kopf.dev", "zalando.org")
            for v in ("get", "list", "watch", "patch")}


def test_rbac_cluster_wide(helm: str, tmp_path: Path) -> None:
    docs = template(helm, tmp_path)
    role = one(docs, "ClusterRole", "corral-operator")
    assert rules_of(role) == NAMESPACED_RULES | CRD_RULES
    binding = one(docs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "corral-operator",
                                    "namespace": NAMESPACE}]


def test_rbac_namespaced(helm: str, tmp_path: Path) -> None:
    docs = template(helm, tmp_path, {"watchNamespaces": ["team-a", "team-b"]})
    roles = [d for d in docs if d["kind"] == "Role"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    for role in roles:
        assert rules_of(role) == NAMESPACED_RULES
    bindings = [d for d in docs if d["kind"] == "RoleBinding"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    # Cluster scope keeps only what kopf reads there: no secrets, no deployments.
    cluster = one(docs, "ClusterRole", "corral-operator-discovery")
    assert rules_of(cluster) == CRD_RULES | {("", "namespaces", "list"),
                                             ("", "namespaces", "watch")}
    args = operator_container(docs)["args"]
    assert [a for a in args if a.startswith("--namespace")] == [
        "--namespace=team-a", "--namespace=team-b"]


def test_rbac_can_be_left_to_the_user(helm: str, tmp_path: Path) -> None:
    docs = template(helm, tmp_path, {"rbac": {"create": False, "aggregatedRoles": False},
                                     "serviceAccount": {"create": False, "name": "mine"}})
    assert kinds(docs) == ["Deployment", "Job", "Service"]
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "mine"


AGGREGATE = "rbac.authorization.k8s.io/aggregate-to-"
READ = ("get", "list", "watch")


def aggregated_into(role: dict[str, Any]) -> set[str]:
    return {k.removeprefix(AGGREGATE) for k, v in role["metadata"]["labels"].items()
            if k.startswith(AGGREGATE) and v == "true"}


def test_user_roles_aggregate_into_view_edit_and_admin(helm: str, tmp_path: Path) -> None:
    docs = template(helm, tmp_path)
    view = one(docs, "ClusterRole", "corral-taskqueue-view")
    edit = one(docs, "ClusterRole", "corral-taskqueue-edit")
    assert aggregated_into(view) == {"view", "edit", "admin"}
    assert aggregated_into(edit) == {"edit", "admin"}
    status_read = {("corral.dev", "taskqueues/status", v) for v in READ}
    assert rules_of(view) == {("corral.dev", "taskqueues", v) for v in READ} | status_read
    # Editors write specs, never the status: that is the operator's.
    assert rules_of(edit) == {("corral.dev", "taskqueues", v) for v in (
        *READ, "create", "update", "patch", "delete", "deletecollection")} | status_read
    off = template(helm, tmp_path, {"rbac": {"aggregatedRoles": False}})
    assert [d["metadata"]["name"] for d in off if d["kind"] == "ClusterRole"] == [
        "corral-operator"]


# -- the admission policy -------------------------------------------------------------

TENANT = {"name": "team-a", "namespaceSelector": {"matchLabels": {"corral.dev/tenant": "team-a"}},
          "allowedRegistries": ["registry.example.com", "ghcr.io"],
          "allowedSecrets": ["redis-team-a"]}


def test_admission_policy_is_off_by_default(helm: str, tmp_path: Path) -> None:
    assert not {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"} & set(
        kinds(template(helm, tmp_path)))


def test_admission_policy_per_tenant(helm: str, tmp_path: Path) -> None:
    other = {"name": "team-b", "namespaceSelector": {"matchLabels": {"team": "b"}},
             "allowedServiceAccounts": []}
    docs = template(helm, tmp_path, {"admissionPolicy": {"enabled": True,
                                                         "tenants": [TENANT, other]}})
    policy = one(docs, "ValidatingAdmissionPolicy", "corral-taskqueue-team-a")
    assert policy["apiVersion"] == "admissionregistration.k8s.io/v1"
    assert policy["spec"]["failurePolicy"] == "Fail"
    [rule] = policy["spec"]["matchConstraints"]["resourceRules"]
    assert (rule["apiGroups"], rule["resources"], rule["operations"]) == (
        ["corral.dev"], ["taskqueues"], ["CREATE", "UPDATE"])
    expressions = [v["expression"] for v in policy["spec"]["validations"]]
    assert expressions[0] == 'variables.registry in ["registry.example.com","ghcr.io"]'
    assert '["redis-team-a"]' in expressions[1]
    binding = one(docs, "ValidatingAdmissionPolicyBinding", "corral-taskqueue-team-a")
    assert binding["spec"] == {"policyName": "corral-taskqueue-team-a",
                               "validationActions": ["Deny"],
                               "matchResources": {"namespaceSelector": TENANT[
                                   "namespaceSelector"]}}
    # Only the lists given restrict; an empty one allows nothing.
    [only] = one(docs, "ValidatingAdmissionPolicy", "corral-taskqueue-team-b")["spec"][
        "validations"]
    assert "serviceAccountName in []" in only["expression"]


def test_admission_policy_needs_kubernetes_1_30(helm: str, tmp_path: Path) -> None:
    proc = run_helm(helm, "template", "corral", str(CHART), "--kube-version", "1.29.0",
                    values={"admissionPolicy": {"enabled": True, "tenants": [TENANT]}},
                    tmp_path=tmp_path)
    assert proc.returncode != 0
    assert "admissionPolicy needs Kubernetes 1.30 or later" in proc.stderr


@pytest.mark.parametrize(("values", "message"), [
    ({"admissionPolicy": {"enabled": True}}, "needs at least one entry"),
    ({"admissionPolicy": {"enabled": True, "tenants": [{"name": "Team A",
                                                        "namespaceSelector": {}}]}}, "name"),
    ({"admissionPolicy": {"enabled": True, "validationActions": ["Block"],
                          "tenants": [TENANT]}}, "validationActions"),
], ids=["no-tenants", "bad-name", "bad-action"])
def test_admission_policy_mistakes(helm: str, tmp_path: Path, values: dict[str, Any],
                                   message: str) -> None:
    assert message in template_error(helm, tmp_path, values)


# -- peering and the optional objects -------------------------------------------------


def test_peering_cluster_wide(helm: str, tmp_path: Path) -> None:
    docs = template(helm, tmp_path, {"replicaCount": 2, "peering": {"enabled": True}})
    peering = one(docs, "ClusterKopfPeering")
    assert peering["apiVersion"] == "kopf.dev/v1"
    assert f"--peering={peering['metadata']['name']}" in operator_container(docs)["args"]
    assert rules_of(one(docs, "ClusterRole", "corral-operator")) >= peering_rules(
        "clusterkopfpeerings")
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    anti = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert anti["preferredDuringSchedulingIgnoredDuringExecution"]


def test_peering_namespaced(helm: str, tmp_path: Path) -> None:
    docs = template(helm, tmp_path, {"peering": {"enabled": True, "name": "corral-peers"},
                                     "watchNamespaces": ["team-a", "team-b"]})
    peerings = [d for d in docs if d["kind"] == "KopfPeering"]
    assert sorted((p["metadata"]["namespace"], p["metadata"]["name"]) for p in peerings) == [
        ("team-a", "corral-peers"), ("team-b", "corral-peers")]
    for role in (d for d in docs if d["kind"] == "Role"):
        assert rules_of(role) == NAMESPACED_RULES | peering_rules("kopfpeerings")
    assert "--peering=corral-peers" in operator_container(docs)["args"]


def test_peering_crds_ship_with_the_chart() -> None:
    crds = list(yaml.safe_load_all((CHART / "crds" / "kopf-peerings.yaml").read_text()))
    kinds = {(c["spec"]["group"], c["spec"]["names"]["kind"], c["spec"]["scope"]) for c in crds}
    assert kinds == {("kopf.dev", "ClusterKopfPeering", "Cluster"),
                     ("kopf.dev", "KopfPeering", "Namespaced")}
    for crd in crds:
        # kopf writes peers into .status of the object itself: no status subresource.
        assert "subresources" not in crd["spec"]["versions"][0]


def test_all_optional_objects(helm: str, tmp_path: Path) -> None:
    docs = template(helm, tmp_path, ALL_ON)
    assert kinds(docs) == sorted([
        "ClusterKopfPeering", *["ClusterRole"] * 3, "ClusterRoleBinding", "ConfigMap",
        "Deployment",
        "Job", "NetworkPolicy", "PodDisruptionBudget", "PodMonitor", "PrometheusRule",
        "Service", "ServiceAccount", "ServiceMonitor"])
    selector = one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    # AlwaysAllow: a crash-looping operator pod must not block a node drain.
    assert one(docs, "PodDisruptionBudget")["spec"] == {
        "maxUnavailable": 1, "selector": {"matchLabels": selector},
        "unhealthyPodEvictionPolicy": "AlwaysAllow"}
    monitor = one(docs, "ServiceMonitor")["spec"]
    assert monitor["selector"]["matchLabels"] == one(docs, "Service")["spec"]["selector"]
    assert monitor["endpoints"][0]["port"] == "metrics"
    assert monitor["endpoints"][0]["honorLabels"] is True
    pod_monitor = one(docs, "PodMonitor")["spec"]
    assert pod_monitor["namespaceSelector"] == {"any": True}
    assert pod_monitor["podMetricsEndpoints"][0]["port"] == "metrics"


def test_network_policy(helm: str, tmp_path: Path) -> None:
    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    docs = template(helm, tmp_path, {"networkPolicy": {
        "enabled": True, "metricsFrom": [peer], "apiServerCIDRs": ["10.0.0.1/32"],
        "redisTo": [{"ipBlock": {"cidr": "10.1.0.0/16"}}]}})
    spec = one(docs, "NetworkPolicy")["spec"]
    assert spec["podSelector"]["matchLabels"] == one(docs, "Deployment")["spec"]["selector"][
        "matchLabels"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    [ingress] = spec["ingress"]
    assert {p["port"] for p in ingress["ports"]} == {"metrics", "health"}
    assert ingress["from"][0] == peer
    test_labels = one(docs, "Job")["spec"]["template"]["metadata"]["labels"]
    assert ingress["from"][1]["podSelector"]["matchLabels"].items() <= test_labels.items()
    dns, api, redis = spec["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert api["to"] == [{"ipBlock": {"cidr": "10.0.0.1/32"}}]
    assert [p["port"] for p in redis["ports"]] == [6379]
    assert redis["to"] == [{"ipBlock": {"cidr": "10.1.0.0/16"}}]


# -- metrics contract: alerts and dashboard use metrics that exist --------------------


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(corral_[a-z_]+)\b", expr))


def known_series() -> set[str]:
    source = Path(corral_worker.metrics.__file__).read_text()
    for family in WORKER_SERIES:
        assert f'"{family}"' in source, f"worker metric family {family} is gone"
    return OPERATOR_METRICS | set().union(*WORKER_SERIES.values())


SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def operator_series() -> set[str]:
    """Series names the operator really exports (from its registry's exposition)."""
    text = OperatorMetrics().render().decode()
    # Newer prometheus-client versions name counters with their _total in the TYPE line.
    return {name.removesuffix("_total") + suffix
            for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M)
            for suffix in SUFFIXES.get(kind, ("",))}


def test_operator_exports_what_alerts_and_dashboard_use() -> None:
    assert operator_series() >= OPERATOR_METRICS


def test_alerts(helm: str, tmp_path: Path) -> None:
    docs = template(helm, tmp_path, {"metrics": {"prometheusRule": {"enabled": True}}})
    rules = one(docs, "PrometheusRule")["spec"]["groups"][0]["rules"]
    assert {r["alert"] for r in rules} == {"CorralBacklogGrowingAtMaxReplicas",
                                           "CorralRedisUnreachable", "CorralDeadLetterGrowing"}
    for rule in rules:
        assert metric_names(rule["expr"]) <= known_series(), rule["alert"]
        assert rule["expr"].count("(") == rule["expr"].count(")")
        assert rule["labels"] == {"severity": "warning"}
        assert "{{ $labels.taskqueue }}" in rule["annotations"]["summary"]


def test_dead_letter_alert_counts_tasks_entering_the_queue(helm: str, tmp_path: Path) -> None:
    from corral_worker.metrics import OUTCOMES

    docs = template(helm, tmp_path, {"metrics": {"prometheusRule": {
        "enabled": True, "deadLetterWindow": "1h", "deadLetterThreshold": 2}}})
    [rule] = [r for r in one(docs, "PrometheusRule")["spec"]["groups"][0]["rules"]
              if r["alert"] == "CorralDeadLetterGrowing"]
    # delta() of the queue's size extrapolates and is cancelled out by a requeue.
    assert "delta(" not in rule["expr"]
    assert 'increase(corral_tasks_total{outcome="dead"}[1h])' in rule["expr"]
    assert rule["expr"].rstrip().endswith("> 2")
    assert "dead" in OUTCOMES
    assert {"{{ $labels.queue }}", "{{ $labels.taskqueue }}"} <= set(
        re.findall(r"\{\{ \$labels\.\w+ \}\}", rule["annotations"]["summary"]))


def dashboard_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def test_dashboard(helm: str, tmp_path: Path) -> None:
    docs = template(helm, tmp_path, {"grafanaDashboard": {"enabled": True}})
    config_map = one(docs, "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config_map["data"]["corral-taskqueues.json"])
    assert dashboard["uid"] == "corral-taskqueues"
    assert [v["name"] for v in dashboard["templating"]["list"]] == [
        "datasource", "namespace", "taskqueue"]
    panels = [p for p in dashboard_panels(dashboard) if p["type"] != "row"]
    assert len({p["id"] for p in dashboard_panels(dashboard)}) == len(
        list(dashboard_panels(dashboard)))
    used: set[str] = set()
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert 'taskqueue=~"$taskqueue"' in target["expr"], panel["title"]
            used |= metric_names(target["expr"])
    assert used <= known_series()
    titles = " ".join(p["title"].lower() for p in panels)
    for topic in ("backlog", "in flight", "replicas", "task rate", "latency"):
        assert topic in titles


# -- the contract with `corral operator` ----------------------------------------------


@pytest.mark.parametrize("values", [{}, {"watchNamespaces": ["a", "b"]},
                                    {"operator": {"logFormat": "text", "metricsPort": 9090}}])
def test_operator_accepts_the_charts_arguments(helm: str, tmp_path: Path,
                                               values: dict[str, Any]) -> None:
    from corral.cli import build_parser

    args = build_parser().parse_args(operator_container(template(helm, tmp_path, values))["args"])
    assert args.command == "operator"
    assert args.namespaces == values.get("watchNamespaces", [])


def test_operator_accepts_the_peering_argument(helm: str, tmp_path: Path) -> None:
    from corral.cli import build_parser

    docs = template(helm, tmp_path, {"replicaCount": 2, "peering": {"enabled": True}})
    args = build_parser().parse_args(operator_container(docs)["args"])
    assert args.peering == "corral"

"""Many teams on one cluster, on the real control plane: the chart's TaskQueue roles
reach namespace viewers and editors through the built-in view/edit roles (the
controller-manager's clusterrole-aggregation controller), and the optional
ValidatingAdmissionPolicy refuses what a namespace's tenant may not run."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.test_chart import CHART, helm, server_version, values_args, wait_until
from tests.support.k8s import Cluster
from tests.unit.test_operator_models import VALID

pytestmark = pytest.mark.e2e

TENANT_LABEL = "corral.dev/tenant"


def rendered(k8s: Cluster, workdir: Path, values: dict[str, Any],
             kinds: set[str]) -> list[dict[str, Any]]:
    out = helm(k8s, "template", "corral", str(CHART), "--namespace", "corral-system",
               "--kube-version", server_version(k8s), *values_args(workdir, values)).stdout
    return [d for d in yaml.safe_load_all(out) if d and d["kind"] in kinds]


def taskqueue(name: str, namespace: str, **worker: Any) -> dict[str, Any]:
    return {"apiVersion": "corral.dev/v1alpha1", "kind": "TaskQueue",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {**VALID, "worker": {**VALID["worker"], **worker}}}


def namespace(k8s: Cluster, name: str, labels: dict[str, str] | None = None) -> None:
    k8s.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": labels or {}}}))


def as_user(k8s: Cluster, user: str, *args: str, input: str | None = None) -> tuple[int, str]:
    proc = k8s.kubectl(f"--as={user}", *args, input=input, check=False)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tenancy")


@pytest.fixture(scope="module")
def crd(k8s: Cluster) -> None:
    k8s.kubectl("apply", "--server-side", "--force-conflicts",
                "-f", str(CHART / "crds" / "taskqueues.corral.dev.yaml"))
    k8s.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                "crd/taskqueues.corral.dev")


# -- aggregated roles -----------------------------------------------------------------


@pytest.fixture(scope="module")
def team_namespace(k8s: Cluster, crd: None, workdir: Path) -> Iterator[str]:
    """The chart's user roles applied; alice may edit the namespace, bob may view it."""
    roles = rendered(k8s, workdir, {}, {"ClusterRole"})
    roles = [r for r in roles if "-taskqueue-" in r["metadata"]["name"]]
    assert len(roles) == 2
    k8s.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(roles))
    ns = f"e2e-team-{uuid.uuid4().hex[:6]}"
    namespace(k8s, ns)
    for user, role in (("alice", "edit"), ("bob", "view")):
        k8s.kubectl("-n", ns, "create", "rolebinding", f"{user}-{role}",
                    f"--clusterrole={role}", f"--user={user}")
    try:
        yield ns
    finally:
        k8s.kubectl("delete", "namespace", ns, "--wait=false")
        k8s.kubectl("delete", "--ignore-not-found", "-f", "-", input=yaml.safe_dump_all(roles))


def can_i(k8s: Cluster, user: str, verb: str, ns: str) -> bool:
    _, out = as_user(k8s, user, "auth", "can-i", verb, "taskqueues.corral.dev", "-n", ns)
    assert out.strip() in ("yes", "no"), out
    return out.strip() == "yes"


def test_a_namespace_editor_may_create_a_taskqueue(k8s: Cluster, team_namespace: str) -> None:
    ns = team_namespace
    # The clusterrole-aggregation controller copies the rules into edit shortly.
    wait_until("edit aggregates the TaskQueue rules",
               lambda: (can_i(k8s, "alice", "create", ns), None))
    code, out = as_user(k8s, "alice", "apply", "-f", "-",
                        input=json.dumps(taskqueue("mail", ns)))
    assert code == 0, out
    code, out = as_user(k8s, "alice", "-n", ns, "patch", "taskqueue", "mail", "--type=merge",
                        "-p", '{"spec": {"scaling": {"maxReplicas": 3}}}')
    assert code == 0, out
    # The status is the operator's.
    code, out = as_user(k8s, "alice", "-n", ns, "patch", "taskqueue", "mail", "--type=merge",
                        "--subresource=status", "-p", '{"status": {"backlog": 1}}')
    assert code != 0 and "forbidden" in out.lower(), out
    # Nothing outside the namespace the binding is in.
    assert not can_i(k8s, "alice", "create", "default")


def test_a_namespace_viewer_may_only_read(k8s: Cluster, team_namespace: str) -> None:
    ns = team_namespace
    wait_until("view aggregates the TaskQueue rules",
               lambda: (can_i(k8s, "bob", "list", ns), None))
    k8s.kubectl("apply", "-f", "-", input=json.dumps(taskqueue("reports", ns)))
    code, out = as_user(k8s, "bob", "-n", ns, "get", "taskqueues", "-o", "name")
    assert code == 0 and "taskqueue.corral.dev/reports" in out, out
    code, out = as_user(k8s, "bob", "-n", ns, "get", "taskqueue", "reports", "-o", "json")
    assert code == 0 and json.loads(out)["spec"]["worker"]["image"], out
    for args in (("apply", "-f", "-"),
                 ("-n", ns, "patch", "taskqueue", "reports", "--type=merge",
                  "-p", '{"spec": {"scaling": {"paused": true}}}'),
                 ("-n", ns, "delete", "taskqueue", "reports")):
        code, out = as_user(k8s, "bob", *args, input=json.dumps(taskqueue("bobs", ns)))
        assert code != 0 and "forbidden" in out.lower(), (args, out)


# -- the admission policy -------------------------------------------------------------


@pytest.fixture(scope="module")
def policy(k8s: Cluster, crd: None, workdir: Path) -> Iterator[str]:
    """The policy for tenant e2e-a: images from registry.example.com only, the URL
    Secret redis-team-a only. Yields a namespace labelled for the tenant."""
    tenant = {"name": "e2e-a", "namespaceSelector": {"matchLabels": {TENANT_LABEL: "e2e-a"}},
              "allowedRegistries": ["registry.example.com"],
              "allowedSecrets": ["redis-team-a"]}
    docs = rendered(k8s, workdir, {"admissionPolicy": {"enabled": True, "tenants": [tenant]}},
                    {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"})
    assert len(docs) == 2
    k8s.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
    ns = f"e2e-tenant-{uuid.uuid4().hex[:6]}"
    namespace(k8s, ns, {TENANT_LABEL: "e2e-a"})
    try:
        yield ns
    finally:
        k8s.kubectl("delete", "namespace", ns, "--wait=false")
        k8s.kubectl("delete", "--ignore-not-found", "-f", "-", input=yaml.safe_dump_all(docs))


def dry_run(k8s: Cluster, obj: dict[str, Any]) -> tuple[int, str]:
    proc = k8s.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(obj),
                       check=False)
    return proc.returncode, proc.stdout + proc.stderr


def test_a_forbidden_image_is_refused_with_a_readable_message(k8s: Cluster,
                                                              policy: str) -> None:
    bad = taskqueue("bad", policy, image="docker.io/someone/miner:1")
    # A new policy takes effect once the API server has loaded it.
    _, out = wait_until("the policy refuses", lambda: (
        (result := dry_run(k8s, bad))[0] != 0, result))
    assert "spec.worker.image docker.io/someone/miner:1 is from registry docker.io, which " \
           f"namespace {policy} does not allow (allowed: registry.example.com)" in out, out
    # A name without a registry is docker.io's.
    code, out = dry_run(k8s, taskqueue("bare", policy, image="miner:1"))
    assert code != 0 and "is from registry docker.io" in out, out
    code, out = dry_run(k8s, taskqueue("good", policy, image="registry.example.com/a/app:2"))
    assert code == 0, out


def test_a_forbidden_secret_is_refused(k8s: Cluster, policy: str) -> None:
    def with_secret(name: str, env_secret: str | None = None) -> dict[str, Any]:
        obj = taskqueue("tq", policy, image="registry.example.com/app:1")
        obj["spec"]["redis"] = {"urlSecretRef": {"name": name, "key": "url"}}
        if env_secret:
            obj["spec"]["worker"]["env"] = [{"name": "TOKEN", "valueFrom": {
                "secretKeyRef": {"name": env_secret, "key": "token"}}}]
        return obj

    wait_until("the policy refuses", lambda: (
        (result := dry_run(k8s, with_secret("cluster-admin-token")))[0] != 0, result))
    _, out = dry_run(k8s, with_secret("cluster-admin-token"))
    assert f"a TaskQueue in namespace {policy} may not name Secret cluster-admin-token " \
           "(allowed: redis-team-a)" in out, out
    code, out = dry_run(k8s, with_secret("redis-team-a", env_secret="payroll"))
    assert code != 0 and "may not name Secret payroll" in out, out
    code, out = dry_run(k8s, with_secret("redis-team-a"))
    assert code == 0, out


def test_namespaces_of_other_tenants_are_not_bound(k8s: Cluster, policy: str) -> None:
    wait_until("the policy refuses", lambda: (
        dry_run(k8s, taskqueue("bad", policy, image="miner:1"))[0] != 0, None))
    other = f"e2e-other-{uuid.uuid4().hex[:6]}"
    namespace(k8s, other)
    try:
        code, out = dry_run(k8s, taskqueue("any", other, image="miner:1"))
        assert code == 0, out
    finally:
        k8s.kubectl("delete", "namespace", other, "--wait=false")


def test_the_policy_type_checks_against_the_crd(k8s: Cluster, policy: str) -> None:
    def checked() -> tuple[bool, Any]:
        status = json.loads(k8s.kubectl("get", "validatingadmissionpolicy",
                                        "corral-taskqueue-e2e-a", "-o", "json").stdout
                            ).get("status", {})
        return "typeChecking" in status, status

    status = wait_until("type checking of the policy", checked)
    assert not status["typeChecking"].get("expressionWarnings"), status


# -- worker pods ----------------------------------------------------------------------


def test_the_worker_deployment_with_a_ca_and_no_token_is_valid(k8s: Cluster) -> None:
    from corral_operator import deployment, models

    spec = models.TaskQueueSpec.model_validate({**VALID, "redis": {
        "url": "rediss://redis.example:6380/0", "caSecretRef": {"name": "redis-ca"}}})
    body = deployment.render(deployment.Owner("tls", "default", "uid-1"), spec, 1)
    body["metadata"]["ownerReferences"] = []  # no such TaskQueue to own it
    proc = k8s.kubectl("apply", "--dry-run=server", "-o", "json", "-f", "-",
                       input=json.dumps(body))
    pod = json.loads(proc.stdout)["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    [volume] = [v for v in pod["volumes"] if v["name"] == deployment.REDIS_CA_VOLUME]
    assert volume["secret"]["defaultMode"] == 0o444

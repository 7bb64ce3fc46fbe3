"""Rendering the worker Deployment from a TaskQueue spec."""

from __future__ import annotations

from typing import Any

from corral_operator import deployment as dep
from corral_operator import models
from tests.unit.test_operator_models import VALID, with_change

OWNER = dep.Owner(name="emails", namespace="shop", uid="1234-5678")


def render(spec: dict[str, Any] = VALID, replicas: int = 3) -> dict[str, Any]:
    return dep.render(OWNER, models.TaskQueueSpec.model_validate(spec), replicas)


def container(body: dict[str, Any]) -> dict[str, Any]:
    [c] = body["spec"]["template"]["spec"]["containers"]
    return c


def env(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container(body)["env"]}


def test_name_owner_and_labels() -> None:
    body = render()
    meta = body["metadata"]
    assert (meta["name"], meta["namespace"]) == ("emails-worker", "shop")
    assert meta["ownerReferences"] == [{
        "apiVersion": "corral.dev/v1alpha1", "kind": "TaskQueue", "name": "emails",
        "uid": "1234-5678", "controller": True, "blockOwnerDeletion": True}]
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "corral-operator"
    assert meta["labels"]["app.kubernetes.io/instance"] == "emails"
    selector = body["spec"]["selector"]["matchLabels"]
    assert selector == {"corral.dev/taskqueue": "emails", "app.kubernetes.io/component": "worker"}
    assert selector.items() <= body["spec"]["template"]["metadata"]["labels"].items()
    assert body["spec"]["replicas"] == 3


def test_worker_command() -> None:
    spec = with_change("worker", {**VALID["worker"], "concurrency": 7, "batchSize": 3,
                                  "leaseSeconds": 12, "graceSeconds": 20})
    assert container(render(spec))["command"] == [
        "corral", "worker", "app.tasks:app", "--queues", "default=1,critical=5",
        "--concurrency", "7", "--batch-size", "3", "--lease-seconds", "12",
        "--grace-seconds", "20", "--metrics-host", "0.0.0.0", "--metrics-port", "9100",
        "--worker-id", "$(POD_NAME)", "--log-format", "json", "--log-level", "INFO",
    ]


def test_redis_url_from_secret_never_inline() -> None:
    body = render(with_change("redis", {"urlSecretRef": {"name": "redis-auth", "key": "url"}}))
    url = env(body)["CORRAL_REDIS_URL"]
    assert url == {"name": "CORRAL_REDIS_URL",
                   "valueFrom": {"secretKeyRef": {"name": "redis-auth", "key": "url"}}}
    assert env(render())["CORRAL_REDIS_URL"]["value"] == "redis://redis.example:6379/0"


def test_pod_name_comes_from_the_downward_api() -> None:
    assert env(render())["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_user_env_is_passed_through() -> None:
    body = render(with_change("worker.env", [
        {"name": "A", "value": "1"},
        {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "b"}}}]))
    assert env(body)["A"] == {"name": "A", "value": "1"}
    assert env(body)["B"]["valueFrom"] == {"configMapKeyRef": {"name": "cm", "key": "b"}}


def test_probes_and_metrics_port() -> None:
    c = container(render())
    assert c["ports"] == [{"name": "metrics", "containerPort": 9100, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}


def test_security_context() -> None:
    body = render()
    pod = body["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container(body)["securityContext"]
    assert sc == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                  "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}
    # A writable /tmp, since the root filesystem is read-only.
    assert {"name": "tmp", "mountPath": "/tmp"} in container(body)["volumeMounts"]


def test_no_api_token_unless_a_service_account_is_named() -> None:
    # Workers talk only to Redis: the default service account's token stays out.
    pod = render()["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in pod
    pod = render(with_change("worker.serviceAccountName", "worker-sa"))["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "worker-sa"
    # A named account chose its own rights: its own automount setting decides.
    assert "automountServiceAccountToken" not in pod


def test_redis_ca_from_a_secret_is_mounted_read_only() -> None:
    body = render(with_change("redis", {"url": "rediss://redis.example:6380/0",
                                        "caSecretRef": {"name": "redis-ca"}}))
    pod = body["spec"]["template"]["spec"]
    [volume] = [v for v in pod["volumes"] if v["name"] == dep.REDIS_CA_VOLUME]
    assert volume["secret"] == {"secretName": "redis-ca", "defaultMode": 0o444,
                                "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    mount = {"name": dep.REDIS_CA_VOLUME, "mountPath": dep.REDIS_CA_DIR, "readOnly": True}
    assert mount in container(body)["volumeMounts"]
    assert env(body)["CORRAL_REDIS_CA_CERTS"] == {
        "name": "CORRAL_REDIS_CA_CERTS", "value": f"{dep.REDIS_CA_DIR}/ca.crt"}
    # A key of another name lands under the same file name.
    body = render(with_change("redis", {"url": "rediss://redis.example:6380/0",
                                        "caSecretRef": {"name": "tls", "key": "bundle.pem"}}))
    [volume] = [v for v in body["spec"]["template"]["spec"]["volumes"]
                if v["name"] == dep.REDIS_CA_VOLUME]
    assert volume["secret"]["items"] == [{"key": "bundle.pem", "path": "ca.crt"}]


def test_no_ca_volume_without_a_ca_secret() -> None:
    body = render()
    assert [v["name"] for v in body["spec"]["template"]["spec"]["volumes"]] == ["tmp"]
    assert "CORRAL_REDIS_CA_CERTS" not in env(body)


def test_termination_grace_covers_the_drain() -> None:
    body = render(with_change("worker.graceSeconds", 120))
    pod = body["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 120 + dep.TERMINATION_MARGIN_S


def test_pod_spec_options() -> None:
    worker = {
        **VALID["worker"],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
        "nodeSelector": {"pool": "workers"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "w",
                         "effect": "NoSchedule"}],
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
        "serviceAccountName": "worker-sa",
        "imagePullSecrets": [{"name": "regcred"}],
        "priorityClassName": "batch",
        "imagePullPolicy": "Always",
        "podLabels": {"team": "mail"},
        "podAnnotations": {"prometheus.io/scrape": "true"},
    }
    body = render(with_change("worker", worker))
    pod = body["spec"]["template"]["spec"]
    assert container(body)["resources"] == worker["resources"]
    assert container(body)["imagePullPolicy"] == "Always"
    assert pod["nodeSelector"] == {"pool": "workers"}
    assert pod["tolerations"] == worker["tolerations"]
    assert pod["affinity"] == worker["affinity"]
    assert pod["serviceAccountName"] == "worker-sa"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["priorityClassName"] == "batch"
    template_meta = body["spec"]["template"]["metadata"]
    assert template_meta["labels"]["team"] == "mail"
    assert template_meta["annotations"] == {"prometheus.io/scrape": "true"}


def test_workers_get_requests_and_limits_by_default() -> None:
    resources = container(render())["resources"]
    assert resources == {"requests": {"cpu": "100m", "memory": "128Mi"},
                         "limits": {"cpu": "1", "memory": "512Mi"}}


def test_resources_replace_the_defaults_as_a_whole() -> None:
    only_requests = {"requests": {"cpu": "2"}}
    assert container(render(with_change("worker.resources", only_requests)))["resources"] == \
        only_requests
    # {} is how to ask for no requests and no limits at all.
    assert container(render(with_change("worker.resources", {})))["resources"] == {}


def test_pod_labels_cannot_break_the_selector() -> None:
    body = render(with_change("worker.podLabels", {"corral.dev/taskqueue": "other"}))
    assert body["spec"]["template"]["metadata"]["labels"]["corral.dev/taskqueue"] == "emails"


def test_spec_hash_ignores_replicas_and_follows_the_spec() -> None:
    a = render(replicas=1)["metadata"]["annotations"][dep.SPEC_HASH_ANNOTATION]
    b = render(replicas=9)["metadata"]["annotations"][dep.SPEC_HASH_ANNOTATION]
    c = render(with_change("worker.concurrency", 8))["metadata"]["annotations"][
        dep.SPEC_HASH_ANNOTATION]
    assert a == b != c


def test_worker_pods_get_the_key_prefix() -> None:
    assert env(render())["CORRAL_PREFIX"] == {"name": "CORRAL_PREFIX", "value": "corral"}
    spec = with_change("redis", {"url": "redis://r:6379", "prefix": "team-a"})
    assert env(render(spec))["CORRAL_PREFIX"] == {"name": "CORRAL_PREFIX", "value": "team-a"}

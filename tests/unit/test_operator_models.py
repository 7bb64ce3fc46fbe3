"""The TaskQueue models: defaults and the rules that the CRD states for the API server."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from corral_operator import models

VALID: dict[str, Any] = {
    "redis": {"url": "redis://redis.example:6379/0"},
    "queues": [{"name": "default"}, {"name": "critical", "weight": 5}],
    "worker": {"image": "example.invalid/app:1", "app": "app.tasks:app"},
}


def with_change(path: str, value: Any) -> dict[str, Any]:
    """VALID with the value at a dotted path replaced (``...=DELETE`` removes it)."""
    spec = copy.deepcopy(VALID)
    *parents, last = path.split(".")
    node: Any = spec
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return spec


DELETE = object()

# (id, spec, text the API server's message must contain). The e2e test applies the
# same specs with kubectl; pydantic must refuse every one as well.
INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("no-queues", with_change("queues", DELETE), "spec.queues: Required value"),
    ("empty-queues", with_change("queues", []), "should have at least 1 items"),
    ("weight-zero", with_change("queues", [{"name": "a", "weight": 0}]),
     "should be greater than or equal to 1"),
    ("weight-too-big", with_change("queues", [{"name": "a", "weight": 101}]),
     "should be less than or equal to 100"),
    ("duplicate-queues", with_change("queues", [{"name": "a"}, {"name": "a", "weight": 2}]),
     "queue names must be unique"),
    ("bad-queue-name", with_change("queues", [{"name": "no spaces"}]), "should match"),
    ("min-above-max", with_change("scaling", {"minReplicas": 5, "maxReplicas": 2}),
     "scaling.minReplicas must not be greater than scaling.maxReplicas"),
    ("negative-min", with_change("scaling", {"minReplicas": -1}),
     "should be greater than or equal to 0"),
    ("zero-max", with_change("scaling", {"maxReplicas": 0}),
     "should be greater than or equal to 1"),
    ("zero-target", with_change("scaling", {"targetBacklogPerReplica": 0}),
     "should be greater than or equal to 1"),
    ("zero-poll", with_change("scaling", {"pollSeconds": 0}),
     "should be greater than or equal to 1"),
    ("url-and-secret", with_change("redis", {"url": "redis://r:6379",
                                             "urlSecretRef": {"name": "s", "key": "url"}}),
     "set exactly one of redis.url and redis.urlSecretRef"),
    ("no-url", with_change("redis", {}), "set exactly one of redis.url and redis.urlSecretRef"),
    ("http-url", with_change("redis.url", "http://redis:6379"), "should match"),
    ("ca-without-tls", with_change("redis", {"url": "redis://r:6379",
                                             "caSecretRef": {"name": "redis-ca"}}),
     "redis.caSecretRef needs a rediss:// URL"),
    ("app-without-attr", with_change("worker.app", "app.tasks"), "should match"),
    ("no-image", with_change("worker.image", DELETE), "spec.worker.image: Required value"),
    ("zero-concurrency", with_change("worker.concurrency", 0),
     "should be greater than or equal to 1"),
    ("reserved-env", with_change("worker.env", [{"name": "CORRAL_REDIS_URL", "value": "x"}]),
     "worker.env must not set CORRAL_REDIS_URL, CORRAL_REDIS_CA_CERTS, CORRAL_PREFIX, POD_NAME"),
    ("env-sets-prefix", with_change("worker.env", [{"name": "CORRAL_PREFIX", "value": "x"}]),
     "worker.env must not set CORRAL_REDIS_URL, CORRAL_REDIS_CA_CERTS, CORRAL_PREFIX, POD_NAME"),
    ("prefix-with-hash-tag", with_change("redis.prefix", "team{a}"), "should match"),
    ("prefix-with-colon", with_change("redis.prefix", "team:a"), "should match"),
    ("bad-pull-policy", with_change("worker.imagePullPolicy", "Sometimes"),
     "Unsupported value"),
    ("typo-field", with_change("scaling", {"maxReplica": 3}),
     'unknown field "spec.scaling.maxReplica"'),
    ("bad-quantity", with_change("worker.resources", {"requests": {"cpu": "2 cores"}}),
     "spec.worker.resources.requests.cpu in body should match"),
    ("string-for-int", with_change("scaling", {"maxReplicas": "3"}),
     "spec.scaling.maxReplicas in body must be of type integer"),
    # node autoscaling
    ("bad-max-unavailable", with_change("worker.disruptionBudget", {"maxUnavailable": "half"}),
     "spec.worker.disruptionBudget.maxUnavailable in body should match"),
    ("budget-without-max", with_change("worker.disruptionBudget", {}),
     "spec.worker.disruptionBudget.maxUnavailable: Required value"),
    ("negative-idle", with_change("disruption", {"idleSeconds": -1}),
     "should be greater than or equal to 0"),
    ("negative-drain", with_change("scaling", {"maxDrainSeconds": -1}),
     "should be greater than or equal to 0"),
    ("spread-without-key", with_change("worker.topologySpreadConstraints", [
        {"maxSkew": 1, "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {}}]),
     "topologyKey: Required value"),
    ("spread-bad-when", with_change("worker.topologySpreadConstraints", [
        {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "Never",
         "labelSelector": {}}]), "Unsupported value"),
    ("bad-priority-class", with_change("worker.priorityClassName", "Batch_Low"),
     "should match"),
]


def test_defaults() -> None:
    spec = models.TaskQueueSpec.model_validate(VALID)
    assert spec.scaling == models.ScalingSpec()
    assert spec.scaling.min_replicas == 0
    assert spec.worker.concurrency == 50
    assert spec.queues[0].weight == 1
    assert spec.queue_names == ["default", "critical"]
    assert spec.worker.resources == models.DEFAULT_WORKER_RESOURCES


def test_camel_case_aliases_round_trip() -> None:
    spec = models.TaskQueueSpec.model_validate(
        with_change("scaling", {"minReplicas": 1, "scaleDownStabilizationSeconds": 7}))
    assert spec.scaling.min_replicas == 1
    assert spec.scaling.scale_down_stabilization_seconds == 7
    dumped = spec.model_dump(by_alias=True, exclude_defaults=True)
    assert dumped["scaling"] == {"minReplicas": 1, "scaleDownStabilizationSeconds": 7}


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError, match="maxReplica"):
        models.TaskQueueSpec.model_validate(with_change("scaling", {"maxReplica": 3}))


def test_secret_ref() -> None:
    spec = models.TaskQueueSpec.model_validate(
        with_change("redis", {"urlSecretRef": {"name": "redis", "key": "url"}}))
    assert spec.redis.url is None
    assert spec.redis.url_secret_ref == models.SecretKeyRef(name="redis", key="url")


def test_ca_secret_ref_defaults_to_the_ca_crt_key() -> None:
    spec = models.TaskQueueSpec.model_validate(
        with_change("redis", {"url": "rediss://r:6380", "caSecretRef": {"name": "redis-ca"}}))
    assert spec.redis.ca_secret_ref == models.CASecretRef(name="redis-ca", key="ca.crt")
    # With the URL in a Secret the scheme is only known when the URL is read.
    models.TaskQueueSpec.model_validate(with_change("redis", {
        "urlSecretRef": {"name": "s", "key": "url"}, "caSecretRef": {"name": "redis-ca"}}))


def test_quantities_accept_ints_and_strings() -> None:
    spec = models.TaskQueueSpec.model_validate(with_change(
        "worker.resources", {"requests": {"cpu": "250m", "memory": "256Mi"},
                             "limits": {"cpu": 1}}))
    assert spec.worker.resources.limits == {"cpu": 1}


@pytest.mark.parametrize("quantity", ["500m", "2", 2, "1.5", ".5", "1Gi", "128Mi", "2e3", 0])
def test_quantities_kubernetes_accepts(quantity: int | str) -> None:
    models.TaskQueueSpec.model_validate(
        with_change("worker.resources", {"requests": {"cpu": quantity}}))


@pytest.mark.parametrize("quantity", ["lots", "1.5.5", "2 cores", "-1", -1, "1Qi", "0x10", "",
                                      "1Gi\n", True, 1.5])
def test_quantities_kubernetes_refuses(quantity: object) -> None:
    with pytest.raises(ValidationError) as caught:
        models.TaskQueueSpec.model_validate(
            with_change("worker.resources", {"limits": {"memory": quantity}}))
    assert caught.value.errors()[0]["loc"] == ("worker", "resources", "limits", "memory")


@pytest.mark.parametrize(("spec", "message"), [(s, m) for _, s, m in INVALID],
                         ids=[i for i, _, _ in INVALID])
def test_pydantic_refuses_what_the_api_server_refuses(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError):
        models.TaskQueueSpec.model_validate(spec)


@pytest.mark.parametrize("rule_set", [models.REDIS_RULES, models.QUEUES_RULES,
                                      models.WORKER_RULES, models.SCALING_RULES])
def test_every_cel_rule_has_a_pydantic_twin(rule_set: list[dict[str, str]]) -> None:
    """Each CEL message appears in the INVALID table, where pydantic must refuse it too."""
    for rule in rule_set:
        assert any(rule["message"] in m or m in rule["message"] for _, _, m in INVALID), rule


def test_status_model_accepts_what_the_operator_writes() -> None:
    status = models.TaskQueueStatus.model_validate({
        "queues": "default=1", "backlog": 3, "inFlight": 1, "replicas": 1, "readyReplicas": 1,
        "desiredReplicas": 1, "lastScaleTime": "2024-01-01T00:00:00Z", "observedGeneration": 2,
        "conditions": [{"type": "Ready", "status": "True", "reason": "WorkersReady",
                        "message": "1 of 1", "lastTransitionTime": "2024-01-01T00:00:00Z",
                        "observedGeneration": 2}],
    })
    assert status.in_flight == 1


def docs_taskqueues() -> list[dict[str, Any]]:
    """The TaskQueue objects in the YAML examples of docs/operator.md."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "operator.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)
    docs = [d for block in blocks for d in yaml.safe_load_all(block) if d]
    return [d for d in docs if d.get("kind") == "TaskQueue"]


def test_the_docs_example_is_a_valid_taskqueue() -> None:
    [example] = docs_taskqueues()
    spec = models.TaskQueueSpec.model_validate(example["spec"])
    assert spec.redis.url_secret_ref is not None

"""Invalid TaskQueue specs, generated. Each spec is a complete, valid TaskQueue with
exactly one defect, drawn from the CRD's own schema (a wrong type, a number out of
range, a string too long or off its pattern, a value outside its enum, a list too
short or too long, a required field missing, an unknown field) or from its CEL rules.

- The operator's pydantic models refuse every one, with a message that names the
  field or the rule (many examples: this is cheap).
- The API server refuses every one too, by schema or CEL rule, with a message that
  names the field or the rule (30 examples, one server-side dry run each).
- What only the Deployment's own validation catches (a label value, an annotation key,
  an env var name, a service account name...) gets past both: the operator reports
  it in the TaskQueue's Ready condition, keeps running, and leaves the other
  TaskQueues alone.
"""

from __future__ import annotations

import copy
import json
import re
import string
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from corral.embedded import EmbeddedRedis
from corral_operator import crd, models
from corral_operator.controller import _validation_message
from tests.e2e.test_operator import (
    OperatorProcess,
    apply,
    condition,
    get_json,
    status,
    wait_until,
)
from tests.support.k8s import Cluster

SpecPath = tuple[str | int, ...]  # inside .spec

SPEC_SCHEMA: dict[str, Any] = crd.openapi_schema()["properties"]["spec"]

# A valid spec that has every optional part, so that every field can be broken.
FULL: dict[str, Any] = {
    "redis": {"url": "redis://redis.example:6379/0"},
    "queues": [{"name": "default", "weight": 2}, {"name": "critical", "weight": 5}],
    "worker": {
        "image": "registry.example/app:1.0", "imagePullPolicy": "IfNotPresent",
        "app": "app.tasks:app", "concurrency": 20, "batchSize": 10, "leaseSeconds": 30,
        "graceSeconds": 30, "logLevel": "INFO", "metricsPort": 9100, "runAsUser": 1000,
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": 2}},
        "env": [{"name": "MODE", "value": "fast"},
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
        "envFrom": [{"configMapRef": {"name": "settings"}}],
        "nodeSelector": {"pool": "workers"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "workers",
                         "effect": "NoExecute", "tolerationSeconds": 60}],
        "affinity": {"nodeAffinity": {}},
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone",
                                       "whenUnsatisfiable": "ScheduleAnyway",
                                       "labelSelector": {"matchLabels": {"app": "w"}}}],
        "serviceAccountName": "worker", "imagePullSecrets": [{"name": "regcred"}],
        "priorityClassName": "batch", "podLabels": {"team": "mail"},
        "podAnnotations": {"example.com/note": "x"},
    },
    "scaling": {"minReplicas": 1, "maxReplicas": 10, "targetBacklogPerReplica": 100,
                "activationBacklog": 5, "pollSeconds": 5, "scaleDownStabilizationSeconds": 60,
                "cooldownSeconds": 300, "paused": False},
}
FULL_WITH_SECRET: dict[str, Any] = {
    **FULL, "redis": {"urlSecretRef": {"name": "redis-auth", "key": "url"}}}
BASES = (FULL, FULL_WITH_SECRET)


@dataclass(frozen=True)
class Defect:
    kind: str
    spec: dict[str, Any]
    api_hint: str  # what the API server's message must contain
    model_hint: str  # what the operator's message must contain

    def __repr__(self) -> str:  # hypothesis prints it on failure
        return f"Defect({self.kind!r}, hint={self.api_hint!r}, spec={json.dumps(self.spec)})"


def api_path(path: SpecPath) -> str:
    return "spec" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def model_path(path: SpecPath) -> str:
    return ".".join(["spec", *map(str, path)])


# -- where a spec can break --------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    base: int  # index into BASES
    path: SpecPath
    schema: dict[str, Any]


def targets(schema: dict[str, Any], value: Any, base: int,
            path: SpecPath = ()) -> Iterator[Target]:
    """Every node of the schema that ``value`` (a valid spec) has, with its path."""
    yield Target(base, path, schema)
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                yield from targets(sub, value[name], base, (*path, name))
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):  # a map: one more entry, to break
            yield Target(base, (*path, "corral-fuzz"), extra)
    elif isinstance(value, list) and value and "items" in schema:
        yield from targets(schema["items"], value[0], base, (*path, 0))


TARGETS: list[Target] = [t for i, b in enumerate(BASES) for t in targets(SPEC_SCHEMA, b, i)]


def put(spec: dict[str, Any], path: SpecPath, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(spec)
    node: Any = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


def drop(spec: dict[str, Any], path: SpecPath) -> dict[str, Any]:
    out = copy.deepcopy(spec)
    node: Any = out
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return out


def get(spec: dict[str, Any], path: SpecPath) -> Any:
    node: Any = spec
    for key in path:
        node = node[key]
    return node


# -- values that break a node ------------------------------------------------------------

# The Kubernetes kinds a value can have, and what is sure to be none of them.
_WRONG: dict[str, st.SearchStrategy[Any]] = {
    "integer": st.one_of(st.text(max_size=8), st.booleans(),
                         st.floats(allow_nan=False, allow_infinity=False).filter(
                             lambda f: not f.is_integer()),
                         st.just([1]), st.just({"a": 1})),
    "string": st.one_of(st.integers(-5, 10**6), st.booleans(), st.just(["x"]),
                        st.just({"a": "b"})),
    "boolean": st.one_of(st.integers(0, 1), st.sampled_from(["true", "yes", "on", "1"]),
                         st.just([True])),
    "object": st.one_of(st.text(max_size=8), st.integers(), st.booleans(), st.just(["x"])),
    "array": st.one_of(st.text(max_size=8), st.integers(), st.just({"a": 1})),
}
# Appended to or put before a valid string, to push it off its pattern.
_JUNK = st.sampled_from(["\n", " ", "/", "\t", "é", ":", "..", "$", "\\", "*", "-", "\x00"])


def _python_pattern(pattern: str) -> str:
    # In Python `$` also matches before a final newline; in Go and Rust only at the end.
    return pattern.replace("$", r"\Z")


def kinds(target: Target) -> list[str]:
    s = target.schema
    found = []
    if not target.path:  # .spec itself: only what is inside it
        return ["required", "unknown"]
    if s.get("type") in _WRONG and not s.get("x-kubernetes-int-or-string"):
        found.append("type")
    found.extend(k for k in ("minimum", "maximum", "minLength", "maxLength", "pattern",
                             "enum", "minItems", "maxItems") if k in s)
    if s.get("required"):
        found.append("required")
    if "properties" in s and not s.get("x-kubernetes-preserve-unknown-fields"):
        found.append("unknown")
    return found


@st.composite
def schema_defects(draw: st.DrawFn) -> Defect:
    target = draw(st.sampled_from([t for t in TARGETS if kinds(t)]))
    kind = draw(st.sampled_from(kinds(target)))
    base, path, s = BASES[target.base], target.path, target.schema
    hint_api, hint_model = api_path(path), model_path(path)
    if kind == "required":
        missing = draw(st.sampled_from(s["required"]))
        spec = drop(base, (*path, missing))
        hint_api, hint_model = api_path((*path, missing)), model_path((*path, missing))
    elif kind == "unknown":
        field = draw(st.from_regex(r"\A[a-z][a-zA-Z]{2,12}\Z").filter(
            lambda f: f not in s["properties"]))
        spec = put(base, (*path, field), draw(st.integers() | st.text(max_size=5)))
        hint_api, hint_model = api_path((*path, field)), model_path((*path, field))
    else:
        spec = put(base, path, draw(_bad_value(kind, s, get_or_none(base, path))))
    return Defect(kind, spec, hint_api, hint_model)


def get_or_none(spec: dict[str, Any], path: SpecPath) -> Any:
    try:
        return get(spec, path)
    except (KeyError, IndexError):
        return None


def _bad_value(kind: str, s: dict[str, Any], valid: Any) -> st.SearchStrategy[Any]:
    if kind == "type":
        return _WRONG[s["type"]]
    if kind == "minimum":
        return st.integers(s["minimum"] - 10**6, s["minimum"] - 1)
    if kind == "maximum":
        return st.integers(s["maximum"] + 1, s["maximum"] + 10**6)
    if kind == "minLength":
        return st.text(max_size=s["minLength"] - 1)
    if kind == "maxLength":
        return st.text(min_size=s["maxLength"] + 1, max_size=s["maxLength"] + 40)
    if kind == "pattern":
        pattern = _python_pattern(s["pattern"])
        near = st.builds(lambda v, junk, front: junk + v if front else v + junk,
                         st.just(valid if isinstance(valid, str) else "x"), _JUNK, st.booleans())
        return st.one_of(near, st.text(max_size=30)).filter(
            lambda v: re.search(pattern, v) is None)
    if kind == "enum":
        return st.one_of(st.text(max_size=12), st.sampled_from(
            [e.lower() for e in s["enum"]] + [e + " " for e in s["enum"]])).filter(
            lambda v: v not in s["enum"])
    if kind == "minItems":
        return st.just([])
    if kind == "maxItems":  # copies of the first item, each with its own name
        return st.just([{**valid[0], "name": f"q{i}"} for i in range(s["maxItems"] + 1)])
    raise AssertionError(kind)


_QUEUE_NAME = st.from_regex(r"\A[a-z][a-z0-9-]{0,20}\Z")


@st.composite
def rule_defects(draw: st.DrawFn) -> Defect:
    """Specs that break one CEL rule and nothing else."""
    rule = draw(st.sampled_from(["min-above-max", "duplicate-queues", "url-and-secret",
                                 "no-redis", "reserved-env"]))
    base = FULL
    if rule == "min-above-max":
        high = draw(st.integers(1, 999))
        spec = put(base, ("scaling", "maxReplicas"), high)
        spec = put(spec, ("scaling", "minReplicas"), draw(st.integers(high + 1, 1000)))
        message = models.SCALING_RULES[0]["message"]
    elif rule == "duplicate-queues":
        name = draw(_QUEUE_NAME)
        weights = draw(st.lists(st.integers(1, 100), min_size=2, max_size=4))
        spec = put(base, ("queues",), [{"name": name, "weight": w} for w in weights])
        message = models.QUEUES_RULES[0]["message"]
    elif rule == "url-and-secret":
        spec = put(base, ("redis",), {**FULL["redis"], **FULL_WITH_SECRET["redis"]})
        message = models.REDIS_RULES[0]["message"]
    elif rule == "no-redis":
        spec = put(base, ("redis",), {})
        message = models.REDIS_RULES[0]["message"]
    else:
        env = draw(st.sampled_from(models.RESERVED_ENV))
        spec = put(base, ("worker", "env"), [*FULL["worker"]["env"], {"name": env, "value": "x"}])
        message = models.WORKER_RULES[0]["message"]
    return Defect(f"rule:{rule}", spec, message, message)


defects = st.one_of(schema_defects(), rule_defects())


# -- the models ----------------------------------------------------------------------------


@pytest.mark.parametrize("base", BASES, ids=["url", "secret"])
def test_the_bases_are_valid(base: dict[str, Any]) -> None:
    models.TaskQueueSpec.model_validate(base)


def test_every_kind_of_defect_has_targets() -> None:
    found = {k for t in TARGETS for k in kinds(t)}
    assert found == {"type", "minimum", "maximum", "minLength", "maxLength", "pattern", "enum",
                     "minItems", "maxItems", "required", "unknown"}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(defect=defects)
def test_the_models_refuse_with_a_message_naming_the_field(defect: Defect) -> None:
    with pytest.raises(ValidationError) as caught:
        models.TaskQueueSpec.model_validate(defect.spec)
    message = _validation_message(caught.value)
    assert defect.model_hint in message, message


# -- the API server ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_ns(k8s: Cluster, crd_applied: None) -> Iterator[str]:
    name = f"fuzz-{uuid.uuid4().hex[:6]}"
    k8s.kubectl("create", "namespace", name)
    yield name
    k8s.kubectl("delete", "namespace", name, "--wait=false", check=False)


def taskqueue(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": models.API_VERSION, "kind": models.KIND,
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


@pytest.mark.e2e
@pytest.mark.parametrize("base", BASES, ids=["url", "secret"])
def test_the_api_server_accepts_the_bases(k8s: Cluster, fuzz_ns: str,
                                          base: dict[str, Any]) -> None:
    k8s.kubectl("create", "--dry-run=server", "-f", "-",
                input=json.dumps(taskqueue("base", fuzz_ns, base)))


@pytest.mark.e2e
@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(defect=defects)
def test_the_api_server_refuses_with_a_message_naming_the_field(
        k8s: Cluster, fuzz_ns: str, defect: Defect) -> None:
    body = json.dumps(taskqueue("fuzzed", fuzz_ns, defect.spec))
    proc = k8s.kubectl("create", "--dry-run=server", "-f", "-", input=body, check=False)
    assert proc.returncode != 0, "the API server accepted it"
    assert defect.api_hint in proc.stderr, proc.stderr


# -- what only the Deployment's validation catches -------------------------------------------

_LABEL_VALUE = re.compile(r"\A(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?\Z")


def running_spec(redis_url: str) -> dict[str, Any]:
    """A spec whose pods the test cluster can run: one replica, nothing to look up."""
    return {"redis": {"url": redis_url}, "queues": [{"name": "fuzz"}],
            "worker": {"image": "example.invalid/app:1", "app": "app.tasks:app"},
            "scaling": {"minReplicas": 1, "pollSeconds": 1}}


@dataclass(frozen=True)
class DeploymentDefect:
    path: SpecPath
    value: Any
    hint: str  # what the Ready condition's message must contain


_NOT_A_NAME = st.text(string.ascii_letters + string.digits + " -_./:!@", min_size=1,
                     max_size=70)


def _bad_label_value(value: str) -> bool:
    return not (_LABEL_VALUE.match(value) and len(value) <= 63)


@st.composite
def deployment_defects(draw: st.DrawFn) -> DeploymentDefect:
    """Values the CRD lets through and the Deployment's validation refuses."""
    kind = draw(st.sampled_from(["label", "annotation", "node-selector", "env-name",
                                 "service-account", "toleration"]))
    if kind == "label":
        value = draw(_NOT_A_NAME.filter(_bad_label_value))
        return DeploymentDefect(("worker", "podLabels"), {"team": value},
                                "labels: Invalid value")
    if kind == "annotation":
        key = draw(st.sampled_from(["bad key", "/x", "a/b/c", "-x", "x" * 64]))
        return DeploymentDefect(("worker", "podAnnotations"), {key: "v"},
                                "annotations: Invalid value")
    if kind == "node-selector":
        value = draw(_NOT_A_NAME.filter(_bad_label_value))
        return DeploymentDefect(("worker", "nodeSelector"), {"pool": value},
                                "spec.template.spec.nodeSelector")
    if kind == "service-account":
        name = draw(st.sampled_from(["Not_Valid", "a..b", "-x", "UPPER"]))
        return DeploymentDefect(("worker", "serviceAccountName"), name,
                                "spec.template.spec.serviceAccountName")
    if kind == "toleration":
        return DeploymentDefect(("worker", "tolerations"),
                                [{"key": "k", "operator": "Exists", "value": "v"}],
                                "spec.template.spec.tolerations[0]")
    name = draw(st.sampled_from(["A=B", "=", "X=1", "MODE="]))
    return DeploymentDefect(("worker", "env"), [{"name": name, "value": "v"}],
                            f'name: Invalid value: "{name}"')


@pytest.fixture(scope="module")
def fuzz_operator(k8s: Cluster, fuzz_ns: str) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(k8s, ("--namespace", fuzz_ns), log_name=f"operator-{fuzz_ns}").start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def neighbour(k8s: Cluster, fuzz_ns: str, fuzz_operator: OperatorProcess,
              redis_server: EmbeddedRedis) -> dict[str, Any]:
    """A healthy TaskQueue next to the broken ones: its Deployment once reconciled."""
    apply(k8s, taskqueue("neighbour", fuzz_ns, running_spec(redis_server.url)))
    wait_until("the neighbour Ready", lambda: (
        condition(status(k8s, fuzz_ns, "neighbour"), "Ready").get("status") == "True", None))
    return neighbour_deployment(k8s, fuzz_ns)


def neighbour_deployment(k8s: Cluster, namespace: str) -> dict[str, Any]:
    d = get_json(k8s, "-n", namespace, "deployment", "neighbour-worker") or {}
    return {"generation": d["metadata"]["generation"], "spec": d["spec"]}


@pytest.mark.e2e
@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(defect=deployment_defects())
def test_the_operator_reports_what_the_deployment_refuses(
        k8s: Cluster, fuzz_ns: str, fuzz_operator: OperatorProcess, redis_server: EmbeddedRedis,
        neighbour: dict[str, Any], defect: DeploymentDefect) -> None:
    name = f"broken-{uuid.uuid4().hex[:6]}"
    spec = put(running_spec(redis_server.url), defect.path, defect.value)
    models.TaskQueueSpec.model_validate(spec)  # valid as far as the CRD can tell
    apply(k8s, taskqueue(name, fuzz_ns, spec))
    try:
        def reported() -> tuple[bool, Any]:
            ready = condition(status(k8s, fuzz_ns, name), "Ready")
            return ready.get("reason") == "DeploymentFailed", ready

        ready = wait_until("Ready=False, DeploymentFailed", reported, timeout_s=30)
        assert ready["status"] == "False"
        assert defect.hint in ready["message"], ready["message"]
    finally:
        k8s.kubectl("-n", fuzz_ns, "delete", "tq", name, "--wait=false")
    assert fuzz_operator.alive, fuzz_operator.log_tail()
    assert neighbour_deployment(k8s, fuzz_ns) == neighbour
    assert condition(status(k8s, fuzz_ns, "neighbour"), "Ready")["status"] == "True"
    log = fuzz_operator.log_path.read_text(errors="replace")
    assert "reconcile failed unexpectedly" not in log, fuzz_operator.log_tail(200)

"""The CRD generated from the models: structural, complete and not stale."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from corral_operator import crd, models

REPO = Path(__file__).resolve().parents[2]


def schema() -> dict[str, Any]:
    return crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = [(path, node)]
    for name, sub in node.get("properties", {}).items():
        out.extend(walk(sub, f"{path}.{name}"))
    if isinstance(node.get("items"), dict):
        out.extend(walk(node["items"], f"{path}[]"))
    if isinstance(node.get("additionalProperties"), dict):
        out.extend(walk(node["additionalProperties"], f"{path}.*"))
    return out


def test_generated_files_are_up_to_date() -> None:
    stale = crd.stale_files(REPO)
    assert not stale, (f"stale generated files {[str(p) for p in stale]}: "
                       "run python -m corral_operator.crd")


def test_chart_and_manifest_crds_are_the_same_file() -> None:
    texts = {(REPO / path).read_text() for path in crd.CRD_FILES}
    assert len(texts) == 1


def test_schema_is_structural() -> None:
    for path, node in walk(schema()):
        assert not {"$ref", "anyOf", "oneOf", "allOf", "title", "const"} & node.keys(), path
        assert "type" in node or node.get("x-kubernetes-int-or-string") \
            or node.get("x-kubernetes-preserve-unknown-fields"), path
        if "properties" in node:
            assert "additionalProperties" not in node, path


def test_names_scope_and_subresources() -> None:
    spec = crd.crd()["spec"]
    assert crd.crd()["metadata"]["name"] == "taskqueues.corral.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "TaskQueue"
    assert spec["names"]["shortNames"] == ["tq"]
    version = spec["versions"][0]
    assert version["name"] == "v1alpha1"
    assert version["subresources"] == {"status": {}}
    columns = [c["name"].upper() for c in version["additionalPrinterColumns"]
               if c.get("priority", 0) == 0]
    assert columns == ["QUEUES", "BACKLOG", "IN-FLIGHT", "REPLICAS", "DESIRED", "PENDING", "AGE"]


def test_every_model_field_is_in_the_schema() -> None:
    spec = schema()["properties"]["spec"]["properties"]
    for name, model in (("worker", models.WorkerSpec), ("scaling", models.ScalingSpec),
                        ("redis", models.RedisSpec)):
        aliases = {f.alias or n for n, f in model.model_fields.items()}
        assert set(spec[name]["properties"]) == aliases
    status = schema()["properties"]["status"]["properties"]
    assert {"backlog", "inFlight", "replicas", "readyReplicas", "desiredReplicas",
            "lastScaleTime", "observedGeneration", "conditions"} <= set(status)


def test_defaults_and_ranges_come_from_the_models() -> None:
    scaling = schema()["properties"]["spec"]["properties"]["scaling"]
    assert scaling["default"]["pollSeconds"] == models.ScalingSpec().poll_seconds
    props = scaling["properties"]
    assert props["minReplicas"] == {**props["minReplicas"], "type": "integer", "minimum": 0,
                                    "default": 0}
    weight = schema()["properties"]["spec"]["properties"]["queues"]["items"]["properties"]
    assert (weight["weight"]["minimum"], weight["weight"]["maximum"]) == (1, 100)
    # The API server fills in the worker's resources, so `kubectl get -o yaml` shows them.
    worker = schema()["properties"]["spec"]["properties"]["worker"]["properties"]
    assert worker["resources"]["default"] == {
        "requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}}


def test_cel_rules_are_attached_where_they_apply() -> None:
    spec = schema()["properties"]["spec"]["properties"]
    assert spec["scaling"]["x-kubernetes-validations"] == models.SCALING_RULES
    assert spec["queues"]["x-kubernetes-validations"] == models.QUEUES_RULES
    assert spec["redis"]["x-kubernetes-validations"] == models.REDIS_RULES
    assert schema()["x-kubernetes-validations"] == models.ROOT_RULES


def test_free_form_and_quantities() -> None:
    worker = schema()["properties"]["spec"]["properties"]["worker"]["properties"]
    assert worker["affinity"] == {**worker["affinity"], "type": "object",
                                  "x-kubernetes-preserve-unknown-fields": True}
    assert worker["resources"]["properties"]["limits"]["additionalProperties"] == {
        "x-kubernetes-int-or-string": True, "pattern": models.QUANTITY_PATTERN, "minimum": 0}


def test_rendered_yaml_parses_back() -> None:
    text = crd.render_yaml()
    assert text.startswith("# Generated")
    assert yaml.safe_load(text) == crd.crd()


def test_unsupported_constructs_fail_loudly() -> None:
    with pytest.raises(crd.SchemaError, match="only Optional"):
        crd.structural({"anyOf": [{"type": "string"}, {"type": "integer"}]}, {}, ".x")
    with pytest.raises(crd.SchemaError, match="no type"):
        crd.structural({"description": "anything"}, {}, ".y")


def test_field_reference_lists_every_field() -> None:
    text = crd.field_reference()
    for path, _ in walk(schema()["properties"]["spec"], "spec"):
        leaf = path.rsplit(".", 1)[-1].removesuffix("[]")
        if leaf and leaf != "*" and path != "spec":
            assert f"`{leaf}`" in text, path

"""manifests/ stays in step with the chart, the examples stay valid, and the
install docs list every chart value."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from corral_operator.models import API_VERSION, TaskQueueSpec
from tests.support.k8s import k8s_bin_dir

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
EXAMPLES = MANIFESTS / "examples"
VALUES = REPO / "charts" / "corral" / "values.yaml"
INSTALL_DOC = REPO / "docs" / "install.md"


@pytest.fixture(scope="module")
def helm() -> str:
    path = k8s_bin_dir() / "helm"
    if not path.exists():
        subprocess.run([str(REPO / "scripts" / "k8s" / "build"), "helm"], check=True)
    return str(path)


def test_manifests_match_the_chart(helm: str) -> None:
    proc = subprocess.run([str(REPO / "scripts" / "render-manifests"), "--check"],
                          capture_output=True, text=True, timeout=60,
                          env={"HELM": helm, "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr


def test_render_manifests_notices_a_hand_edit(helm: str, tmp_path: Path) -> None:
    env = {"HELM": helm, "PATH": "/usr/bin:/bin"}
    script = str(REPO / "scripts" / "render-manifests")
    subprocess.run([script, "--out", str(tmp_path)], check=True, env=env, timeout=60)
    subprocess.run([script, "--check", "--out", str(tmp_path)], check=True, env=env, timeout=60)
    deployment = tmp_path / "40-deployment.yaml"
    deployment.write_text(deployment.read_text().replace("replicas: 1", "replicas: 3"))
    proc = subprocess.run([script, "--check", "--out", str(tmp_path)], capture_output=True,
                          text=True, env=env, timeout=60)
    assert proc.returncode == 1
    assert "40-deployment.yaml" in proc.stderr


def load(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_plain_manifests_are_ordered_and_not_helm_managed() -> None:
    files = sorted(p.name for p in MANIFESTS.glob("*.yaml"))
    assert files[0] == "00-namespace.yaml"
    namespace = load(MANIFESTS / files[0])[0]["metadata"]["name"]
    for name in files[1:]:
        for doc in load(MANIFESTS / name):
            labels = doc["metadata"]["labels"]
            assert labels["app.kubernetes.io/managed-by"] == "kubectl"
            assert "helm.sh/chart" not in labels
            if doc["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
                assert doc["metadata"]["namespace"] == namespace, name


def example_taskqueues() -> Iterator[dict[str, Any]]:
    for path in sorted(EXAMPLES.glob("*.yaml")):
        yield from (d for d in load(path) if d["kind"] == "TaskQueue")


def test_example_taskqueue_is_valid_for_the_operator() -> None:
    queues = list(example_taskqueues())
    assert queues
    for tq in queues:
        assert tq["apiVersion"] == API_VERSION
        spec = TaskQueueSpec.model_validate(tq["spec"])
        assert spec.redis.url_secret_ref is not None
        assert spec.worker.resources is not None and spec.worker.resources.requests


def test_example_secret_matches_the_taskqueue() -> None:
    docs = [d for path in sorted(EXAMPLES.glob("*.yaml")) for d in load(path)]
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    for tq in example_taskqueues():
        ref = tq["spec"]["redis"]["urlSecretRef"]
        assert ref["key"] in secrets[ref["name"]]["stringData"]
        app_module = tq["spec"]["worker"]["app"].split(":")[0]
        __import__(app_module)  # the app ships in the corral image


def value_paths(values: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and not path.endswith(
                ("Context", "resources", "labels", "alertLabels")):
            yield from value_paths(value, f"{path}.")
        else:
            yield path


def test_install_doc_lists_every_value() -> None:
    doc = INSTALL_DOC.read_text()
    missing = [p for p in value_paths(yaml.safe_load(VALUES.read_text()))
               if f"| `{p}` |" not in doc]
    assert not missing, f"values missing from the table in docs/install.md: {missing}"

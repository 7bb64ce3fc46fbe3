"""The control plane's argv (scripts/k8s/up): the HPA sync period is opt-in, and the
API server runs the aggregation layer that KEDA's metrics adapter is registered with."""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path
from types import ModuleType

UP = Path(__file__).resolve().parents[2] / "scripts" / "k8s" / "up"
PORTS = {"etcd": 1, "etcd-peer": 2, "kube-apiserver": 3, "kube-controller-manager": 4,
         "kube-scheduler": 5, "kwok": 6}


def load_up() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("k8s_up", str(UP))
    spec = importlib.util.spec_from_loader("k8s_up", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def args(name: str, tmp_path: Path, **kwargs: str) -> list[str]:
    up = load_up()
    argv: list[str] = up.component_args(name, tmp_path, tmp_path / "bin", tmp_path / "stages",
                                        PORTS, **kwargs)
    return argv


def test_hpa_sync_period_is_passed_to_the_controller_manager(tmp_path: Path) -> None:
    argv = args("kube-controller-manager", tmp_path, hpa_sync_period="1s")
    assert "--horizontal-pod-autoscaler-sync-period=1s" in argv


def test_without_it_the_controller_manager_keeps_kubernetes_default(tmp_path: Path) -> None:
    argv = args("kube-controller-manager", tmp_path)
    assert not [a for a in argv if a.startswith("--horizontal-pod-autoscaler-sync-period")]


def test_the_api_server_runs_the_aggregation_layer(tmp_path: Path) -> None:
    flags = {a.split("=", 1)[0] for a in args("kube-apiserver", tmp_path)}
    assert {"--requestheader-client-ca-file", "--requestheader-allowed-names",
            "--requestheader-extra-headers-prefix", "--requestheader-group-headers",
            "--requestheader-username-headers", "--proxy-client-cert-file",
            "--proxy-client-key-file"} <= flags


"""pytest plugin: a real Kubernetes control plane (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, kwok fake nodes) for e2e tests.

Register with ``pytest_plugins = ["tests.support.k8s"]``. Binaries are built
once by ``scripts/k8s/build`` into ``$CORRAL_CACHE`` (default ~/.cache/corral);
if they are missing the build runs before the first test that uses ``k8s``.

Fixtures: ``k8s`` (session scope) yields a :class:`Cluster`; ``crd_applied`` applies
the chart's CRDs to it; ``karpenter`` (module scope) adds Karpenter's kwok provider to
that cluster (``scripts/k8s/up --with-karpenter``) and yields a :class:`Karpenter`,
which makes NodePools whose nodes are kwok nodes. :func:`wait_until` polls for what a
test waits on.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts" / "k8s"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
REQUIRED_BINARIES = (*COMPONENTS, "kubectl", "helm", "karpenter-kwok")
# The CRDs as users get them: the chart's (TaskQueue, generated from the models, and
# kopf's peerings). manifests/crds holds the same generated TaskQueue file.
CHART_CRDS = REPO / "charts" / "corral" / "crds"
T = TypeVar("T")


def wait_until(what: str, check: Callable[[], tuple[bool, T]], timeout_s: float = 60.0,
               interval_s: float = 0.25) -> T:
    """Call ``check`` until it returns ``(True, value)``; return that value. On timeout
    the error names ``what`` and the last value seen."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        ok, value = check()
        if ok:
            return value
        last = value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; last seen: {last}")


@functools.cache
def k8s_bin_dir() -> Path:
    """Cache directory holding kubectl, helm, ... for the pinned Kubernetes version."""
    if os.environ.get("CORRAL_K8S_BIN_DIR"):
        return Path(os.environ["CORRAL_K8S_BIN_DIR"])
    out = subprocess.run([str(SCRIPTS / "build"), "--print-bin-dir"],
                         check=True, capture_output=True, text=True)
    return Path(out.stdout.strip())


def _binaries_missing() -> list[str]:
    bin_dir = k8s_bin_dir()
    missing = [b for b in REQUIRED_BINARIES if not (bin_dir / b).exists()]
    if not (bin_dir.parent / "share" / "kwok-stages.yaml").exists():
        missing.append("kwok-stages.yaml")
    if not (bin_dir.parent / "share" / "karpenter-crds" / ".complete").exists():
        missing.append("karpenter-crds")
    return missing


_build_failure: list[Exception] = []  # from the collection-time build, raised by the fixture


def ensure_built(config: pytest.Config | None = None) -> None:
    """Run scripts/k8s/build when anything is missing (a cold build takes long)."""
    if _build_failure:
        raise _build_failure[0]
    missing = _binaries_missing()
    if not missing:
        return
    if os.environ.get("CORRAL_K8S_BIN_DIR"):  # a prebuilt set given explicitly: do not build
        raise RuntimeError(f"CORRAL_K8S_BIN_DIR={k8s_bin_dir()} lacks {', '.join(missing)}")
    capman = config.pluginmanager.getplugin("capturemanager") if config else None
    # Show build progress live instead of swallowing it.
    if capman is not None:
        with capman.global_and_fixture_disabled():
            subprocess.run([str(SCRIPTS / "build")], check=True)
    else:
        subprocess.run([str(SCRIPTS / "build")], check=True)


class CommandError(subprocess.CalledProcessError):
    """CalledProcessError whose message carries the command's output."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


class Cluster:
    """A running control plane. Attributes: ``kubeconfig`` (str), ``bin_dir``
    (Path), ``server`` (URL), ``state_dir`` (Path; logs in ``state_dir/logs``)."""

    def __init__(self, state_dir: Path, bin_dir: Path):
        self.state_dir = state_dir
        self.bin_dir = bin_dir
        self.kubeconfig = str(state_dir / "kubeconfig")
        self.server = ""

    # -- commands ----------------------------------------------------------
    def env(self) -> dict[str, str]:
        """Environment for subprocesses (kubectl, helm, the operator) aimed at this cluster."""
        return {**os.environ, "KUBECONFIG": self.kubeconfig,
                "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}

    def kubectl(self, *args: str, check: bool = True, input: str | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run our kubectl against this cluster; output is captured as text."""
        argv = [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args]
        proc = subprocess.run(argv, input=input, capture_output=True, text=True,
                              timeout=timeout, env=self.env())
        if check and proc.returncode != 0:
            raise CommandError(proc.returncode, argv, proc.stdout, proc.stderr)
        return proc

    # -- lifecycle ---------------------------------------------------------
    def _script(self, name: str, *args: str, timeout: float = 180) -> None:
        proc = subprocess.run([str(SCRIPTS / name), str(self.state_dir), *args],
                              capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "CORRAL_K8S_BIN_DIR": str(self.bin_dir)})
        if proc.returncode != 0:
            raise RuntimeError(f"scripts/k8s/{name} {' '.join(args)} failed "
                               f"(exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")

    def start(self, timeout: float = 120, up_args: tuple[str, ...] = ()) -> None:
        """``up_args``: more ``scripts/k8s/up`` flags (``--hpa-sync-period=1s``)."""
        # --owner-pid: the cluster goes away with this process even if teardown never runs.
        self._script("up", f"--timeout={timeout}", f"--owner-pid={os.getpid()}", *up_args,
                     timeout=timeout + 30)
        self.server = self._read_server()
        self.wait_ready(timeout)

    def stop(self, *components: str) -> None:
        self._script("down", *components)

    def start_karpenter(self, timeout: float = 90) -> None:
        """Start Karpenter's kwok provider (and apply its CRDs) on this running cluster."""
        self._script("up", "--with-karpenter", f"--timeout={timeout}", timeout=timeout + 30)

    def restart_apiserver(self, timeout: float = 60, downtime: float = 0) -> None:
        """Stop kube-apiserver (SIGTERM; it answers 429 while draining), keep it
        down for ``downtime`` seconds, start it again with the same flags and
        port, and return once /readyz is OK. Other components reconnect on
        their own."""
        if downtime > 0:
            self.stop("kube-apiserver")
            time.sleep(downtime)
        self._script("up", "--restart=kube-apiserver", f"--timeout={timeout}",
                     timeout=timeout + 30)
        self._wait("API ready after restart", timeout,
                   lambda: self.kubectl("get", "--raw=/readyz", check=False).returncode == 0)

    def wait_ready(self, timeout: float = 60) -> None:
        """API healthy, default ServiceAccount present and every kwok node Ready."""
        self._wait("API /readyz", timeout,
                   lambda: self.kubectl("get", "--raw=/readyz", check=False).returncode == 0)
        self._wait("ServiceAccount default/default", timeout,
                   lambda: self.kubectl("-n", "default", "get", "serviceaccount", "default",
                                        check=False).returncode == 0)
        self.kubectl("wait", "node", "-l", "type=kwok", "--for=condition=Ready",
                     f"--timeout={int(timeout)}s", timeout=timeout + 10)

    # -- debugging -------------------------------------------------------------
    def dump(self) -> Path:
        """Write cluster objects and events next to the component logs."""
        out = self.state_dir / "logs" / "cluster-dump.txt"
        with out.open("w") as f:
            for args in (("get", "nodes,all", "-A", "-o", "wide"),
                         ("get", "nodepools,nodeclaims", "-o", "wide"),
                         ("get", "events", "-A", "--sort-by=.lastTimestamp")):
                try:
                    proc = self.kubectl(*args, check=False, timeout=20)
                    f.write(f"$ kubectl {' '.join(args)}\n{proc.stdout}{proc.stderr}\n")
                except subprocess.TimeoutExpired:
                    f.write(f"$ kubectl {' '.join(args)}\n(timed out)\n")
        return out

    def log_path(self, component: str) -> Path:
        return self.state_dir / "logs" / f"{component}.log"

    def log_tail(self, component: str, lines: int = 50) -> str:
        path = self.log_path(component)
        if not path.exists():
            return f"(no log for {component})"
        text = path.read_text(errors="replace").splitlines()[-lines:]
        return f"--- {path} (last {len(text)} lines) ---\n" + "\n".join(text)

    def _read_server(self) -> str:
        for line in Path(self.kubeconfig).read_text().splitlines():
            if line.strip().startswith("server:"):
                return line.split(":", 1)[1].strip()
        raise RuntimeError(f"no server in {self.kubeconfig}")

    def _wait(self, what: str, timeout: float, check: Callable[[], bool]) -> None:
        wait_until(what, lambda: (check(), None), timeout_s=timeout)


class Karpenter:
    """Karpenter running against a :class:`Cluster`. Each NodePool made here is tainted
    (other tests' pods stay off its nodes) and consolidates ``WhenEmptyOrUnderutilized``;
    pods reach its nodes with :meth:`scheduling`."""

    TAINT_KEY = "corral.dev/karpenter-e2e"
    NODE_CLASS = "corral-e2e"

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._node_class_made = False

    def node_class(self) -> None:
        if self._node_class_made:
            return
        self._apply({"apiVersion": "karpenter.kwok.sh/v1alpha1", "kind": "KWOKNodeClass",
                     "metadata": {"name": self.NODE_CLASS}})
        self._node_class_made = True

    def node_pool(self, name: str, consolidate_after: str = "5s", cpu_limit: int = 64) -> None:
        self.node_class()
        self._apply({
            "apiVersion": "karpenter.sh/v1", "kind": "NodePool",
            "metadata": {"name": name},
            "spec": {
                "template": {
                    "metadata": {"labels": {self.TAINT_KEY: name}},
                    "spec": {
                        "nodeClassRef": {"group": "karpenter.kwok.sh", "kind": "KWOKNodeClass",
                                         "name": self.NODE_CLASS},
                        "taints": [{"key": self.TAINT_KEY, "value": name,
                                    "effect": "NoSchedule"}],
                        "requirements": [
                            {"key": "karpenter.sh/capacity-type", "operator": "In",
                             "values": ["on-demand"]},
                            {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
                            {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
                        ],
                        "expireAfter": "Never",
                    },
                },
                "disruption": {"consolidationPolicy": "WhenEmptyOrUnderutilized",
                               "consolidateAfter": consolidate_after,
                               "budgets": [{"nodes": "100%"}]},
                "limits": {"cpu": str(cpu_limit)},
            },
        })

    def scheduling(self, pool: str) -> dict[str, Any]:
        """TaskQueue ``spec.worker`` fields that put worker pods on POOL's nodes only."""
        return {"nodeSelector": {"karpenter.sh/nodepool": pool},
                "tolerations": [{"key": self.TAINT_KEY, "operator": "Equal", "value": pool,
                                 "effect": "NoSchedule"}]}

    def nodes(self, pool: str) -> list[dict[str, Any]]:
        """POOL's nodes that exist and are not being removed."""
        out = self.cluster.kubectl("get", "nodes", "-l", f"karpenter.sh/nodepool={pool}",
                                   "-o", "json")
        return [n for n in json.loads(out.stdout)["items"]
                if not n["metadata"].get("deletionTimestamp")]

    def delete_pool(self, name: str, timeout: float = 120) -> None:
        """Delete the NodePool; Karpenter removes its nodes (and their NodeClaims)."""
        self.cluster.kubectl("delete", "nodepool", name, "--ignore-not-found",
                             f"--timeout={int(timeout)}s", timeout=timeout + 10)

    def _apply(self, obj: dict[str, Any]) -> None:
        self.cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    # Build before any test runs, so a cold build is not charged to a test's timeout.
    # A failure here is reported by the fixture (as a test error) instead.
    if any("k8s" in getattr(item, "fixturenames", ()) for item in items):
        try:
            ensure_built(config)
        except (OSError, RuntimeError, subprocess.CalledProcessError) as e:
            _build_failure.append(e)


@pytest.fixture(scope="session")
def k8s(request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    ensure_built(request.config)
    # pytest keeps the last few basetemps, so logs survive the run for debugging.
    cluster = Cluster(tmp_path_factory.mktemp("k8s"), k8s_bin_dir())
    started = time.monotonic()
    try:
        cluster.start()
    except BaseException:
        for name in COMPONENTS:
            print(cluster.log_tail(name, 30), file=sys.stderr)
        cluster.stop()
        raise
    print(f"\n[k8s] control plane ready in {time.monotonic() - started:.1f}s at {cluster.server}; "
          f"state and logs in {cluster.state_dir}")
    try:
        yield cluster
    finally:
        cluster.dump()
        cluster.stop()


def apply_crds(k8s: Cluster) -> None:
    """The chart's CRDs, applied as ``helm install`` applies them, and Established."""
    k8s.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART_CRDS))
    k8s.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CHART_CRDS))


@pytest.fixture(scope="session")
def crd_applied(k8s: Cluster) -> None:
    apply_crds(k8s)


@pytest.fixture(scope="module")
def karpenter(k8s: Cluster) -> Iterator[Karpenter]:
    """Karpenter on the session's cluster, for one test module (other modules' pods
    are not to meet a node autoscaler)."""
    try:
        k8s.start_karpenter()
    except BaseException:
        print(k8s.log_tail("karpenter", 40), file=sys.stderr)
        raise
    try:
        yield Karpenter(k8s)
    finally:
        # NodeClaims carry Karpenter's finalizer: let it remove their nodes first.
        with contextlib.suppress(AssertionError):
            k8s._wait("Karpenter's nodes gone", 120, lambda: not k8s.kubectl(
                "get", "nodeclaims", "-o", "name", check=False).stdout.strip())
        k8s.stop("karpenter")

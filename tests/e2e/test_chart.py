"""The chart and the plain manifests on the real control plane: server-side
dry runs, install / test / uninstall, and the operator ServiceAccount's RBAC
checked both ways - allowed for everything a scale cycle needs, refused
outside it - with real requests made with the ServiceAccount's own token."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from corral.client import Client
from tests.support.k8s import Cluster, wait_until
from tests.support.workers import WorkerProcess

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "corral"

# Stand-ins for the prometheus-operator CRDs, so its objects can be dry-run.
MONITORING_KINDS = {"ServiceMonitor": "servicemonitors", "PodMonitor": "podmonitors",
                    "PrometheusRule": "prometheusrules"}


def monitoring_crds() -> str:
    docs = []
    for kind, plural in MONITORING_KINDS.items():
        docs.append({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.monitoring.coreos.com"},
            "spec": {"group": "monitoring.coreos.com", "scope": "Namespaced",
                     "names": {"kind": kind, "plural": plural},
                     "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                         "openAPIV3Schema": {"type": "object",
                                             "x-kubernetes-preserve-unknown-fields": True}}}]},
        })
    return yaml.safe_dump_all(docs)


# -- helpers --------------------------------------------------------------------------


def helm(k8s: Cluster, *args: str, check: bool = True,
         timeout: float = 300) -> subprocess.CompletedProcess[str]:
    argv = [str(k8s.bin_dir / "helm"), "--kubeconfig", k8s.kubeconfig, *args]
    proc = subprocess.run(argv, capture_output=True, text=True, env=k8s.env(), timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def server_version(k8s: Cluster) -> str:
    """For `helm template`: it renders offline, against a default Kubernetes version."""
    version = json.loads(k8s.kubectl("version", "-o", "json").stdout)["serverVersion"]
    return str(version["gitVersion"])


def values_args(tmp_path: Path, values: dict[str, Any]) -> list[str]:
    file = tmp_path / f"values-{time.monotonic_ns()}.yaml"
    file.write_text(yaml.safe_dump(values))
    return ["-f", str(file)]


def ensure_namespace(k8s: Cluster, name: str) -> None:
    doc = json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    k8s.kubectl("apply", "-f", "-", input=doc)


def exists(k8s: Cluster, *args: str) -> bool:
    proc = k8s.kubectl("get", *args, "-o", "name", "--ignore-not-found", check=False)
    assert proc.returncode == 0, proc.stderr
    return bool(proc.stdout.strip())


class ServiceAccountClient:
    """kubectl with the credentials of a ServiceAccount: a real token from the
    TokenRequest API, not impersonation, so the request path is the pod's."""

    def __init__(self, k8s: Cluster, namespace: str, name: str, workdir: Path) -> None:
        self.k8s = k8s
        self.user = f"system:serviceaccount:{namespace}:{name}"
        token = k8s.kubectl("-n", namespace, "create", "token", name,
                            "--duration=1h").stdout.strip()
        admin = json.loads(k8s.kubectl("config", "view", "--raw", "--minify",
                                       "-o", "json").stdout)
        admin["users"] = [{"name": name, "user": {"token": token}}]
        admin["contexts"][0]["context"]["user"] = name
        self.kubeconfig = workdir / f"kubeconfig-{namespace}-{name}"
        self.kubeconfig.write_text(json.dumps(admin))
        cluster = admin["clusters"][0]["cluster"]
        self._server, self._token = cluster["server"], token
        self._tls = ssl.create_default_context(
            cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())

    def patch(self, path: str, body: dict[str, Any],
              content_type: str = "application/merge-patch+json") -> int:
        """One PATCH request, as a client library sends it (kubectl would GET first)."""
        request = urllib.request.Request(
            self._server + path, data=json.dumps(body).encode(), method="PATCH",
            headers={"Authorization": f"Bearer {self._token}", "Content-Type": content_type})
        try:
            with urllib.request.urlopen(request, context=self._tls, timeout=30) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    def kubectl(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        argv = [str(self.k8s.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args]
        return subprocess.run(argv, input=input, capture_output=True, text=True, timeout=60,
                              env=self.k8s.env())

    def ok(self, *args: str, input: str | None = None) -> str:
        proc = self.kubectl(*args, input=input)
        assert proc.returncode == 0, f"{self.user} was refused `{' '.join(args)}`: {proc.stderr}"
        return proc.stdout

    def refused(self, *args: str, input: str | None = None) -> None:
        proc = self.kubectl(*args, input=input)
        assert proc.returncode != 0, f"{self.user} was allowed `{' '.join(args)}`"
        assert "forbidden" in proc.stderr.lower(), proc.stderr

    def can_i(self, verb: str, resource: str, namespace: str | None = None,
              subresource: str | None = None) -> bool:
        args = ["auth", "can-i", verb, resource, f"--as={self.user}"]
        args += [f"--namespace={namespace}"] if namespace else ["--all-namespaces"]
        if subresource:
            args.append(f"--subresource={subresource}")
        proc = self.k8s.kubectl(*args, check=False)
        assert proc.stdout.strip() in ("yes", "no"), proc.stdout + proc.stderr
        return proc.stdout.strip() == "yes"


# -- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crds(k8s: Cluster, crd_applied: None) -> Iterator[None]:
    """The chart's CRDs (as `helm install` would apply them) and monitoring stand-ins."""
    k8s.kubectl("apply", "-f", "-", input=monitoring_crds())
    k8s.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
    yield
    k8s.kubectl("delete", "--wait=false", "-f", "-", input=monitoring_crds())


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chart")


# -- rendering and dry runs -----------------------------------------------------------

ALL_ON: dict[str, Any] = {
    "replicaCount": 2,
    "peering": {"enabled": True},
    "metrics": {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True},
                "prometheusRule": {"enabled": True}},
    "grafanaDashboard": {"enabled": True},
    "podDisruptionBudget": {"enabled": True},
    "networkPolicy": {"enabled": True, "metricsFrom": [{"namespaceSelector": {}}],
                      "redisTo": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]},
}


@pytest.mark.parametrize("values", [
    {}, ALL_ON, {**ALL_ON, "watchNamespaces": ["chart-team-a", "chart-team-b"]},
], ids=["defaults", "all-on", "all-on-namespaced"])
def test_template_passes_server_side_dry_run(k8s: Cluster, crds: None, workdir: Path,
                                             values: dict[str, Any]) -> None:
    for namespace in ("chart-dry", "chart-team-a", "chart-team-b"):
        ensure_namespace(k8s, namespace)
    rendered = helm(k8s, "template", "dry", str(CHART), "--namespace", "chart-dry",
                    "--kube-version", server_version(k8s), *values_args(workdir, values)).stdout
    out = k8s.kubectl("apply", "--dry-run=server", "-f", "-", input=rendered).stdout
    assert out.count("(server dry run)") == sum(1 for d in yaml.safe_load_all(rendered) if d)


def test_plain_manifests_pass_server_side_dry_run(k8s: Cluster, crds: None) -> None:
    # The namespace must exist for a server-side dry run of the objects in it.
    k8s.kubectl("apply", "-f", str(REPO / "manifests" / "00-namespace.yaml"))
    out = k8s.kubectl("apply", "--dry-run=server", "-f", str(REPO / "manifests")).stdout
    assert "deployment.apps/corral-operator created (server dry run)" in out
    assert "clusterrole.rbac.authorization.k8s.io/corral-operator created" in out


def test_examples_pass_server_side_dry_run(k8s: Cluster, crds: None) -> None:
    ensure_namespace(k8s, "chart-examples")
    out = k8s.kubectl("apply", "--dry-run=server", "-n", "chart-examples",
                      "-f", str(REPO / "manifests" / "examples")).stdout
    assert "taskqueue.corral.dev/demo created (server dry run)" in out


# -- install, test, uninstall ---------------------------------------------------------


def release_objects(k8s: Cluster, namespace: str, release: str) -> list[str]:
    selector = f"app.kubernetes.io/instance={release}"
    namespaced = k8s.kubectl("-n", namespace, "get", "deployment,service,serviceaccount,job,pod",
                             "-l", selector, "-o", "name").stdout.split()
    cluster = k8s.kubectl("get", "clusterrole,clusterrolebinding,clusterkopfpeering",
                          "-l", selector, "-o", "name").stdout.split()
    return namespaced + cluster


def test_install_test_uninstall(k8s: Cluster, crds: None, workdir: Path) -> None:
    namespace, release = "chart-cycle", "cycle"
    installed = helm(k8s, "install", release, str(CHART), "--namespace", namespace,
                     "--create-namespace", "--wait", "--timeout=180s",
                     *values_args(workdir, {"replicaCount": 2, "peering": {"enabled": True}}))
    try:
        assert "STATUS: deployed" in installed.stdout
        assert f"kubectl -n {namespace} rollout status deployment/cycle-corral-operator" \
            in installed.stdout  # NOTES.txt
        deployment = json.loads(k8s.kubectl("-n", namespace, "get", "deployment",
                                            "cycle-corral-operator", "-o", "json").stdout)
        assert deployment["status"]["readyReplicas"] == 2
        assert exists(k8s, "clusterkopfpeering", "cycle-corral")

        # kwok completes the Job's pod; this proves the hook's wiring, not a real answer.
        tested = helm(k8s, "test", release, "--namespace", namespace, "--timeout=120s")
        assert "Phase:          Succeeded" in tested.stdout
        assert release_objects(k8s, namespace, release)
    finally:
        helm(k8s, "uninstall", release, "--namespace", namespace, "--wait", "--timeout=120s")

    wait_until("release objects deleted",
               lambda: (not (left := release_objects(k8s, namespace, release)), left))
    assert helm(k8s, "list", "--namespace", namespace, "-q").stdout.strip() == ""
    # Helm never deletes CRDs: TaskQueues outlive a chart uninstall.
    assert exists(k8s, "crd", "clusterkopfpeerings.kopf.dev")
    k8s.kubectl("delete", "namespace", namespace, "--wait=false")


def test_wrong_value_fails_install_with_a_clear_message(k8s: Cluster, workdir: Path) -> None:
    values = values_args(workdir, {"watchNamespaces": "team-a"})
    proc = helm(k8s, "install", "bad", str(CHART), "--namespace", "chart-bad",
                "--create-namespace", "--skip-crds", *values, check=False)
    assert proc.returncode != 0
    assert "at '/watchNamespaces': got string, want array" in proc.stderr
    assert helm(k8s, "list", "-A", "-q").stdout.split().count("bad") == 0


# -- RBAC -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def namespaced_release(k8s: Cluster, crds: None, workdir: Path) -> Iterator[ServiceAccountClient]:
    """Release `scoped` in chart-op serving only chart-watched, with peering."""
    for namespace in ("chart-op", "chart-watched", "chart-other"):
        ensure_namespace(k8s, namespace)
    values = {"watchNamespaces": ["chart-watched"], "replicaCount": 2,
              "peering": {"enabled": True}}
    helm(k8s, "install", "scoped", str(CHART), "--namespace", "chart-op",
         *values_args(workdir, values))
    try:
        yield ServiceAccountClient(k8s, "chart-op", "scoped-corral-operator", workdir)
    finally:
        helm(k8s, "uninstall", "scoped", "--namespace", "chart-op", "--wait")


@pytest.fixture(scope="module")
def cluster_release(k8s: Cluster, crds: None, workdir: Path) -> Iterator[ServiceAccountClient]:
    helm(k8s, "install", "wide", str(CHART), "--namespace", "chart-wide", "--create-namespace",
         *values_args(workdir, {"replicaCount": 2, "peering": {"enabled": True}}))
    try:
        yield ServiceAccountClient(k8s, "chart-wide", "wide-corral-operator", workdir)
    finally:
        helm(k8s, "uninstall", "wide", "--namespace", "chart-wide", "--wait")


SCALE_CYCLE_NEEDS = [
    ("get", "taskqueues.corral.dev", None), ("list", "taskqueues.corral.dev", None),
    ("watch", "taskqueues.corral.dev", None), ("patch", "taskqueues.corral.dev", None),
    ("patch", "taskqueues.corral.dev", "status"),
    *[(verb, "deployments.apps", None)
      for verb in ("get", "list", "watch", "create", "patch", "update", "delete")],
    ("list", "pods", None), ("watch", "pods", None), ("patch", "pods", None),
    ("create", "events", None), ("patch", "events", None),
    ("create", "events.events.k8s.io", None),
    ("get", "secrets", None),
]
NEVER_IN_A_NAMESPACE = [
    ("list", "secrets"), ("watch", "secrets"), ("create", "secrets"), ("update", "secrets"),
    ("create", "pods"), ("delete", "pods"), ("update", "pods"), ("create", "pods/exec"),
    ("create", "taskqueues.corral.dev"), ("delete", "taskqueues.corral.dev"),
    ("get", "configmaps"), ("create", "services"), ("create", "roles.rbac.authorization.k8s.io"),
    ("create", "rolebindings.rbac.authorization.k8s.io"),
]
NEVER_CLUSTER = [
    ("delete", "nodes"), ("list", "nodes"), ("create", "namespaces"), ("delete", "namespaces"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ("create", "customresourcedefinitions.apiextensions.k8s.io"),
    ("delete", "customresourcedefinitions.apiextensions.k8s.io"),
]


def test_namespaced_rbac_allows_a_scale_cycle(namespaced_release: ServiceAccountClient) -> None:
    sa = namespaced_release
    missing = [(verb, res, sub) for verb, res, sub in SCALE_CYCLE_NEEDS
               if not sa.can_i(verb, res, "chart-watched", sub)]
    assert not missing
    assert sa.can_i("patch", "kopfpeerings.kopf.dev", "chart-watched")
    assert sa.can_i("list", "customresourcedefinitions.apiextensions.k8s.io")
    assert sa.can_i("watch", "namespaces")


def test_namespaced_rbac_refuses_the_rest(namespaced_release: ServiceAccountClient) -> None:
    sa = namespaced_release
    # Nothing at all in a namespace it does not serve, its own included.
    for namespace in ("chart-other", "chart-op", "kube-system"):
        allowed = [(verb, res) for verb, res, sub in SCALE_CYCLE_NEEDS
                   if sa.can_i(verb, res, namespace, sub)]
        assert not allowed, namespace
    allowed = [(verb, res) for verb, res in NEVER_IN_A_NAMESPACE
               if sa.can_i(verb, res, "chart-watched")]
    assert not allowed
    allowed = [(verb, res) for verb, res in NEVER_CLUSTER if sa.can_i(verb, res)]
    assert not allowed
    assert not sa.can_i("get", "secrets")  # i.e. in every namespace
    assert not sa.can_i("patch", "clusterkopfpeerings.kopf.dev")


def test_cluster_wide_rbac(cluster_release: ServiceAccountClient) -> None:
    sa = cluster_release
    missing = [(verb, res, sub) for verb, res, sub in SCALE_CYCLE_NEEDS
               if not sa.can_i(verb, res, None, sub)]
    assert not missing
    assert sa.can_i("patch", "clusterkopfpeerings.kopf.dev")
    allowed = [(verb, res) for verb, res in NEVER_IN_A_NAMESPACE if sa.can_i(verb, res, None)]
    assert not allowed
    allowed = [(verb, res) for verb, res in NEVER_CLUSTER if sa.can_i(verb, res)]
    assert not allowed
    # A cluster-wide operator discovers namespaces from its watches, not by listing them.
    assert not sa.can_i("list", "namespaces")


def worker_deployment(name: str) -> str:
    return json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "worker",
                                                       "image": "example.invalid/w:1"}]}}},
    })


def event(kind: str, name: str, namespace: str) -> str:
    return json.dumps({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": f"{name}.", "namespace": namespace},
        "involvedObject": {"kind": kind, "name": name, "namespace": namespace},
        "reason": "ScaledUp", "message": "replicas 1 -> 2 (backlog 150, in flight 0)",
        "type": "Normal", "source": {"component": "corral-operator"},
    })


def test_namespaced_sa_real_requests(k8s: Cluster,
                                     namespaced_release: ServiceAccountClient) -> None:
    """The requests of one scale cycle, made with the ServiceAccount's token."""
    sa, ns = namespaced_release, "chart-watched"
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "redis-url"},
              "stringData": {"url": "redis://:pw@redis:6379/0"}}
    for namespace in (ns, "chart-other"):
        k8s.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(secret))

    # Read the Redis URL by name; never list, never outside the watched namespace.
    assert json.loads(sa.ok("-n", ns, "get", "secret", "redis-url", "-o", "json"))["data"]["url"]
    sa.refused("-n", ns, "get", "secrets")
    sa.refused("-n", "chart-other", "get", "secret", "redis-url")
    sa.refused("-n", "chart-other", "get", "deployments")

    # Own the worker Deployment: server-side apply (as the operator does), scale, delete.
    sa.ok("-n", ns, "apply", "--server-side", "--field-manager=corral-operator",
          "--force-conflicts", "-f", "-", input=worker_deployment("rbac-worker"))
    sa.ok("-n", ns, "patch", "deployment", "rbac-worker", "--type=merge",
          "-p", '{"spec": {"replicas": 2}}')
    pods = wait_until("2 worker pods", lambda: (
        len(names := sa.ok("-n", ns, "get", "pods", "-l", "app=rbac-worker",
                           "-o", "name").split()) == 2, names))
    # Favour idle pods on scale-down (a PATCH, without reading the pod); nothing else on pods.
    cost = {"metadata": {"annotations": {"controller.kubernetes.io/pod-deletion-cost": "-100"}}}
    pod_path = f"/api/v1/namespaces/{ns}/pods/{pods[0].removeprefix('pod/')}"
    assert sa.patch(pod_path, cost) == 200
    annotations = json.loads(k8s.kubectl("-n", ns, "get", pods[0], "-o", "json").stdout)[
        "metadata"]["annotations"]
    assert annotations["controller.kubernetes.io/pod-deletion-cost"] == "-100"
    sa.refused("-n", ns, "get", pods[0])
    sa.refused("-n", ns, "delete", pods[1])
    sa.refused("-n", ns, "run", "intruder", "--image=example.invalid/x:1")

    # Tell the users what happened.
    sa.ok("-n", ns, "create", "-f", "-", input=event("Deployment", "rbac-worker", ns))
    sa.refused("-n", "chart-other", "create", "-f", "-",
               input=event("Deployment", "rbac-worker", "chart-other"))

    # kopf peering between the replicas. (Not a fake peer in .status: an operator
    # seeing a peer of its own priority pauses.)
    sa.ok("-n", ns, "patch", "kopfpeering", "scoped-corral", "--type=merge",
          "-p", '{"metadata": {"annotations": {"corral.dev/rbac-test": "1"}}}')

    k8s.kubectl("-n", ns, "apply", "-f", str(REPO / "manifests" / "examples" /
                                               "taskqueue.yaml"))
    assert "demo" in sa.ok("-n", ns, "get", "taskqueues", "-o", "name")
    sa.ok("-n", ns, "patch", "taskqueue", "demo", "--subresource=status", "--type=merge",
          "-p", '{"status": {"backlog": 150, "inFlight": 0, "desiredReplicas": 2}}')
    sa.ok("-n", ns, "patch", "taskqueue", "demo", "--type=merge",
          "-p", '{"metadata": {"annotations": {"corral.dev/rbac-test": "1"}}}')
    sa.refused("-n", ns, "delete", "taskqueue", "demo")
    k8s.kubectl("-n", ns, "delete", "taskqueue", "demo", "--wait=false")

    sa.ok("-n", ns, "delete", "deployment", "rbac-worker", "--wait=false")
    sa.refused("delete", "node", "--all")
    sa.refused("get", "nodes")


# -- the operator itself, on the chart's ServiceAccount -------------------------------


class OperatorProcess:
    """`corral operator` on this machine, authenticated only by a kubeconfig."""

    def __init__(self, kubeconfig: Path, workdir: Path, *args: str) -> None:
        from corral.embedded import free_port

        self.log = workdir / f"operator-{time.monotonic_ns()}.log"
        self.health_port = free_port()
        argv = [sys.executable, "-m", "corral", "operator", "--host", "127.0.0.1",
                "--metrics-port", str(free_port()), "--health-port", str(self.health_port),
                *args]
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
        env.update(KUBECONFIG=str(kubeconfig), PYTHONUNBUFFERED="1")
        with self.log.open("w") as out:
            # Outside the checkout: its operator/ folder must not shadow anything.
            self.process = subprocess.Popen(argv, cwd=workdir, env=env, stdout=out,
                                            stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def taskqueue(name: str, secret: str, queue: str) -> str:
    return json.dumps({
        "apiVersion": "corral.dev/v1alpha1", "kind": "TaskQueue",
        "metadata": {"name": name},
        "spec": {
            "redis": {"urlSecretRef": {"name": secret, "key": "url"}},
            "queues": [{"name": queue}],
            "worker": {"image": "example.invalid/corral:1", "app": "tests.apps.basic:app",
                       "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                                     "limits": {"memory": "256Mi"}}},
            "scaling": {"minReplicas": 0, "maxReplicas": 3, "targetBacklogPerReplica": 10,
                        "activationBacklog": 1, "pollSeconds": 1,
                        "scaleDownStabilizationSeconds": 0, "cooldownSeconds": 0},
        },
    })


def get_json(k8s: Cluster, *args: str) -> dict[str, Any] | None:
    proc = k8s.kubectl("get", *args, "-o", "json", check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def reasons(k8s: Cluster, namespace: str, name: str) -> list[str]:
    events = json.loads(k8s.kubectl("-n", namespace, "get", "events", "-o", "json",
                                    f"--field-selector=involvedObject.name={name}").stdout)
    return [e["reason"] for e in events["items"]]


async def test_operator_scale_cycle_with_the_service_accounts_token(
        k8s: Cluster, namespaced_release: ServiceAccountClient, workdir: Path,
        redis_url: str, client: Client) -> None:
    """Deployment created, scaled up on a backlog, pods annotated, scaled to zero when
    drained, status and events written - all with exactly the chart's RBAC."""
    ns, name, queue = "chart-watched", "cycle", "chart-cycle"
    k8s.kubectl("-n", ns, "apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cycle-redis"},
        "stringData": {"url": redis_url}}))
    k8s.kubectl("-n", ns, "apply", "-f", "-", input=taskqueue(name, "cycle-redis", queue))
    operator = OperatorProcess(namespaced_release.kubeconfig, workdir, "--namespace", ns,
                               "--peering", "scoped-corral", "--log-format", "json")
    worker: WorkerProcess | None = None
    try:
        def deployment_replicas() -> tuple[bool, Any]:
            body = get_json(k8s, "-n", ns, "deployment", f"{name}-worker")
            return body is not None, body and body["spec"]["replicas"]

        assert await asyncio.to_thread(wait_until, "worker Deployment", deployment_replicas) == 0

        for n in range(25):
            await client.enqueue("noop", [n], queue=queue)

        def scaled_to(replicas: int) -> Callable[[], tuple[bool, Any]]:
            def check() -> tuple[bool, Any]:
                body = get_json(k8s, "-n", ns, "deployment", f"{name}-worker")
                status = (get_json(k8s, "-n", ns, "taskqueue", name) or {}).get("status", {})
                seen = (body and body["spec"]["replicas"], status.get("desiredReplicas"))
                return seen == (replicas, replicas), seen
            return check

        # ceil(25 / 10) = 3 = maxReplicas.
        await asyncio.to_thread(wait_until, "scale-up to 3", scaled_to(3))

        def all_counted() -> tuple[bool, Any]:
            # The first task's wake-up starts a pass at once, before the last enqueue:
            # the status counts all 25 from the next pass on.
            status = (get_json(k8s, "-n", ns, "taskqueue", name) or {}).get("status", {})
            seen = status.get("backlog", 0) + status.get("inFlight", 0)
            return seen == 25, seen

        await asyncio.to_thread(wait_until, "all 25 tasks in the status", all_counted)
        assert "ScaledUp" in reasons(k8s, ns, name)

        pods = await asyncio.to_thread(wait_until, "3 worker pods", lambda: (
            len(items := json.loads(k8s.kubectl(
                "-n", ns, "get", "pods", "-o", "json",
                f"-l=corral.dev/taskqueue={name}").stdout)["items"]) == 3, items))
        # A real worker, registered under a pod's name, drains the queue.
        worker = WorkerProcess(redis_url, args=["--queues", queue],
                               worker_id=pods[0]["metadata"]["name"]).wait_started()
        await asyncio.to_thread(wait_until, "scale-down to 0", scaled_to(0), 90.0)
        assert "ScaledDown" in reasons(k8s, ns, name)
        final = get_json(k8s, "-n", ns, "taskqueue", name)
        assert final is not None
        conditions = {c["type"]: c["status"] for c in final["status"]["conditions"]}
        assert conditions["RedisReachable"] == "True"

        # Deleted while the operator runs: it removes its finalizer, and the
        # garbage collector the Deployment.
        k8s.kubectl("-n", ns, "delete", "taskqueue", name, "--wait=false")
        await asyncio.to_thread(wait_until, "TaskQueue and Deployment gone", lambda: (
            not (left := [o for o in (f"taskqueue/{name}", f"deployment/{name}-worker")
                          if exists(k8s, "-n", ns, o)]), left))
    finally:
        if worker is not None:
            worker.close()
        operator.stop()
        k8s.kubectl("-n", ns, "delete", "taskqueue", name, "--wait=false", "--ignore-not-found",
                    check=False)
    log = operator.output()
    assert "forbidden" not in log.lower(), log[-5000:]

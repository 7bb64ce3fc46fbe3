"""Smoke test of the test control plane itself: scheduling, kwok "running"
pods, garbage collection and an API server restart."""

from __future__ import annotations

import json

import pytest

from tests.support.k8s import wait_until

pytest_plugins = ["tests.support.k8s"]
pytestmark = pytest.mark.e2e

NS = "default"


def deployment(name: str, replicas: int) -> str:
    return json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                # The image never gets pulled: kwok only fakes the pod status.
                "spec": {"containers": [{"name": "x", "image": "example.invalid/x:1"}]},
            },
        },
    })


def pods(k8s, selector: str) -> list[dict]:
    out = k8s.kubectl("-n", NS, "get", "pods", "-l", selector, "-o", "json").stdout
    return json.loads(out)["items"]


def running_ready(pod: dict) -> bool:
    status = pod.get("status", {})
    return status.get("phase") == "Running" and any(
        c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))


def deploy_and_wait_running(k8s, name: str, replicas: int) -> list[dict]:
    k8s.kubectl("apply", "-f", "-", input=deployment(name, replicas))

    def check():
        items = pods(k8s, f"app={name}")
        phases = [(p["metadata"]["name"], p.get("status", {}).get("phase")) for p in items]
        return len(items) == replicas and all(map(running_ready, items)), phases

    return wait_until(f"{replicas} Running pods of {name}", check)


def test_kubectl_version(k8s):
    out = json.loads(k8s.kubectl("version", "-o", "json").stdout)
    assert out["serverVersion"]["gitVersion"].startswith("v1.")
    assert out["clientVersion"]["gitVersion"] == out["serverVersion"]["gitVersion"]
    assert k8s.server.startswith("https://127.0.0.1:")


def test_deployment_pods_run_and_are_garbage_collected(k8s):
    deploy_and_wait_running(k8s, "smoke", 2)
    items = pods(k8s, "app=smoke")
    assert {p["spec"]["nodeName"] for p in items} <= {
        n["metadata"]["name"] for n in json.loads(
            k8s.kubectl("get", "nodes", "-l", "type=kwok", "-o", "json").stdout)["items"]}
    assert all(p["status"].get("podIP") for p in items)

    rs = json.loads(k8s.kubectl("-n", NS, "get", "rs", "-l", "app=smoke", "-o", "json").stdout)
    assert len(rs["items"]) == 1
    assert rs["items"][0]["metadata"]["ownerReferences"][0]["kind"] == "Deployment"

    # Delete only the Deployment; the garbage collector must remove its
    # ReplicaSet, and the ReplicaSet's pods, in the background.
    k8s.kubectl("-n", NS, "delete", "deployment", "smoke", "--cascade=background", "--wait=false")

    def gone():
        left_rs = json.loads(
            k8s.kubectl("-n", NS, "get", "rs", "-l", "app=smoke", "-o", "json").stdout)["items"]
        left_pods = pods(k8s, "app=smoke")
        names = [o["metadata"]["name"] for o in left_rs + left_pods]
        return not names, names

    wait_until("ReplicaSet and pods garbage-collected", gone)


def test_restart_apiserver(k8s):
    k8s.restart_apiserver()
    assert k8s.kubectl("get", "--raw=/readyz").stdout.strip() == "ok"
    # Controllers, scheduler and kwok must have reconnected to the new apiserver.
    deploy_and_wait_running(k8s, "after-restart", 1)
    k8s.kubectl("-n", NS, "delete", "deployment", "after-restart", "--wait=false")

"""Everything the operator reacts to, in one place. Each handler is a thin wrapper
around a plain async function of ``corral_operator.controller``.

- login: credentials for kopf's own watches (in-cluster, else the kubeconfig).
- a daemon per TaskQueue of this shard: it puts the TaskQueue into the one scheduler
  of the process and takes it out when the TaskQueue goes (or kopf pauses).
- a TaskQueue's spec changed: wake its loop at once instead of at the next poll.
- a worker Deployment or pod changed: remembered, so that a poll reads none from the API.

TaskQueues of other shards (``corral operator --shard I/N``) match no handler.
"""

from __future__ import annotations

from typing import Any

import kopf

from corral_operator import controller, models
from corral_operator.controller import Runtime
from corral_operator.deployment import MANAGER

TASKQUEUES = (models.GROUP, models.VERSION, models.PLURAL)


def build_registry(runtime: Runtime) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    async def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return await kopf.login_via_async_client(**kwargs)

    # When the TaskQueue is deleted or the operator stops, the loop finishes its pass
    # and exits; only a pass stuck longer than the backoff is cancelled.
    def ours(body: kopf.Body, **_: Any) -> bool:
        return runtime.shard.owns(body.get("metadata", {}).get("uid", ""))

    @kopf.daemon(*TASKQUEUES, id="control-loop", registry=registry, when=ours,
                 cancellation_backoff=5.0, cancellation_timeout=10.0)
    async def control_loop(body: kopf.Body, stopped: kopf.DaemonStopped, **_: Any) -> None:
        await controller.run_taskqueue(runtime, body, stopped)

    # The filter keeps the many status-only events from running (and logging) anything.
    @kopf.on.event(*TASKQUEUES, id="spec-watch", registry=registry,
                   when=lambda body, **_: ours(body) and controller.spec_changed(runtime, body))
    async def spec_watch(body: kopf.Body, **_: Any) -> None:
        controller.wake(runtime, body)

    @kopf.on.event("apps", "v1", "deployments", id="worker-deployments", registry=registry,
                   labels={"app.kubernetes.io/managed-by": MANAGER})
    async def worker_deployment(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        runtime.deployments.seen(event.get("type"), body)

    # The worker pods: a poll lists them only when the watch shows too few.
    @kopf.on.event("", "v1", "pods", id="worker-pods", registry=registry,
                   labels={"app.kubernetes.io/managed-by": MANAGER})
    async def worker_pod(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        runtime.pods.seen(event.get("type"), body)

    return registry

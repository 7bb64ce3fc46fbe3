"""Running the operator: kopf with Corral's handlers, settings built once and
passed down, the metrics server next to kopf's liveness endpoint."""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import threading
import time
from dataclasses import dataclass, field

import kopf

from corral_operator import handlers, models
from corral_operator.controller import ControllerSettings, Runtime
from corral_operator.kube import Kube
from corral_operator.metrics import MetricsServer, OperatorMetrics
from corral_operator.shards import WHOLE, Shard

log = logging.getLogger("corral.operator")

# How long a replica's peering record stays valid without a keep-alive: a replica
# killed without a goodbye is replaced by a standby after at most this long. kopf
# renews the record 5-10 s before it expires.
DEFAULT_PEERING_LIFETIME_S = 20
# Waits between kopf's retries of a failed API request: about 5 minutes in all.
API_RETRY_BACKOFFS_S = (1.0, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, *[30.0] * 9)


# Objects allocated, net, between two collections of the youngest generation
# (CPython's default: 700). A tick's pipeline of depth replies at 1,000 TaskQueues is
# tens of thousands of small lists that live until they are parsed: with the default,
# collections of the young generations come in the middle of it, promote the replies
# into the oldest one, and every few seconds a collection of the whole heap follows
# (300-600 ms at 1,000 TaskQueues, during which no wake-up is served).
GC_YOUNG_THRESHOLD = 100_000


def tune_gc() -> None:
    """Keep the garbage collector's pauses short for a process with a large heap."""
    # What the imports built lives as long as the process: no collection walks it.
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def startup_priority(started_ms: int | None = None, jitter: int | None = None) -> int:
    """A peering priority for a replica that starts now. The earlier a replica
    started, the higher its priority, so the oldest live replica is active and a
    newcomer (a rolling update, a restarted pod) stands by instead of taking over.
    Priorities must differ: kopf pauses every replica when two share the highest.
    The last three digits are random for replicas started in the same millisecond.
    Negative, so that a kopf operator or ``kopf freeze`` at the default priority 0
    still outranks every Corral replica."""
    if started_ms is None:
        started_ms = time.time_ns() // 1_000_000
    if jitter is None:
        jitter = random.randrange(1000)
    return -(started_ms * 1000 + jitter)


@dataclass(frozen=True, slots=True)
class OperatorConfig:
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    metrics_port: int = 8080
    health_port: int = 8081
    # Address of the metrics and health endpoints; probes in a pod need 0.0.0.0.
    host: str = "0.0.0.0"
    # kopf peering object for running several replicas (one active); None: standalone.
    peering: str | None = None
    # kopf peering priority: the highest live one is active, the others stand by.
    priority: int = field(default_factory=startup_priority)
    peering_lifetime_s: int = DEFAULT_PEERING_LIFETIME_S
    # The TaskQueues this process handles (by uid hash); WHOLE: all of them.
    shard: Shard = WHOLE
    controller: ControllerSettings = field(default_factory=ControllerSettings)


def peering_name(peering: str, shard: Shard) -> str:
    """Each shard its own peering: in a shared one, all but one shard would stand by."""
    return peering if shard == WHOLE else f"{peering}-{shard.suffix}"


def kopf_settings(config: OperatorConfig) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    # Corral posts its own events (ScaledUp, RedisUnreachable…); kopf's would be noise.
    settings.posting.enabled = False
    # Keep kopf's bookkeeping in Corral's annotations, out of the TaskQueue status.
    settings.persistence.finalizer = config.shard.finalizer
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=models.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=models.GROUP, key="last-handled-configuration")
    # Re-establish watches regularly, so a silently dropped connection cannot stall us.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    settings.networking.connect_timeout = 10
    # kopf's default retries give up on an unreachable API server after about a
    # minute, and then the operator exits; ride out a restart of a few minutes.
    settings.networking.error_backoffs = API_RETRY_BACKOFFS_S
    settings.peering.standalone = config.peering is None
    if config.peering is not None:
        settings.peering.name = peering_name(config.peering, config.shard)
        settings.peering.mandatory = True
        settings.peering.priority = config.priority
        settings.peering.lifetime = config.peering_lifetime_s
        settings.peering.clusterwide = not config.namespaces
    return settings


async def serve(
    config: OperatorConfig,
    stop_flag: asyncio.Event | threading.Event | None = None,
    ready_flag: asyncio.Event | threading.Event | None = None,
) -> None:
    """Run until ``stop_flag`` is set (or SIGINT/SIGTERM in the main thread)."""
    metrics = OperatorMetrics()
    server = MetricsServer(metrics)
    kube = await Kube.connect()
    try:
        port = await server.start(config.host, config.metrics_port)
        log.info("operator metrics on http://%s:%d/metrics; health on http://%s:%d/healthz; "
                 "watching %s", config.host, port, config.host, config.health_port,
                 ", ".join(config.namespaces) or "all namespaces")
        runtime = Runtime(kube=kube, metrics=metrics, settings=config.controller,
                          shard=config.shard)
        try:
            await _run_kopf(config, runtime, stop_flag, ready_flag)
        finally:
            await runtime.scheduler.close()
            await runtime.servers.close()
    finally:
        await server.stop()
        await kube.close()


async def _run_kopf(
    config: OperatorConfig,
    runtime: Runtime,
    stop_flag: asyncio.Event | threading.Event | None,
    ready_flag: asyncio.Event | threading.Event | None,
) -> None:
    await kopf.operator(
        registry=handlers.build_registry(runtime),
        settings=kopf_settings(config),
        clusterwide=not config.namespaces,
        namespaces=list(config.namespaces),
        liveness_endpoint=f"http://{config.host}:{config.health_port}/healthz",
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )


def run_operator(
    namespaces: list[str],
    metrics_port: int,
    health_port: int,
    *,
    host: str = "0.0.0.0",
    peering: str | None = None,
    priority: int | None = None,
    peering_lifetime_s: int = DEFAULT_PEERING_LIFETIME_S,
    shard: Shard = WHOLE,
) -> None:
    """Entry point of ``corral operator``. ``priority`` None: from the start time."""
    config = OperatorConfig(
        namespaces=tuple(namespaces), metrics_port=metrics_port, health_port=health_port,
        host=host, peering=peering,
        priority=startup_priority() if priority is None else priority,
        peering_lifetime_s=peering_lifetime_s, shard=shard)
    if shard != WHOLE:
        log.info("shard %s: handling the TaskQueues whose uid hashes to %d of %d",
                 shard, shard.index, shard.count)
    if peering is not None:
        log.info("peering %r with priority %d (the highest live replica is active)",
                 peering_name(peering, shard), config.priority)
    # One line per liveness probe is noise; so is kopf's line per watch event of every
    # worker Deployment and pod ("Handler ... succeeded"): thousands at start-up.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    tune_gc()
    asyncio.run(serve(config))

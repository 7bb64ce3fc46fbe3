"""Running the operator: kopf with Corral's handlers, settings built once and
passed down, the metrics server next to kopf's liveness endpoint."""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass, field

import kopf

from corral.operator import handlers, models
from corral.operator.controller import ControllerSettings, Runtime
from corral.operator.kube import Kube
from corral.operator.metrics import MetricsServer, OperatorMetrics

log = logging.getLogger("corral.operator")


@dataclass(frozen=True, slots=True)
class OperatorConfig:
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    metrics_port: int = 8080
    health_port: int = 8081
    # Address of the metrics and health endpoints; probes in a pod need 0.0.0.0.
    host: str = "0.0.0.0"
    # kopf peering object for running several replicas (one active); None: standalone.
    peering: str | None = None
    controller: ControllerSettings = field(default_factory=ControllerSettings)


def kopf_settings(config: OperatorConfig) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    # Corral posts its own events (ScaledUp, RedisUnreachable…); kopf's would be noise.
    settings.posting.enabled = False
    # Keep kopf's bookkeeping in Corral's annotations, out of the TaskQueue status.
    settings.persistence.finalizer = f"{models.GROUP}/operator"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=models.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=models.GROUP, key="last-handled-configuration")
    # Re-establish watches regularly, so a silently dropped connection cannot stall us.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    settings.networking.connect_timeout = 10
    settings.peering.standalone = config.peering is None
    if config.peering is not None:
        settings.peering.name = config.peering
        settings.peering.mandatory = True
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
        runtime = Runtime(kube=kube, metrics=metrics, settings=config.controller)
        await kopf.operator(
            registry=handlers.build_registry(runtime),
            settings=kopf_settings(config),
            clusterwide=not config.namespaces,
            namespaces=list(config.namespaces),
            liveness_endpoint=f"http://{config.host}:{config.health_port}/healthz",
            stop_flag=stop_flag,
            ready_flag=ready_flag,
        )
    finally:
        await server.stop()
        await kube.close()


def run_operator(
    namespaces: list[str],
    metrics_port: int,
    health_port: int,
    *,
    host: str = "0.0.0.0",
    peering: str | None = None,
) -> None:
    """Entry point of ``corral operator``."""
    config = OperatorConfig(namespaces=tuple(namespaces), metrics_port=metrics_port,
                            health_port=health_port, host=host, peering=peering)
    # One line per liveness probe is noise.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    asyncio.run(serve(config))

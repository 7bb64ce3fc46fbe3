"""Every Kubernetes API call the controller makes, on kubernetes-asyncio.

Objects go in and come out as plain dicts in their API (camelCase) form. Client
errors are re-raised as :class:`KubeError` subclasses, so nothing above this
module depends on the client library.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config.config_exception import ConfigException

from corral.errors import CorralError
from corral_operator import models
from corral_operator.deployment import MANAGER

Body = dict[str, Any]
T = TypeVar("T")
_APPLY = "application/apply-patch+yaml"
_MERGE = "application/merge-patch+json"
# A call the API server does not answer within this long fails (instead of stalling
# its TaskQueue's loop while the server is unreachable or overloaded).
REQUEST_TIMEOUT_S = 30.0


class KubeError(CorralError):
    """A Kubernetes API call failed."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class NotFound(KubeError):
    pass


class Conflict(KubeError):
    pass


class KubeConfigError(KubeError):
    """Neither in-cluster credentials nor a kubeconfig could be loaded."""


def _wrap(exc: ApiException, what: str) -> KubeError:
    message = f"{what}: {exc.status} {exc.reason}"
    detail = _status_message(getattr(exc, "body", None))
    if detail:
        message += f": {detail}"
    kind = {404: NotFound, 409: Conflict}.get(exc.status or 0, KubeError)
    return kind(message, exc.status)


def _status_message(body: str | bytes | None) -> str:
    """The ``message`` of a Kubernetes Status body (what kubectl shows), else the body."""
    if not body:
        return ""
    text = body if isinstance(body, str) else body.decode(errors="replace")
    try:
        status = json.loads(text)
    except ValueError:
        return text
    message = status.get("message") if isinstance(status, dict) else None
    return message if isinstance(message, str) and message else text


async def _call(what: str, call: Callable[[], Awaitable[T]]) -> T:
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            return await call()
    except ApiException as exc:
        raise _wrap(exc, what) from None
    except TimeoutError:
        raise KubeError(f"{what}: no answer within {REQUEST_TIMEOUT_S:.0f}s") from None
    except (aiohttp.ClientError, OSError) as exc:  # refused, reset: the API server is away
        raise KubeError(f"{what}: {exc or type(exc).__name__}") from None


def _patch(
    method: Callable[..., Awaitable[T]], *args: Any, content_type: str, **kwargs: Any
) -> Awaitable[T]:
    """A generated ``patch_*`` call with its patch type chosen explicitly (the
    client's stubs do not declare the ``_content_type`` keyword it accepts)."""
    return method(*args, _content_type=content_type, **kwargs)


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """The object an Event is about."""

    api_version: str
    kind: str
    name: str
    namespace: str
    uid: str


class Kube:
    """A kubernetes-asyncio client. Create with :meth:`connect`, end with :meth:`close`."""

    def __init__(self, api: client.ApiClient) -> None:
        self._api = api
        self._apps = client.AppsV1Api(api)
        self._core = client.CoreV1Api(api)
        self._custom = client.CustomObjectsApi(api)
        self._policy = client.PolicyV1Api(api)
        self._instance = socket.gethostname()

    @classmethod
    async def connect(cls) -> Kube:
        """In-cluster service account credentials, else ``$KUBECONFIG`` / ~/.kube/config."""
        configuration = client.Configuration()
        try:
            config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration)
        except ConfigException:
            try:
                await config.load_kube_config(client_configuration=configuration)
            except (ConfigException, OSError) as exc:
                raise KubeConfigError(f"no Kubernetes credentials: {exc}") from None
        return cls(client.ApiClient(configuration))

    async def close(self) -> None:
        await self._api.close()

    def _plain(self, obj: Any) -> Body:
        return dict(self._api.sanitize_for_serialization(obj))

    # -- deployments -------------------------------------------------------------------

    async def get_deployment(self, namespace: str, name: str) -> Body | None:
        try:
            obj = await _call(f"get deployment {namespace}/{name}",
                              lambda: self._apps.read_namespaced_deployment(name, namespace))
        except NotFound:
            return None
        return self._plain(obj)

    async def apply_deployment(self, body: Body) -> Body:
        """Server-side apply, taking over fields someone else changed."""
        meta = body["metadata"]
        obj = await _call(
            f"apply deployment {meta['namespace']}/{meta['name']}",
            lambda: _patch(self._apps.patch_namespaced_deployment, meta["name"],
                           meta["namespace"], body, field_manager=MANAGER, force=True,
                           content_type=_APPLY),
        )
        return self._plain(obj)

    async def scale_deployment(self, namespace: str, name: str, replicas: int) -> Body:
        obj = await _call(
            f"scale deployment {namespace}/{name}",
            lambda: _patch(self._apps.patch_namespaced_deployment, name, namespace,
                           {"spec": {"replicas": replicas}}, field_manager=MANAGER,
                           content_type=_MERGE),
        )
        return self._plain(obj)

    # -- pods ----------------------------------------------------------------------------

    async def list_pods(self, namespace: str, label_selector: str) -> list[Body]:
        pods = await _call(
            f"list pods in {namespace}",
            lambda: self._core.list_namespaced_pod(namespace, label_selector=label_selector),
        )
        return [self._plain(pod) for pod in pods.items]

    async def annotate_pod(
        self, namespace: str, name: str, annotations: dict[str, str | None]
    ) -> None:
        """Merge-patch the pod's annotations; a None value removes that key."""
        await _call(
            f"annotate pod {namespace}/{name}",
            lambda: _patch(self._core.patch_namespaced_pod, name, namespace,
                           {"metadata": {"annotations": annotations}}, field_manager=MANAGER,
                           content_type=_MERGE),
        )

    # -- pod disruption budgets ----------------------------------------------------------

    async def apply_pod_disruption_budget(self, body: Body) -> None:
        meta = body["metadata"]
        await _call(
            f"apply poddisruptionbudget {meta['namespace']}/{meta['name']}",
            lambda: _patch(self._policy.patch_namespaced_pod_disruption_budget, meta["name"],
                           meta["namespace"], body, field_manager=MANAGER, force=True,
                           content_type=_APPLY),
        )

    async def delete_pod_disruption_budget(self, namespace: str, name: str) -> None:
        """Delete it; one that does not exist is fine."""
        try:
            await _call(
                f"delete poddisruptionbudget {namespace}/{name}",
                lambda: self._policy.delete_namespaced_pod_disruption_budget(name, namespace))
        except NotFound:
            return

    # -- secrets -------------------------------------------------------------------------

    async def read_secret_key(self, namespace: str, name: str, key: str) -> str:
        secret = await _call(f"read secret {namespace}/{name}",
                             lambda: self._core.read_namespaced_secret(name, namespace))
        data = secret.data or {}
        if key not in data:
            raise NotFound(f"secret {namespace}/{name} has no key {key!r}", 404)
        return base64.b64decode(data[key]).decode()

    # -- taskqueues ----------------------------------------------------------------------

    async def patch_taskqueue_status(self, namespace: str, name: str, status: Body) -> None:
        await _call(
            f"patch status of taskqueue {namespace}/{name}",
            lambda: _patch(self._custom.patch_namespaced_custom_object_status, models.GROUP,
                           models.VERSION, namespace, models.PLURAL, name, {"status": status},
                           field_manager=MANAGER, content_type=_MERGE),
        )

    async def set_taskqueue_finalizers(
        self, namespace: str, name: str, finalizers: list[str], resource_version: str
    ) -> None:
        """Replace the finalizers, if the object is still at ``resource_version``
        (else Conflict: someone else changed them meanwhile)."""
        patch = {"metadata": {"finalizers": finalizers, "resourceVersion": resource_version}}
        await _call(
            f"set finalizers of taskqueue {namespace}/{name}",
            lambda: _patch(self._custom.patch_namespaced_custom_object, models.GROUP,
                           models.VERSION, namespace, models.PLURAL, name, patch,
                           field_manager=MANAGER, content_type=_MERGE),
        )

    # -- events --------------------------------------------------------------------------

    async def post_event(
        self, ref: ObjectRef, kind: Literal["Normal", "Warning"], reason: str, message: str
    ) -> None:
        now = datetime.datetime.now(datetime.UTC)
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{ref.name}.", namespace=ref.namespace),
            involved_object=client.V1ObjectReference(
                api_version=ref.api_version, kind=ref.kind, name=ref.name,
                namespace=ref.namespace, uid=ref.uid),
            type=kind,
            reason=reason,
            message=message[:1024],
            source=client.V1EventSource(component=MANAGER),
            reporting_component=f"{models.GROUP}/operator",
            reporting_instance=self._instance,
            first_timestamp=now,
            last_timestamp=now,
            count=1,
        )
        await _call(f"post event {reason} for {ref.namespace}/{ref.name}",
                    lambda: self._core.create_namespaced_event(ref.namespace, event))

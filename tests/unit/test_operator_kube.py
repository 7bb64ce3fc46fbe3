"""The Kubernetes seam turns every client failure into a KubeError, so a TaskQueue's
loop treats an unreachable API server like any other API error: log, count, retry."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from corral_operator import kube


async def _raise(exc: BaseException) -> None:
    raise exc


async def test_api_errors_keep_their_status() -> None:
    with pytest.raises(kube.NotFound) as caught:
        await kube._call("get deployment a/b", lambda: _raise(ApiException(404, "Not Found")))
    assert caught.value.status == 404
    assert str(caught.value).startswith("get deployment a/b: 404 Not Found")


def test_a_status_body_becomes_its_message() -> None:
    body = ('{"kind": "Status", "status": "Failure", "reason": "Invalid", "code": 422, '
            '"message": "Deployment.apps \\"a-worker\\" is invalid: spec.template.metadata'
            '.labels: Invalid value: \\"x y\\""}')
    exc = ApiException(422, "Unprocessable Entity")
    exc.body = body
    error = kube._wrap(exc, "apply deployment ns/a-worker")
    assert str(error) == ('apply deployment ns/a-worker: 422 Unprocessable Entity: '
                          'Deployment.apps "a-worker" is invalid: '
                          'spec.template.metadata.labels: Invalid value: "x y"')
    plain = ApiException(500, "Internal Server Error")
    plain.body = b"upstream connect error"
    assert str(kube._wrap(plain, "get x")).endswith(": upstream connect error")


@pytest.mark.parametrize("exc", [
    ConnectionRefusedError(111, "Connect call failed"),
    aiohttp.ServerDisconnectedError(),
    aiohttp.ClientPayloadError("response payload is not completed"),
])
async def test_connection_failures_become_kube_errors(exc: BaseException) -> None:
    with pytest.raises(kube.KubeError) as caught:
        await kube._call("patch status of taskqueue a/b", lambda: _raise(exc))
    assert caught.type is kube.KubeError
    assert caught.value.status is None
    assert str(caught.value).startswith("patch status of taskqueue a/b: ")


async def test_a_call_without_answer_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kube, "REQUEST_TIMEOUT_S", 0.05)
    with pytest.raises(kube.KubeError, match="no answer within"):
        await kube._call("get deployment a/b", lambda: asyncio.sleep(10))

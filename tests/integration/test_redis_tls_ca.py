"""TLS with a CA that is not the system's: verification is on by default, and the CA
reaches the client as a file named by ``$CORRAL_REDIS_CA_CERTS`` (worker pods, from
``spec.redis.caSecretRef``) or as PEM data (the operator, which reads the Secret)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.exceptions

from corral.connection import connect, default_url, with_ca_file
from corral.embedded import EmbeddedRedis, free_port
from corral.errors import ConfigError
from corral_operator import controller as ctl
from corral_operator.metrics import OperatorMetrics
from corral_operator.redis_io import RedisSettings, Servers
from tests.integration.test_redis_deployments import make_certificates
from tests.unit.test_operator_controller import NAME, NS, UID, Clock, FakeKube, body, spec_for

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class TlsRedis:
    server: EmbeddedRedis
    url: str  # rediss:// without any CA option
    ca_file: Path


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRedis]:
    """A server on a TLS port signed by the test CA; no client certificate needed."""
    certs = make_certificates(tmp_path_factory.mktemp("certs"))
    tls_port = free_port()
    server = EmbeddedRedis(extra_args=(
        "--tls-port", str(tls_port),
        "--tls-cert-file", str(certs["server.crt"]),
        "--tls-key-file", str(certs["server.key"]),
        "--tls-ca-cert-file", str(certs["ca.crt"]),
        "--tls-auth-clients", "no",
    ))
    server.start()
    try:
        yield TlsRedis(server, f"rediss://127.0.0.1:{tls_port}/0", certs["ca.crt"])
    finally:
        server.close()


async def test_the_server_certificate_is_verified_by_default(tls_redis: TlsRedis) -> None:
    client = connect(tls_redis.url)
    try:
        with pytest.raises(redis.exceptions.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.ping()
    finally:
        await client.aclose()


async def test_ca_data_verifies_the_server(tls_redis: TlsRedis) -> None:
    client = connect(tls_redis.url, ca_data=tls_redis.ca_file.read_text())
    try:
        assert await client.ping()
    finally:
        await client.aclose()


@pytest.mark.parametrize(("query", "cert_reqs", "check_hostname"), [
    ("", "required", True),
    ("?ssl_check_hostname=false", "required", False),
    ("?ssl_cert_reqs=none", "none", False),
])
async def test_verification_is_asked_for_unless_the_url_says_otherwise(
        query: str, cert_reqs: str, check_hostname: bool) -> None:
    # Set by corral, whatever the installed redis-py's defaults are.
    client = connect(f"rediss://h:6380/0{query}")
    try:
        kwargs = client.connection_pool.connection_kwargs
        assert (kwargs["ssl_cert_reqs"], kwargs["ssl_check_hostname"]) == (
            cert_reqs, check_hostname)
    finally:
        await client.aclose()


def test_a_ca_needs_a_tls_url(tls_redis: TlsRedis) -> None:
    with pytest.raises(ConfigError, match="needs a rediss:// URL"):
        connect(tls_redis.server.url, ca_data=tls_redis.ca_file.read_text())


@pytest.mark.parametrize(("url", "expected"), [
    ("rediss://h:6380/0", "rediss://h:6380/0?ssl_ca_certs=/etc/ca/ca.crt"),
    ("rediss://h:6380/0?socket_timeout=2", "rediss://h:6380/0?socket_timeout=2"
                                           "&ssl_ca_certs=/etc/ca/ca.crt"),
    ("rediss://h:6380/0?ssl_ca_certs=/mine.pem", "rediss://h:6380/0?ssl_ca_certs=/mine.pem"),
])
def test_the_ca_file_joins_the_url(url: str, expected: str) -> None:
    assert with_ca_file(url, "/etc/ca/ca.crt") == expected


def test_a_ca_file_on_a_plain_url_is_refused_when_connecting() -> None:
    with pytest.raises(ConfigError, match="TLS options need a rediss:// URL"):
        connect(with_ca_file("redis://h:6379/0", "/etc/ca/ca.crt"))


async def test_the_environment_ca_file_is_used(tls_redis: TlsRedis,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_REDIS_URL", tls_redis.url)
    monkeypatch.setenv("CORRAL_REDIS_CA_CERTS", str(tls_redis.ca_file))
    client = connect(default_url())
    try:
        assert await client.ping()
    finally:
        await client.aclose()


def test_the_cli_uses_the_environment_ca_as_a_worker_pod_does(tls_redis: TlsRedis) -> None:
    """A worker pod has CORRAL_REDIS_URL and CORRAL_REDIS_CA_CERTS and no --redis-url;
    `corral` reads them as `corral worker` does."""
    env = {**os.environ, "CORRAL_REDIS_URL": tls_redis.url}
    argv = [sys.executable, "-m", "corral", "enqueue", "noop"]
    refused = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=60)
    assert refused.returncode != 0
    assert "certificate verify failed" in refused.stderr.lower(), refused.stderr
    env["CORRAL_REDIS_CA_CERTS"] = str(tls_redis.ca_file)
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


# -- the operator: spec.redis.caSecretRef -----------------------------------------------


async def test_the_operator_verifies_redis_with_the_ca_from_the_secret(
        tls_redis: TlsRedis, tmp_path: Path) -> None:
    kube = FakeKube()
    runtime = ctl.Runtime(kube=kube, metrics=OperatorMetrics(),  # type: ignore[arg-type]
                          servers=Servers(RedisSettings(timeout_s=5.0)), clock=Clock())
    loop = ctl.TaskQueueController(runtime, NAME, NS, UID)
    try:
        spec = spec_for(tls_redis.url)
        await loop.reconcile_once(body(spec))
        assert "certificate verify failed" in kube.condition("RedisReachable")["message"]
        spec["redis"]["caSecretRef"] = {"name": "redis-ca"}
        await loop.reconcile_once(body(spec, generation=2))
        assert kube.condition("RedisReachable")["reason"] == "SecretNotFound"
        kube.secrets[(NS, "redis-ca")] = {
            "ca.crt": make_certificates(tmp_path)["ca.crt"].read_text()}
        await loop.reconcile_once(body(spec, generation=2))
        condition = kube.condition("RedisReachable")
        assert condition["reason"] == "ConnectionFailed", condition
        assert "certificate verify failed" in condition["message"]
        kube.secrets[(NS, "redis-ca")] = {"ca.crt": tls_redis.ca_file.read_text()}
        await loop.reconcile_once(body(spec, generation=2))
        assert kube.condition("RedisReachable")["status"] == "True"
        pod = kube.deployments["emails-worker"]["spec"]["template"]["spec"]
        assert {"name": "redis-ca", "secret": {
            "secretName": "redis-ca", "defaultMode": 0o444,
            "items": [{"key": "ca.crt", "path": "ca.crt"}]}} in pod["volumes"]
    finally:
        await loop.close()

"""Corral on the Redis deployments users run: Redis Cluster (three masters), Sentinel
(a master, a replica and a Sentinel, with a failover mid-run), an ACL user with a
password, and TLS with a CA made by the test. Client, worker and CLI change nothing
but the URL. Every server listens on loopback and is started here."""

from __future__ import annotations

import asyncio
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from redis.cluster import key_slot

from corral.client import Client, Enqueue, TaskHandle
from corral.connection import connect
from corral.depths import read_queue_depths
from corral.embedded import EmbeddedRedis, server_binary
from corral.keys import DEFAULT_PREFIX, queue_keys
from tests.support.workers import ROOT, WorkerProcess

QUEUES = ("default", "other", "zeta")
SECRET = "s3cr3t-Pa55word"


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "corral", "--redis-url", url, *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )


async def _results(handles: list[TaskHandle], timeout_s: float = 60.0) -> list[object]:
    # In slices: redis-py's pools refuse (rather than queue) past 100 connections.
    results: list[object] = []
    for start in range(0, len(handles), 50):
        chunk = handles[start : start + 50]
        results += await asyncio.gather(*(h.result(timeout=timeout_s) for h in chunk))
    return results


def _scrape(worker: WorkerProcess, path: str) -> str:
    url = f"http://127.0.0.1:{worker.metrics_port}{path}"
    return str(urllib.request.urlopen(url, timeout=10).read().decode())


# -- Redis Cluster --------------------------------------------------------------------


def _cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    while True:
        port = random.randint(20_000, 55_000)
        try:
            for candidate in (port, port + 10_000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[str]:
    """Three masters sharing the 16384 slots; yields a redis+cluster:// URL."""
    args = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", "2000")
    nodes = [EmbeddedRedis(port=_cluster_port(), extra_args=args) for _ in range(3)]
    try:
        for node in nodes:
            node.start()
        ranges = [(0, 5460), (5461, 10922), (10923, 16383)]
        for node, (first, last) in zip(nodes, ranges, strict=True):
            with redis.Redis(port=node.port) as conn:
                conn.execute_command("CLUSTER", "ADDSLOTS", *range(first, last + 1))
        with redis.Redis(port=nodes[0].port) as conn:
            for node in nodes[1:]:
                conn.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port)
        _wait_cluster_ok([node.port for node in nodes])
        # Two seeds are enough: the client learns the rest from them.
        yield "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in nodes[:2])
    finally:
        for node in nodes:
            node.close()


def _wait_cluster_ok(ports: list[int], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        states = []
        for port in ports:
            with redis.Redis(port=port) as conn:
                states.append(conn.cluster("info")["cluster_state"])
        if all(state == "ok" for state in states):
            return
        time.sleep(0.1)
    raise RuntimeError(f"cluster did not become ready: {states}")


def test_every_key_of_a_queue_shares_one_hash_slot() -> None:
    for queue in QUEUES:
        keys = queue_keys(queue, DEFAULT_PREFIX)
        names = [*keys.ready, keys.scheduled, keys.leased, keys.dead, keys.dedupe,
                 keys.workers, keys.task("some-id"), keys.worker("w-1")]
        assert len({key_slot(name.encode()) for name in names}) == 1
    # The queues used below live on different masters (5461 slots each).
    slots = {key_slot(queue_keys(q, DEFAULT_PREFIX).leased.encode()) for q in QUEUES}
    assert len({slot // 5461 for slot in slots}) >= 2


async def test_cluster_client_worker_and_cli_work_unchanged(redis_cluster: str) -> None:
    worker = WorkerProcess(redis_cluster, args=["--queues", ",".join(QUEUES)],
                           worker_id="cluster-worker")
    try:
        await asyncio.to_thread(worker.wait_started)
        async with Client.from_url(redis_cluster) as client:
            handles = await client.enqueue_many(
                [Enqueue("noop", args=[i], queue=q) for q in QUEUES for i in range(100)]
            )
            single = await client.enqueue("echo", args=["hi"], queue="other", priority=9)
            assert await _results(handles) == [i for _ in QUEUES for i in range(100)]
            assert await single.result(timeout=30) == {"args": ["hi"], "kwargs": {}}

            running = await client.enqueue("sleep", args=[30.0], queue="zeta")
            await _until_status(running, "running")
            assert await running.cancel() is True  # the cancel channel reaches the worker
            await _until_status(running, "cancelled")

            unknown = await client.enqueue("no_such_task", queue="zeta")
            await _until_status(unknown, "dead")
            depths = await read_queue_depths(client.redis, list(QUEUES))
            assert depths["zeta"].dead == 1
            assert {w.worker_id for w in depths["default"].workers} == {"cluster-worker"}

        listed = await asyncio.to_thread(_cli, redis_cluster, "dlq", "list", "--queue", "zeta")
        assert listed.returncode == 0 and "no task named 'no_such_task'" in listed.stdout
        inspected = await asyncio.to_thread(_cli, redis_cluster, "inspect", "--json")
        assert inspected.returncode == 0 and '"zeta"' in inspected.stdout
        enqueued = await asyncio.to_thread(_cli, redis_cluster, "enqueue", "noop", "--args",
                                           "[7]", "--queue", "other", "--wait", "30")
        assert enqueued.returncode == 0 and enqueued.stdout.splitlines()[-1] == "7"
        assert worker.terminate() == 0
        problems = [line for line in worker.lines if "Traceback" in line or "ERROR" in line]
        assert not problems, worker.output()
    finally:
        worker.close()


async def test_cluster_depths_read_as_the_operator_reads_them(redis_cluster: str) -> None:
    # The operator's own client: a small pool, many queues spread over the masters.
    queues = [f"q{i}" for i in range(12)]
    redis_client = connect(redis_cluster, max_connections=4)
    try:
        async with Client(connect(redis_cluster)) as client:
            await client.enqueue_many([Enqueue("noop", queue=q) for q in queues for _ in "ab"])
        depths = await read_queue_depths(redis_client, queues)
        assert {q: d.backlog for q, d in depths.items()} == dict.fromkeys(queues, 2)
    finally:
        await redis_client.aclose()


def _cluster_nodes(url: str) -> list[redis.Redis]:
    seed_port = int(url.split(",")[0].rsplit(":", 1)[1])
    with redis.Redis(port=seed_port) as seed:
        lines = seed.execute_command("CLUSTER", "NODES").decode().splitlines()
    ports = [int(line.split()[1].split("@")[0].rsplit(":", 1)[1]) for line in lines]
    return [redis.Redis(port=port) for port in ports]


async def test_cluster_wake_ups_and_results_stay_in_the_queues_shard(redis_cluster: str) -> None:
    nodes = _cluster_nodes(redis_cluster)
    for node in nodes:
        node.config_resetstat()
    worker = WorkerProcess(redis_cluster, args=["--queues", ",".join(QUEUES)],
                           worker_id="shard-worker")
    try:
        await asyncio.to_thread(worker.wait_started)
        keys = {q: queue_keys(q, DEFAULT_PREFIX) for q in QUEUES}
        # The worker listens with SSUBSCRIBE on each queue's own shard, not with SUBSCRIBE.
        await _until(lambda: all(
            sum(n.pubsub_shardnumsub(k.wake_channel)[0][1] for n in nodes) == 1
            for k in keys.values()
        ))
        assert all(n.pubsub_numsub(k.wake_channel)[0][1] == 0
                   for n in nodes for k in keys.values())
        async with Client.from_url(redis_cluster) as client:
            handles = [await client.enqueue("noop", args=[q], queue=q) for q in QUEUES]
            assert await _results(handles) == list(QUEUES)
        stats = [n.info("commandstats") for n in nodes]
        calls = {
            name: sum(int(s.get(f"cmdstat_{name}", {}).get("calls", 0)) for s in stats)
            for name in ("publish", "spublish")
        }
        assert calls["spublish"] > 0 and calls["publish"] == 0, calls
        assert worker.terminate() == 0
    finally:
        worker.close()
        for node in nodes:
            node.close()


async def _until_status(handle: TaskHandle, status: str, timeout_s: float = 30.0) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            if await handle.status() == status:
                return
            await asyncio.sleep(0.05)


async def _until(check: Callable[[], bool], timeout_s: float = 60.0) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            if check():
                return
            await asyncio.sleep(0.05)


# -- Sentinel -------------------------------------------------------------------------------


class SentinelSetup:
    """A master, a replica and one Sentinel watching them as service ``corral``."""

    def __init__(self, workdir: Path) -> None:
        self.master = EmbeddedRedis(appendonly=True)
        self.replica: EmbeddedRedis | None = None
        self.workdir = workdir
        self.port = _cluster_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> SentinelSetup:
        self.master.start()
        self.replica = EmbeddedRedis(
            appendonly=True, extra_args=("--replicaof", "127.0.0.1", str(self.master.port))
        ).start()
        config = self.workdir / "sentinel.conf"
        config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.workdir}\n"
            f"sentinel monitor corral 127.0.0.1 {self.master.port} 1\n"
            "sentinel down-after-milliseconds corral 1000\n"
            "sentinel failover-timeout corral 5000\n"
        )
        log = open(self.workdir / "sentinel.log", "ab")  # noqa: SIM115 - kept for the process
        self.process = subprocess.Popen(
            [server_binary(), str(config), "--sentinel"], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        self._wait_for_replica()
        return self

    def _wait_for_replica(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with redis.Redis(port=self.port) as conn:
                    replicas = conn.sentinel_slaves("corral")
                if replicas and replicas[0].get("master-link-status") == "ok":
                    return
            except (redis.RedisError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError("sentinel did not see the replica in time")

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.port}/corral"

    def master_port(self) -> int:
        with redis.Redis(port=self.port) as conn:
            return int(conn.sentinel_get_master_addr_by_name("corral")[1])

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for server in (self.master, self.replica):
            if server is not None:
                server.close()


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[SentinelSetup]:
    setup = SentinelSetup(tmp_path)
    try:
        yield setup.start()
    finally:
        setup.close()


async def _produce(client: Client, count: int, acknowledged: list[TaskHandle]) -> int:
    """Enqueue ``count`` tasks one by one; an enqueue that fails (failover) is retried.
    Only enqueues that returned are acknowledged. Returns the number of failed tries."""
    failures = 0
    for _ in range(count):
        while True:
            try:
                acknowledged.append(await client.enqueue("sleep", args=[0.02]))
                break
            except (redis.RedisError, OSError):
                failures += 1
                await asyncio.sleep(0.1)
        await asyncio.sleep(0.002)
    return failures


async def test_sentinel_failover_mid_run_loses_no_acknowledged_task(
    sentinel: SentinelSetup,
) -> None:
    # A lease longer than the failover, so that no lease runs out on the way.
    worker = WorkerProcess(sentinel.url, args=["--lease-seconds", "15", "--concurrency", "20"],
                           worker_id="sentinel-worker")
    try:
        await asyncio.to_thread(worker.wait_started)
        async with Client.from_url(sentinel.url) as client:
            acknowledged: list[TaskHandle] = []
            producer = asyncio.create_task(_produce(client, 1_500, acknowledged))
            await _until(lambda: len(acknowledged) >= 300)
            old_port = sentinel.master_port()
            # The master's pod is deleted: SIGTERM, and Redis hands its last writes to
            # the replica before it exits. Sentinel then promotes the replica.
            assert sentinel.master.process is not None
            sentinel.master.process.send_signal(signal.SIGTERM)
            await _until(lambda: sentinel.master_port() != old_port)
            failures = await producer
            results = await _results(acknowledged, timeout_s=120)
        assert results == [0.02] * len(acknowledged) == [0.02] * 1_500
        print(f"sentinel failover: {len(acknowledged)} acknowledged tasks, all succeeded; "
              f"{failures} enqueue tries failed during the failover")
        assert worker.terminate() == 0
    finally:
        worker.close()


# -- ACL user and TLS -------------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by it."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
             "/CN=corral-test-ca", "-keyout", "ca.key", "-out", "ca.crt", cwd=directory)
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN=corral-{name}",
                 "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=directory)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", f"{name}.crt",
                 cwd=directory)
    return {name: directory / name for name in (
        "ca.crt", "server.crt", "server.key", "client.crt", "client.key")}


@dataclass(frozen=True)
class SecuredRedis:
    server: EmbeddedRedis
    tls_port: int
    certs: dict[str, Path]


@pytest.fixture(scope="module")
def secured_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredRedis]:
    """A server with a TLS port that requires client certificates, and an ACL user
    ``corral`` (limited to Corral's keys and channels) whose password is SECRET."""
    certs = make_certificates(tmp_path_factory.mktemp("certs"))
    tls_port = _cluster_port()
    server = EmbeddedRedis(extra_args=(
        "--tls-port", str(tls_port),
        "--tls-cert-file", str(certs["server.crt"]),
        "--tls-key-file", str(certs["server.key"]),
        "--tls-ca-cert-file", str(certs["ca.crt"]),
        "--tls-auth-clients", "yes",
    ))
    server.start()
    try:
        with redis.Redis(port=server.port) as conn:
            conn.acl_setuser(
                "corral", enabled=True, passwords=[f"+{SECRET}"], keys=["corral:*"],
                channels=["corral:*"], commands=["+@all", "-@dangerous"],
            )
        yield SecuredRedis(server, tls_port, certs)
    finally:
        server.close()


def _acl_url(server: EmbeddedRedis) -> str:
    return f"redis://corral:{SECRET}@127.0.0.1:{server.port}/0"


def _tls_url(tls_port: int, certs: dict[str, Path], user: str = "corral") -> str:
    return (
        f"rediss://{user}:{SECRET}@127.0.0.1:{tls_port}/0?ssl_ca_certs={certs['ca.crt']}"
        f"&ssl_certfile={certs['client.crt']}&ssl_keyfile={certs['client.key']}"
    )


@pytest.mark.parametrize("transport", ["acl", "tls"])
async def test_acl_user_and_tls_work_and_the_password_stays_secret(
    secured_redis: SecuredRedis, transport: str
) -> None:
    s = secured_redis
    url = _acl_url(s.server) if transport == "acl" else _tls_url(s.tls_port, s.certs)
    worker = WorkerProcess(url, args=["--log-format", "json"], worker_id=f"{transport}-worker")
    try:
        await asyncio.to_thread(worker.wait_started)
        async with Client.from_url(url) as client:
            handles = await client.enqueue_many([Enqueue("noop", args=[i]) for i in range(50)])
            assert await _results(handles) == list(range(50))
            cancelled = await client.enqueue("sleep", args=[30.0])
            await _until_status(cancelled, "running")
            assert await cancelled.cancel() is True
            await _until_status(cancelled, "cancelled")
            dead = await client.enqueue("no_such_task")
            await _until_status(dead, "dead")
        outputs = [
            _scrape(worker, "/metrics"), _scrape(worker, "/debug/tasks"),
            (await asyncio.to_thread(_cli, url, "inspect")).stdout,
            (await asyncio.to_thread(_cli, url, "dlq", "list")).stdout,
        ]
        assert worker.terminate() == 0
        outputs.append(worker.output())
        assert "no_such_task" in outputs[3]
        for text in outputs:
            assert SECRET not in text
        assert "corral:***@" in worker.output()  # the URL is logged, redacted
    finally:
        worker.close()


def test_wrong_password_and_wrong_ca_fail_with_one_line_and_no_secret(
    secured_redis: SecuredRedis, tmp_path: Path
) -> None:
    s = secured_redis
    other_ca = make_certificates(tmp_path)
    cases = [
        f"redis://corral:wrong-{SECRET}@127.0.0.1:{s.server.port}/0",
        _tls_url(s.tls_port, {**s.certs, "ca.crt": other_ca["ca.crt"]}),
        # A client certificate the server's CA did not sign.
        _tls_url(s.tls_port, {**s.certs, "client.crt": other_ca["client.crt"],
                              "client.key": other_ca["client.key"]}),
    ]
    for url in cases:
        result = _cli(url, "enqueue", "noop")
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("corral enqueue: error:"), result.stderr
        assert SECRET not in result.stderr and "Traceback" not in result.stderr


async def test_acl_user_cannot_reach_other_keys(secured_redis: SecuredRedis) -> None:
    conn = connect(_acl_url(secured_redis.server))
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):
            await conn.set("not-corral", "1")
        assert await conn.ping()
    finally:
        await conn.aclose()

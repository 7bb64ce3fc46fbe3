"""How each system's workers are started, and every setting that differs from the
system's defaults, with the reason. The harness reads this; it imports no peer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from corral import defaults

# Worker profiles: one process draining no-op tasks, four processes doing the same,
# one process running I/O-bound tasks (as much concurrency as the system offers,
# up to 100), and one idle-but-ready process for the latency test.
PROFILES = ("noop1", "noop4", "io", "latency")

Argv = list[str]
CommandBuilder = Callable[[Path, str, int], list[Argv]]


@dataclass(frozen=True)
class System:
    name: str
    label: str
    packages: tuple[str, ...]  # distributions whose exact versions the report lists
    workers: dict[str, CommandBuilder]
    settings: tuple[str, ...] = ()  # non-default settings and why
    notes: tuple[str, ...] = ()  # how it runs by default, where it matters here
    concurrency: dict[str, str] = field(default_factory=dict)  # per profile, for the doc
    forks_per_task: bool = False  # a new process per task: count processes by parent pid


def _corral(bin_dir: Path, url: str, procs: int) -> list[Argv]:
    return [
        [str(bin_dir / "corral"), "worker", "bench.tasks_corral:app", "--redis-url", url,
         "--concurrency", "100", "--batch-size", "100", "--metrics-port", "-1",
         "--worker-id", f"bench-{i + 1}", "--log-level", "WARNING"]
        for i in range(procs)
    ]


def _celery(pool: str, concurrency: int) -> CommandBuilder:
    def build(bin_dir: Path, url: str, procs: int) -> list[Argv]:
        return [[str(bin_dir / "celery"), "-A", "bench.tasks_celery", "worker", "--pool", pool,
                 "--concurrency", str(concurrency * procs if pool == "prefork" else concurrency),
                 "--loglevel", "WARNING", "--hostname", "bench@%h"]]
    return build


def _rq(bin_dir: Path, url: str, procs: int) -> list[Argv]:
    if procs == 1:
        return [[str(bin_dir / "rq"), "worker", "--url", url, "default"]]
    return [[str(bin_dir / "rq"), "worker-pool", "--url", url, "--num-workers", str(procs),
             "default"]]


def _arq(bin_dir: Path, url: str, procs: int) -> list[Argv]:
    return [[str(bin_dir / "arq"), "bench.tasks_arq.WorkerSettings"] for _ in range(procs)]


def _saq(bin_dir: Path, url: str, procs: int) -> list[Argv]:
    return [[str(bin_dir / "saq"), "bench.tasks_saq.settings", "--workers", str(procs)]]


def _dramatiq(threads: int) -> CommandBuilder:
    def build(bin_dir: Path, url: str, procs: int) -> list[Argv]:
        return [[str(bin_dir / "dramatiq"), "bench.tasks_dramatiq", "--processes", str(procs),
                 "--threads", str(threads)]]
    return build


def _taskiq(bin_dir: Path, url: str, procs: int) -> list[Argv]:
    return [[str(bin_dir / "taskiq"), "worker", "bench.tasks_taskiq:broker", "--workers",
             str(procs)]]


def _streaq(bin_dir: Path, url: str, procs: int) -> list[Argv]:
    return [[str(bin_dir / "streaq"), "run", "bench.tasks_streaq:worker", "--workers",
             str(procs)]]


UVLOOP_POLICY = ("uvloop, through `asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())` "
                 "in the task module (default: the standard asyncio loop): Corral runs on "
                 "uvloop by default, so every asyncio system here does too.")


def _same(build: CommandBuilder) -> dict[str, CommandBuilder]:
    return dict.fromkeys(PROFILES, build)


SYSTEMS: dict[str, System] = {
    s.name: s
    for s in (
        System(
            "corral", "Corral", ("corral", "redis", "hiredis", "uvloop"),
            _same(_corral),
            settings=(
                "`--concurrency 100 --batch-size 100` (defaults "
                f"{defaults.CONCURRENCY.default} and {defaults.BATCH_SIZE.default}): the "
                "batch size the 0.2 commands-per-task target is stated for.",
                "`--metrics-port -1`: no metrics server, so four workers can share the "
                "machine without port clashes.",
                "`--log-level WARNING`: the default INFO only logs start and stop.",
            ),
            notes=("Four processes are four `corral worker` processes, as four pods would be. "
                   "Leases, acknowledgements and results (kept a day) are always on.",),
            concurrency={p: "100 per process" for p in PROFILES},
        ),
        System(
            "celery", "Celery", ("celery", "kombu", "redis", "hiredis", "gevent"),
            {"noop1": _celery("prefork", 1), "noop4": _celery("prefork", 1),
             "io": _celery("gevent", 100), "latency": _celery("prefork", 1)},
            settings=(
                "`--pool gevent --concurrency 100` for the I/O-bound test: Celery's "
                "documented choice for I/O-bound tasks (it patches `time.sleep`).",
                "`broker_connection_retry_on_startup = True`: silences a deprecation "
                "warning; it is the current default behaviour.",
            ),
            notes=("Prefork pool (the default): one and four child processes; acknowledges "
                   "on receipt (`task_acks_late` off, the default); no result backend.",),
            concurrency={"noop1": "prefork, 1 child", "noop4": "prefork, 4 children",
                         "io": "gevent, 100", "latency": "prefork, 1 child"},
        ),
        System(
            "rq", "RQ", ("rq", "redis", "hiredis"),
            _same(_rq),
            notes=("The default `Worker` forks a work horse for every job, one job at a "
                   "time per worker; `rq worker-pool` runs four workers. It has no "
                   "concurrency inside a process, so the I/O-bound test runs one job at a "
                   "time. Results are kept 500 s (default).",),
            concurrency={"noop1": "1 (fork per job)", "noop4": "worker-pool of 4",
                         "io": "1 (no in-process concurrency)", "latency": "1"},
            forks_per_task=True,
        ),
        System(
            "arq", "arq", ("arq", "redis", "hiredis", "uvloop"),
            _same(_arq),
            settings=("`max_jobs = 100` (default 10): the same concurrency as the others.",
                      UVLOOP_POLICY),
            notes=("Polls the queue every `poll_delay` = 0.5 s when idle (default); logs one "
                   "line per job at INFO (default). arq has no multi-process option, so four "
                   "processes are four `arq` workers. Results are kept 1 h (default).",),
            concurrency={p: "max_jobs 100 per process" for p in PROFILES},
        ),
        System(
            "saq", "SAQ", ("saq", "redis", "hiredis", "uvloop"),
            _same(_saq),
            settings=("`concurrency = 100` (default 10): the same concurrency as the others.",
                      UVLOOP_POLICY),
            notes=("`--workers 4` for four processes. Dequeues with a blocking BLMOVE.",),
            concurrency={p: "100 per process" for p in PROFILES},
        ),
        System(
            "dramatiq", "Dramatiq", ("dramatiq", "redis", "hiredis"),
            {"noop1": _dramatiq(8), "noop4": _dramatiq(8), "io": _dramatiq(100),
             "latency": _dramatiq(8)},
            settings=(
                "`--processes 1` or `4` (default: one per CPU): the process count under test.",
                "`--threads 100` for the I/O-bound test (default 8): Dramatiq runs "
                "actors in threads, so threads are its concurrency.",
            ),
            notes=("Its Redis consumer polls, backing off up to `dramatiq_worker_timeout` = "
                   "1 s when a queue is empty (default).",),
            concurrency={"noop1": "1 process x 8 threads", "noop4": "4 processes x 8 threads",
                         "io": "1 process x 100 threads", "latency": "1 process x 8 threads"},
        ),
        System(
            "taskiq", "taskiq", ("taskiq", "taskiq-redis", "redis", "hiredis", "uvloop"),
            _same(_taskiq),
            settings=(
                "`--workers 1` or `4` (default 2): the process count under test.",
                "`RedisStreamBroker` from taskiq-redis: the broker its README recommends, "
                "with acknowledgements.",
            ),
            notes=("`--max-async-tasks` is 100 by default. A supervisor process starts the "
                   "worker processes. Uses uvloop when installed (it is).",),
            concurrency={p: "max-async-tasks 100 per process" for p in PROFILES},
        ),
        System(
            "streaq", "streaQ", ("streaq", "coredis", "uvloop"),
            _same(_streaq),
            settings=("`concurrency = 100` (default 16): the same concurrency as the others.",
                      "`anyio_kwargs={\"use_uvloop\": True}` (default: the standard asyncio "
                      "loop): uvloop, as Corral uses by default and streaQ's own benchmarks "
                      "use."),
            notes=("Redis streams through coredis; logs two lines per task at INFO "
                   "(default); `--workers 4` for four processes.",),
            concurrency={p: "100 per process" for p in PROFILES},
        ),
    )
}

"""The four distributions as users install them: wheels built with ``python -m build``
and installed, not editable, into fresh venvs outside the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.workers import WorkerProcess

REPO = Path(__file__).resolve().parents[2]
DISTRIBUTIONS = {"corral": REPO, "corral-worker": REPO / "worker",
                 "corral-operator": REPO / "operator", "corral-dashboard": REPO / "dashboard"}


def run(argv: list[str], cwd: Path, timeout_s: float = 600,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout_s,
                          env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheels")
    for source in DISTRIBUTIONS.values():
        run([sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(source)],
            cwd=out)
    return out


def fresh_venv(root: Path, wheels: Path, *requirements: str) -> Path:
    run([sys.executable, "-m", "venv", str(root)], cwd=root.parent)
    python = root / "bin" / "python"
    run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--find-links", str(wheels), *requirements], cwd=root.parent)
    return python


def clean_env(venv_python: Path, **extra: str) -> dict[str, str]:
    """No PYTHONPATH and a cwd outside the checkout: only the venv answers imports."""
    keep = {k: v for k, v in os.environ.items() if k in ("HOME", "LANG", "TMPDIR")}
    return {**keep, "PATH": f"{venv_python.parent}:/usr/bin:/bin", **extra}


@pytest.fixture(scope="module")
def producer_venv(wheels: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fresh_venv(tmp_path_factory.mktemp("producer") / "venv", wheels, "corral")


@pytest.fixture(scope="module")
def full_venv(wheels: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fresh_venv(tmp_path_factory.mktemp("full") / "venv", wheels,
                      "corral[worker,operator,dashboard]")


def test_a_producer_install_pulls_only_what_enqueueing_needs(producer_venv: Path,
                                                             tmp_path: Path) -> None:
    probe = textwrap.dedent("""
        import importlib.util, corral
        heavy = ["kopf", "kubernetes_asyncio", "aiohttp", "prometheus_client",
                 "corral_worker", "corral_operator", "corral_dashboard"]
        print(corral.__file__)
        print(",".join(m for m in heavy if importlib.util.find_spec(m) is not None))
    """)
    where, found = run([str(producer_venv), "-c", probe], cwd=tmp_path,
                       env=clean_env(producer_venv)).stdout.splitlines()
    assert str(producer_venv.parents[1]) in where
    assert found == ""


def test_a_producer_enqueues_and_reads_results(producer_venv: Path, redis_url: str,
                                               tmp_path: Path) -> None:
    script = textwrap.dedent("""
        import asyncio, sys, corral
        async def main():
            async with corral.Client.from_url(sys.argv[1]) as client:
                handle = await client.enqueue("echo", [5])
                print(await handle.result(timeout=30))
        asyncio.run(main())
    """)
    worker = WorkerProcess(redis_url).wait_started()
    try:
        out = run([str(producer_venv), "-c", script, redis_url], cwd=tmp_path,
                  env=clean_env(producer_venv), timeout_s=60)
    finally:
        worker.close()
    assert out.stdout.strip() == str({"args": [5], "kwargs": {}})


def test_a_missing_component_names_its_install_command(producer_venv: Path,
                                                       tmp_path: Path) -> None:
    corral = producer_venv.parent / "corral"
    for command, extra in (("worker", "corral[worker]"), ("operator", "corral[operator]"),
                           ("dashboard", "corral[dashboard]")):
        proc = subprocess.run([str(corral), command, "app:app"], capture_output=True,
                              text=True, cwd=tmp_path, env=clean_env(producer_venv),
                              timeout=60)
        assert proc.returncode == 1
        assert proc.stderr.strip().splitlines() == [
            f"corral {command}: error: not installed here: pip install '{extra}'"]


@pytest.fixture
def app_dir(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "wheelapp.py").write_text(textwrap.dedent("""
        import corral
        app = corral.App()

        @app.task(name="double")
        async def double(n: int) -> int:
            return 2 * n
    """))
    yield tmp_path


def test_the_installed_worker_runs_tasks_with_the_packaged_lua(
        full_venv: Path, redis_url: str, app_dir: Path) -> None:
    corral = full_venv.parent / "corral"
    env = clean_env(full_venv)
    worker = subprocess.Popen(
        [str(corral), "worker", "wheelapp:app", "--redis-url", redis_url,
         "--metrics-port", "-1", "--worker-id", "wheel-worker"],
        cwd=app_dir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        enqueued = run([str(corral), "--redis-url", redis_url, "enqueue", "double",
                        "--args", "[21]", "--wait", "30"], cwd=app_dir, env=env, timeout_s=60)
    finally:
        worker.terminate()
        _, stderr = worker.communicate(timeout=60)
    assert enqueued.stdout.splitlines()[-1] == "42", stderr[-2000:]
    where = run([str(full_venv), "-c",
                 "import corral.scripts, corral_worker, corral_operator; "
                 "print(corral.scripts.__file__, corral_worker.__file__, "
                 "corral_operator.__file__)"], cwd=app_dir, env=env)
    assert all(str(full_venv.parents[1]) in path for path in where.stdout.split())


def test_the_installed_dashboard_serves_its_pages_and_static_files(
        full_venv: Path, redis_url: str, tmp_path: Path) -> None:
    import re
    import urllib.request

    dashboard = subprocess.Popen(
        [str(full_venv.parent / "corral"), "dashboard", "--redis-url", redis_url,
         "--port", "0"], cwd=tmp_path, env=clean_env(full_venv),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert dashboard.stderr is not None
        line = dashboard.stderr.readline()
        match = re.search(r"dashboard on (http://\S+/) ", line)
        assert match, line
        for path in ("", "static/dashboard.css", "static/dashboard.js", "api/queues"):
            with urllib.request.urlopen(match.group(1) + path, timeout=30) as response:
                assert response.status == 200, path
    finally:
        dashboard.terminate()
        dashboard.communicate(timeout=60)

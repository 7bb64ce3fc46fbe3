"""``@app.task`` returns a typed task: arguments are checked against the function's
signature by mypy, results are typed, and the task is still callable as the function."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import corral
from corral.errors import ConfigError

app = corral.App()


@app.task(name="typed.resize")
async def resize(image_id: str, width: int = 100) -> dict[str, int]:
    return {image_id: width}


@app.task(name="typed.report")
def report(day: str) -> str:
    return f"report {day}"


def test_a_task_is_still_the_function() -> None:
    assert asyncio.run(resize("a", width=3)) == {"a": 3}
    assert report("mon") == "report mon"
    assert resize.__name__ == "resize" and resize.name == "typed.resize"
    assert app.tasks["typed.resize"].fn is resize.fn


def test_enqueue_without_a_client_says_how_to_get_one() -> None:
    with pytest.raises(ConfigError, match=r"corral.Client\(\.\.\., app=app\)"):
        asyncio.run(resize.enqueue("a"))


USER_CODE = """
    import corral

    app = corral.App()

    @app.task
    async def resize(image_id: str, width: int = 100) -> dict[str, int]:
        return {image_id: width}

    @app.task(name="report")
    def report(day: str) -> str:
        return day

    async def main(client: corral.Client) -> None:
        handle = await resize.enqueue("img-1", width=5)
        size: dict[str, int] = await handle.result()
        text: str = await (await report.using(priority=5, client=client).enqueue("mon")).result()
        direct: dict[str, int] = await resize("img-2")
        %s
"""


def mypy(tmp_path: Path, line: str) -> subprocess.CompletedProcess[str]:
    source = tmp_path / "user_tasks.py"
    source.write_text(textwrap.dedent(USER_CODE % line))
    env = {"PATH": "/usr/bin:/bin"}
    package_root = Path(corral.__file__).resolve().parents[1]
    if package_root.name != "site-packages":  # a checkout: mypy cannot follow editable hooks
        env["MYPYPATH"] = str(package_root)
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(source)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_mypy_accepts_calls_that_match_the_signature(tmp_path: Path) -> None:
    checked = mypy(tmp_path, "pass")
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize(("line", "message"), [
    ('await resize.enqueue(42)',
     'No overload variant of "enqueue" of "Task" matches argument type "int"'),
    ('await resize.enqueue("a", height=3)', 'Unexpected keyword argument "height"'),
    ('n: int = await (await report.enqueue("mon")).result()',
     'Incompatible types in assignment (expression has type "str", variable has type "int")'),
])
def test_mypy_rejects_a_wrong_call(tmp_path: Path, line: str, message: str) -> None:
    checked = mypy(tmp_path, line)
    assert checked.returncode == 1, checked.stdout
    assert message in checked.stdout, checked.stdout

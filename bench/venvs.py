"""Create or refresh the benchmark virtualenvs from requirements-peers.txt.

    python bench/venvs.py [--print-dir]

One venv per system under ``${CORRAL_CACHE:-~/.cache/corral}/bench-venv/<name>``;
a venv is rebuilt only when its requirement lines (or pyproject.toml, for the
"corral" venv) change. Standard library only: it runs before any venv exists."""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REQUIREMENTS = REPO / "bench" / "requirements-peers.txt"
# Corral's own venv holds its distributions, editable: the core, the worker, the operator.
CORRAL_SOURCES = (REPO, REPO / "worker", REPO / "operator")
_VENV_TAG = re.compile(r"#\s*venv:\s*([a-z0-9_, -]+?)\s*(?:\(|$)")


def cache_dir() -> Path:
    return Path(os.environ.get("CORRAL_CACHE") or Path.home() / ".cache" / "corral")


def venv_root() -> Path:
    return cache_dir() / "bench-venv"


def parse_requirements(text: str) -> dict[str, list[str]]:
    """Requirement specs per venv name, from lines like ``rq==3.0.0  # venv: rq``."""
    by_venv: dict[str, list[str]] = {}
    for line in text.splitlines():
        spec, _, comment = line.partition("#")
        spec = spec.strip()
        if not spec:
            continue
        match = _VENV_TAG.search("#" + comment)
        if not match:
            raise SystemExit(f"{REQUIREMENTS.name}: no '# venv:' tag on line: {line}")
        for name in match.group(1).split(","):
            by_venv.setdefault(name.strip(), []).append(spec)
    return by_venv


def _stamp(specs: list[str], name: str) -> str:
    digest = hashlib.sha256("\n".join(specs).encode())
    digest.update(sys.version.encode())
    if name == "corral":
        for source in CORRAL_SOURCES:
            digest.update((source / "pyproject.toml").read_bytes())
    return digest.hexdigest()


def ensure(name: str, specs: list[str]) -> Path:
    path = venv_root() / name
    stamp_file = path / ".bench-stamp"
    stamp = _stamp(specs, name)
    if stamp_file.exists() and stamp_file.read_text() == stamp:
        return path
    print(f"bench: preparing the {name} venv at {path}", file=sys.stderr, flush=True)
    venv_root().mkdir(parents=True, exist_ok=True)
    if not (path / "bin" / "python").exists():
        _quietly([sys.executable, "-m", "venv", str(path)])
    pip = [str(path / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
    _quietly([*pip, "--upgrade", "pip"])
    extra = [arg for source in CORRAL_SOURCES for arg in ("-e", str(source))] \
        if name == "corral" else []
    _quietly([*pip, *specs, *extra])
    stamp_file.write_text(stamp)
    return path


def _quietly(argv: list[str]) -> None:
    """Run a command, showing its output only when it fails."""
    # Away from the checkout: its operator/ folder would shadow the standard library's.
    proc = subprocess.run(argv, cwd=venv_root(), env={**os.environ, "PYTHONSAFEPATH": "1"},
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"bench: failed ({proc.returncode}): {' '.join(argv)}")


def import_root() -> Path:
    """A directory holding only a ``bench`` link to this folder: on PYTHONPATH it makes
    ``bench`` importable without putting the checkout's operator/ before the stdlib."""
    root = venv_root() / "path"
    link = root / "bench"
    root.mkdir(parents=True, exist_ok=True)
    target = REPO / "bench"
    if not link.is_symlink() or link.resolve() != target:
        if link.is_symlink():
            link.unlink()
        link.symlink_to(target, target_is_directory=True)
    return root


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--print-dir", action="store_true", help="print the venv root and exit")
    parser.add_argument("--only", default="", help="comma-separated venv names")
    args = parser.parse_args()
    if args.print_dir:
        print(venv_root())
        return
    import_root()
    wanted = {n for n in args.only.split(",") if n}
    for name, specs in parse_requirements(REQUIREMENTS.read_text()).items():
        if not wanted or name in wanted or name == "corral":
            ensure(name, specs)


if __name__ == "__main__":
    main()

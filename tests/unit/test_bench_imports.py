"""Every benchmark script imports: they are run by hand, not by the suite, so a name
moved or removed elsewhere would otherwise break one unnoticed."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
SCRIPTS = sorted(p.stem for p in BENCH.glob("*.py")
                 if 'if __name__ == "__main__":' in p.read_text())


def test_there_are_scripts() -> None:
    assert len(SCRIPTS) > 10


@pytest.mark.parametrize("name", SCRIPTS)
def test_the_script_imports(name: str) -> None:
    importlib.import_module(f"bench.{name}")

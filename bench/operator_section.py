"""The operator's reaction time, measured by ``bench/operator_reaction.py`` on the
real test control plane when its binaries are built; otherwise a note of why not.

Contract with that script: ``python bench/operator_reaction.py --json PATH
[--quick]``, exit 0, and PATH holding a JSON object. Its scalar fields are shown
as a table; a ``markdown`` field, if present, is put into the doc as it is."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from bench.venvs import REPO, import_root, venv_root

SCRIPT = REPO / "bench" / "operator_reaction.py"
REQUIRED = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok",
            "kubectl")
TIMEOUT_S = 1800


def control_plane_bin_dir() -> tuple[Path | None, str]:
    """The built control plane's bin directory, or None and the reason it is unusable."""
    explicit = os.environ.get("CORRAL_K8S_BIN_DIR")
    if explicit:
        bin_dir = Path(explicit)
    else:
        build = REPO / "scripts" / "k8s" / "build"
        if not build.exists():
            return None, "scripts/k8s/build is missing"
        try:
            out = subprocess.run([str(build), "--print-bin-dir"], capture_output=True,
                                 text=True, check=True, timeout=60)
        except (subprocess.SubprocessError, OSError) as exc:
            return None, f"scripts/k8s/build --print-bin-dir failed: {exc}"
        bin_dir = Path(out.stdout.strip())
    missing = [b for b in REQUIRED if not (bin_dir / b).exists()]
    if missing:
        return None, (f"control plane binaries not built ({', '.join(missing)} missing in "
                      f"{bin_dir}); run scripts/k8s/build")
    return bin_dir, ""


def run(out_dir: Path, quick: bool = False) -> dict[str, Any]:
    if not SCRIPT.exists():
        return _skipped("bench/operator_reaction.py is not present")
    bin_dir, reason = control_plane_bin_dir()
    if bin_dir is None:
        return _skipped(reason)
    json_path = out_dir / "operator.json"
    log_path = out_dir / "logs" / "operator_reaction.log"
    argv = [str(venv_root() / "corral" / "bin" / "python"), str(SCRIPT), "--json", str(json_path)]
    if quick:
        argv.append("--quick")
    env = {**os.environ, "CORRAL_K8S_BIN_DIR": str(bin_dir), "PYTHONPATH": str(import_root())}
    print("operator reaction time on the test control plane", flush=True)
    try:
        with open(log_path, "ab") as log:
            proc = subprocess.run(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return {"status": "failed", "reason": f"no result within {TIMEOUT_S} s"}
    if proc.returncode != 0 or not json_path.exists():
        tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
        return {"status": "failed",
                "reason": f"exit {proc.returncode}: {' | '.join(tail) or 'no output'}"}
    try:
        data = json.loads(json_path.read_text())
    except ValueError as exc:
        return {"status": "failed", "reason": f"unreadable {json_path.name}: {exc}"}
    print("  done", flush=True)
    return {"status": "measured", "data": data}


def _skipped(reason: str) -> dict[str, Any]:
    print(f"operator reaction time: skipped ({reason})", flush=True)
    return {"status": "skipped", "reason": reason}


KARPENTER_FIGURES = REPO / "bench" / "karpenter.json"


def karpenter_figures() -> dict[str, Any] | None:
    """The last figures of ``bench/karpenter.py`` (kept in the repository: that run
    needs a control plane of its own and several minutes), or None."""
    if not KARPENTER_FIGURES.exists():
        return None
    figures: dict[str, Any] = json.loads(KARPENTER_FIGURES.read_text())
    return figures

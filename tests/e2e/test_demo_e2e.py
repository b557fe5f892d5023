"""`make demo`, the project's main command, run as a new user runs it: on a fresh cluster of
its own, then again on the same cluster (it must be idempotent), then `make demo-down`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from harness import REPO

pytestmark = pytest.mark.e2e


def make(target: str, run_dir: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "EGPU_RUN_DIR")}
    return subprocess.run(
        ["make", "--no-print-directory", target, f"DEMO_RUN_DIR={run_dir}"],
        cwd=REPO,
        env=env,
        text=True,
        capture_output=True,
        timeout=timeout,
    )


def processes_under(run_dir: Path) -> list[str]:
    """Command lines of the live processes that name anything under the run directory."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(run_dir) in cmdline:
            found.append(f"{proc.name}: {cmdline[:200]}")
    return found


def check_demo_output(run: subprocess.CompletedProcess[str]) -> None:
    out = run.stdout
    assert run.returncode == 0, f"make demo exited {run.returncode}:\n{out[-3000:]}\n{run.stderr}"
    plan = out.split("What-if:", 1)[1]
    assert "PLACEABLE: 8/8 pods, 64 GPUs" in plan, plan[:1500]
    assert "UNSCHEDULABLE" not in plan.split("== ", 1)[0], plan[:1500]
    assert "llm-pretrain: Running" in out, out[-3000:]
    assert "healthz: " in out and "healthz: DOWN" not in out, out[-3000:]


def test_make_demo_fresh_then_again_then_down_leaves_nothing(tmp_path: Path) -> None:
    run_dir = tmp_path / "demo"
    try:
        first = make("demo", run_dir, timeout=600)
        check_demo_output(first)
        second = make("demo", run_dir, timeout=600)
        check_demo_output(second)
        assert "already running" in second.stdout
    finally:
        down = make("demo-down", run_dir, timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert processes_under(run_dir) == []

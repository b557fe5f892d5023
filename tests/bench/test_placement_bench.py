"""Smoke test of the placement benchmark: `--quick` runs and reports what the Makefile reads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.bench

ROOT = Path(__file__).resolve().parents[2]


def test_quick_placement_benchmark_reports_its_figures() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "bench" / "placement.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    for key in ("p50_ms", "p99_ms", "smallest_domain_pct", "stranded_gpus"):
        assert key in report, key
    assert 0 < report["p50_ms"] <= report["p99_ms"]
    assert 0 <= report["smallest_domain_pct"] <= 100
    assert report["stranded_gpus"] >= 0
    assert report["placed"] > 0
    assert "baseline_smallest_domain_pct" in report

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


def test_cases_only_scores_every_case_at_the_best_answer() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "bench" / "placement.py"), "--cases-only"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["cases_total"] >= 10
    assert report["cases_failed"] == [], run.stdout
    assert report["cases_passed"] == report["cases_total"]
    assert report["cases_score"] == 1.0
    assert "p99_ms" not in report  # the timed parts did not run

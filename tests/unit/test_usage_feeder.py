"""hack/image/usage_feeder.py: when it may take its next memory step."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "hack" / "image"))
import usage_feeder

pytestmark = pytest.mark.unit
MIB = usage_feeder.MIB


def test_a_step_waits_for_a_limit_with_margin_above_it() -> None:
    assert usage_feeder.fits(950, 1024 * MIB)
    assert not usage_feeder.fits(1000, 1024 * MIB)  # 1000 + 64 > 1024
    assert usage_feeder.fits(1950, 2048 * MIB)
    assert usage_feeder.fits(10_000, None)  # no limit


def test_memory_limit_reads_cgroup_v2_and_max(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    v2 = tmp_path / "memory.max"
    monkeypatch.setattr(usage_feeder, "LIMIT_FILES", (tmp_path / "absent", v2))
    assert usage_feeder.memory_limit() is None
    v2.write_text("2147483648\n")
    assert usage_feeder.memory_limit() == 2 * 1024 * MIB
    v2.write_text("max\n")
    assert usage_feeder.memory_limit() is None


def resident_bytes() -> int:
    fields = Path("/proc/self/status").read_text().split("VmRSS:", 1)[1].split()
    return int(fields[0]) * 1024  # kB


def test_a_rise_is_resident_when_hold_returns() -> None:
    """One call allocates the whole step: the use has risen when the feeder says so."""
    before = resident_bytes()
    region = usage_feeder.hold(64)
    assert resident_bytes() - before >= 60 * MIB
    region.close()

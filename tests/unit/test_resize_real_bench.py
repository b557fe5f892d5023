"""hack/bench/resize_real.py: what it reads from a container's cgroup and a pod's status."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from egpu.engines.resize import ResizePolicy
from egpu.engines.resize.rules import grows_beyond_band, wanted_request

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "hack"))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "hack" / "bench"))
import resize_real

pytestmark = pytest.mark.unit
GIB = 1 << 30


def test_working_set_is_usage_less_inactive_file_pages(tmp_path: Path) -> None:
    (tmp_path / "memory.usage_in_bytes").write_text(f"{GIB}\n")
    (tmp_path / "memory.stat").write_text(
        "cache 300\ninactive_file 999999\ntotal_cache 300\ntotal_inactive_file 100\n"
    )
    assert resize_real.working_set(tmp_path / "memory.limit_in_bytes") == GIB - 100


def test_the_clock_starts_where_the_engine_starts_to_grow() -> None:
    """The bench's threshold is the engine's: just below it a 1 GiB pod keeps its size."""
    policy = ResizePolicy()

    def grows(use: float) -> bool:
        wanted = wanted_request(use, policy.memory.target_utilization)
        return grows_beyond_band(GIB, wanted, policy.hysteresis)

    assert grows(resize_real.GROWTH_SHARE * GIB * 1.001)
    assert not grows(resize_real.GROWTH_SHARE * GIB * 0.999)


def pod(spec: str, shown: str | None, conditions: tuple[str, ...] = ()) -> dict[str, Any]:
    status: dict[str, Any] = {"conditions": [{"type": c, "status": "True"} for c in conditions]}
    if shown is not None:
        status["containerStatuses"] = [{"resources": {"limits": {"memory": shown}}}]
    return {
        "spec": {"containers": [{"resources": {"limits": {"memory": spec}}}]},
        "status": status,
    }


def test_a_resize_is_settled_when_the_status_shows_the_spec_and_nothing_is_under_way() -> None:
    assert resize_real.settled(pod("2Gi", "2Gi")) == "2Gi"
    assert resize_real.settled(pod("2Gi", "1Gi")) is None
    assert resize_real.settled(pod("2Gi", "2Gi", ("PodResizeInProgress",))) is None
    assert resize_real.settled(pod("2Gi", None)) is None

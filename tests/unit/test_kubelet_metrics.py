"""Parsing the kubelet's /metrics/resource text and CPU use from counter deltas."""

from __future__ import annotations

from pathlib import Path

import pytest

from egpu.domain.kubelet_metrics import (
    ContainerReading,
    CpuCounter,
    cpu_millicores,
    parse_resource_metrics,
)

SAMPLE = (Path(__file__).parent / "data" / "kubelet_metrics_resource.txt").read_text()

pytestmark = pytest.mark.unit


def test_reads_cpu_and_memory_of_each_container() -> None:
    readings = parse_resource_metrics(SAMPLE)
    assert readings[("default", "grow-0", "feeder")] == ContainerReading(
        cpu_seconds=3.781204, memory_bytes=1073917952.0, at=1764745201.123
    )
    assert readings[("default", "grow-0", "sidecar")] == ContainerReading(
        cpu_seconds=0.021, memory_bytes=352256.0, at=1764745200.987
    )


def test_escaped_label_values_are_unescaped() -> None:
    readings = parse_resource_metrics(SAMPLE)
    assert readings[("team-a", 'weird"name', "main")].memory_bytes == 4096


def test_nan_lines_without_labels_and_other_series_are_skipped() -> None:
    readings = parse_resource_metrics(SAMPLE)
    assert ("default", "grow-0", "broken") not in readings
    assert set(readings) == {
        ("default", "grow-0", "feeder"),
        ("default", "grow-0", "sidecar"),
        ("team-a", 'weird"name', "main"),
    }


def test_garbage_and_empty_text_give_no_readings() -> None:
    assert parse_resource_metrics("") == {}
    assert parse_resource_metrics("container_cpu_usage_seconds_total{oops\n<html>") == {}


def test_a_container_with_only_memory_has_no_cpu() -> None:
    text = 'container_memory_working_set_bytes{container="c",namespace="n",pod="p"} 10\n'
    assert parse_resource_metrics(text) == {
        ("n", "p", "c"): ContainerReading(cpu_seconds=None, memory_bytes=10.0, at=None)
    }


def test_cpu_millicores_from_two_counter_readings() -> None:
    assert cpu_millicores(CpuCounter(10.0, 100.0), CpuCounter(11.5, 102.0)) == pytest.approx(750)


@pytest.mark.parametrize(
    "previous",
    [None, CpuCounter(10.0, 102.0), CpuCounter(12.0, 100.0)],
    ids=["no-earlier", "same-time", "counter-went-back"],
)
def test_cpu_millicores_unknown(previous: CpuCounter | None) -> None:
    assert cpu_millicores(previous, CpuCounter(11.5, 102.0)) is None

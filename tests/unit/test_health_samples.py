"""Parsing NVML-shaped readings into GPU facts and health samples."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from egpu.engines.health.samples import interconnect_annotation, nvlink_groups, parse_reading

pytestmark = pytest.mark.unit
DATA = Path(__file__).resolve().parents[1] / "data" / "nvml"


def frames(name: str) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = json.loads((DATA / name).read_text())["frames"]
    return frames


def test_hgx_board_facts() -> None:
    reading = parse_reading(frames("hgx-h100-8.json")[0])
    assert reading.driver_version == "550.54.15"
    assert len(reading.gpus) == 8
    g = reading.gpus[4]
    assert g.name == "NVIDIA H100 80GB HBM3"
    assert g.memory_bytes == 85520809984
    assert g.uuid.startswith("GPU-")
    assert g.pci_bus_id == "00000000:9a:00.0"  # one spelling for every bus id
    assert g.numa_node == 1
    assert len(g.nvlinks) == 18 and all(x.remote_type == "switch" for x in g.nvlinks)


def test_gpus_on_one_nvswitch_fabric_are_one_nvlink_group() -> None:
    reading = parse_reading(frames("hgx-h100-8.json")[0])
    assert nvlink_groups(reading.gpus) == ((0, 1, 2, 3, 4, 5, 6, 7),)
    assert interconnect_annotation(reading.gpus) == {
        "nvlinkGroups": [[0, 1, 2, 3, 4, 5, 6, 7]],
        "numa": [0, 0, 0, 0, 1, 1, 1, 1],
    }


def test_bridged_pairs_are_groups_even_with_bus_ids_spelled_differently() -> None:
    reading = parse_reading(frames("pcie-h100nvl-4-lost.json")[0])
    # the recording names remote GPUs as 0000:31:00.0, NVML's own ids as 00000000:31:00.0
    assert nvlink_groups(reading.gpus) == ((0, 1), (2, 3))


def test_inactive_links_and_unknown_peers_join_nothing() -> None:
    raw = frames("pcie-h100nvl-4-lost.json")[0]
    for link in raw["gpus"][0]["nvlinks"]:
        link["active"] = False
    raw["gpus"][2]["nvlinks"][0]["remotePciBusId"] = "00000000:ff:00.0"
    for link in raw["gpus"][1]["nvlinks"]:
        link["active"] = False
    reading = parse_reading(raw)
    assert nvlink_groups(reading.gpus) == ((0,), (1,), (2, 3))


def test_health_counters_are_read() -> None:
    reading = parse_reading(frames("hgx-h100-8.json")[1])
    s = reading.samples[2]
    assert s.nvlink_crc == 3 and s.nvlink_replay == 0 and s.nvlink_recovery == 0
    assert s.ecc_aggregate.corrected == 2 and s.ecc_volatile.uncorrected == 0
    assert s.remapped_correctable == 1 and not s.remap_pending
    assert reading.samples[5].throttle_reasons == 1
    assert s.nvlinks_active == 18
    assert s.timestamp == pytest.approx(1764700010.02)


def test_a_lost_gpu_is_read_as_an_error_with_its_xid() -> None:
    reading = parse_reading(frames("pcie-h100nvl-4-lost.json")[1])
    lost = reading.samples[3]
    assert lost.error == "GPU_IS_LOST"
    assert [x.xid for x in lost.xids] == [79]
    assert reading.gpus[3].uuid == ""  # nothing else could be read


def test_nvml_unreachable_reading() -> None:
    reading = parse_reading({"timestamp": 5.0, "nvmlError": "Driver Not Loaded", "gpus": []})
    assert reading.nvml_error == "Driver Not Loaded" and reading.samples == ()


def test_missing_counters_are_unknown_not_zero() -> None:
    reading = parse_reading({"timestamp": 1.0, "gpus": [{"index": 0}]})
    s = reading.samples[0]
    assert s.ecc_volatile.uncorrected is None and s.nvlink_crc is None
    assert s.temperature_c is None and s.nvlinks_active is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.pop("timestamp"), "reading.timestamp is missing"),
        (lambda r: r["gpus"][0].update(index=-1), "reading.gpus[0].index must not be negative"),
        (lambda r: r["gpus"][1].update(index=0), "GPU index 0 appears twice"),
        (lambda r: r["gpus"][0].update(temperature="hot"), "gpus[0].temperature must be an int"),
        (
            lambda r: r["gpus"][0]["ecc"]["volatile"].update(uncorrected=True),
            "ecc.volatile.uncorrected must be an integer",
        ),
        (lambda r: r["gpus"][0]["xids"].append({"xid": "x"}), "xids[0].xid must be an integer"),
        (lambda r: r["gpus"][0]["nvlinks"][0].update(remoteType="cpu"), "remoteType must be"),
        (lambda r: r["gpus"].pop(0), "indices [1, 2, 3, 4, 5, 6, 7] are not 0..6"),
        (lambda r: r.update(gpus={}), "reading.gpus must be a list"),
    ],
)
def test_bad_readings_are_refused_naming_the_field(change: Any, message: str) -> None:
    raw = copy.deepcopy(frames("hgx-h100-8.json")[0])
    change(raw)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_reading(raw)

"""Typed GPU facts and health samples, parsed from one NVML-shaped reading.

A reading is the JSON the node agent's NVML reader produces (and what recordings for
the simulated agent hold), one per poll:

    {"timestamp": 1764700000.0, "driverVersion": "550.54.15", "nvmlError": null,
     "gpus": [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-...",
               "pciBusId": "00000000:18:00.0", "memoryTotal": 85520809984, "numaNode": 0,
               "timestamp": 1764700000.0, "error": null,
               "nvlinks": [{"link": 0, "active": true, "remoteType": "gpu",
                            "remotePciBusId": "00000000:2A:00.0"}],
               "temperature": 41, "powerUsage": 71234, "throttleReasons": 0,
               "ecc": {"volatile": {"corrected": 0, "uncorrected": 0},
                       "aggregate": {"corrected": 0, "uncorrected": 0}},
               "retiredPages": {"sbe": 0, "dbe": 0, "pending": false},
               "remappedRows": {"correctable": 0, "uncorrectable": 0,
                                "pending": false, "failure": false},
               "nvlinkErrors": {"crc": 0, "replay": 0, "recovery": 0},
               "xids": [{"xid": 79, "timestamp": 1764699999.5}]}]}

Fields NVML cannot answer on a GPU (no ECC on consumer boards, no remapping before
Ampere) are null or absent. Bad input raises ValueError naming the field.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# nvmlClocksThrottleReasons bits (nvml.h) that mean the hardware slowed the GPU down.
THROTTLE_HW_SLOWDOWN = 0x8
THROTTLE_SW_THERMAL = 0x20
THROTTLE_HW_THERMAL = 0x40
THROTTLE_HW_POWER_BRAKE = 0x80
THROTTLE_NAMES = {
    THROTTLE_HW_SLOWDOWN: "HwSlowdown",
    THROTTLE_SW_THERMAL: "SwThermalSlowdown",
    THROTTLE_HW_THERMAL: "HwThermalSlowdown",
    THROTTLE_HW_POWER_BRAKE: "HwPowerBrakeSlowdown",
}


@dataclass(frozen=True, slots=True)
class NvLink:
    link: int
    active: bool
    remote_type: str  # "gpu", "switch" or "unknown"
    remote_pci_bus_id: str | None


@dataclass(frozen=True, slots=True)
class GpuFacts:
    """What a GPU is and where it sits: read once, published as inventory."""

    index: int
    name: str
    uuid: str
    pci_bus_id: str
    memory_bytes: int
    numa_node: int | None
    nvlinks: tuple[NvLink, ...] = ()


@dataclass(frozen=True, slots=True)
class EccCounts:
    corrected: int | None = None
    uncorrected: int | None = None


@dataclass(frozen=True, slots=True)
class XidEvent:
    xid: int
    timestamp: float


@dataclass(frozen=True, slots=True)
class GpuSample:
    """One GPU's health readings at one poll. `error` is NVML's answer when the GPU
    could not be read (`GPU_IS_LOST`: fallen off the bus)."""

    index: int
    timestamp: float
    error: str | None = None
    temperature_c: int | None = None
    power_mw: int | None = None
    throttle_reasons: int = 0
    ecc_volatile: EccCounts = EccCounts()
    ecc_aggregate: EccCounts = EccCounts()
    retired_sbe: int | None = None
    retired_dbe: int | None = None
    retirement_pending: bool = False
    remapped_correctable: int | None = None
    remapped_uncorrectable: int | None = None
    remap_pending: bool = False
    remap_failure: bool = False
    nvlink_crc: int | None = None
    nvlink_replay: int | None = None
    nvlink_recovery: int | None = None
    nvlinks_active: int | None = None
    xids: tuple[XidEvent, ...] = ()


@dataclass(frozen=True, slots=True)
class NodeReading:
    """One poll of every GPU on a node. `nvml_error` set: NVML itself did not answer
    (driver gone, library missing); then `samples` is empty."""

    timestamp: float
    gpus: tuple[GpuFacts, ...]
    samples: tuple[GpuSample, ...]
    nvml_error: str | None = None
    driver_version: str | None = None


# -- parsing ------------------------------------------------------------------------


def _obj(value: object, what: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} must be an object, got {value!r}")
    return value


def _int(value: object, what: str, *, optional: bool = True) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    return value


def _count(value: object, what: str) -> int | None:
    n = _int(value, what)
    if n is not None and n < 0:
        raise ValueError(f"{what} must not be negative, got {n}")
    return n


def _num(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number, got {value!r}")
    return float(value)


def _bool(value: object, what: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ValueError(f"{what} must be true or false, got {value!r}")
    return value


def _str(value: object, what: str, *, optional: bool = True) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, got {value!r}")
    return value


def _list(value: object, what: str) -> Sequence[Any]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ValueError(f"{what} must be a list, got {value!r}")
    return value


def _ecc(raw: object, what: str) -> EccCounts:
    data = _obj(raw, what)
    return EccCounts(
        _count(data.get("corrected"), f"{what}.corrected"),
        _count(data.get("uncorrected"), f"{what}.uncorrected"),
    )


def _facts(raw: Mapping[str, Any], where: str) -> GpuFacts:
    index = _count(raw.get("index"), f"{where}.index")
    if index is None:
        raise ValueError(f"{where}.index is missing")
    links = []
    for i, link in enumerate(_list(raw.get("nvlinks"), f"{where}.nvlinks")):
        at = f"{where}.nvlinks[{i}]"
        data = _obj(link, at)
        kind = _str(data.get("remoteType"), f"{at}.remoteType") or "unknown"
        if kind not in ("gpu", "switch", "unknown"):
            raise ValueError(f"{at}.remoteType must be gpu, switch or unknown, got {kind!r}")
        links.append(
            NvLink(
                link=_count(data.get("link"), f"{at}.link") or 0,
                active=_bool(data.get("active"), f"{at}.active"),
                remote_type=kind,
                remote_pci_bus_id=_norm_bus(_str(data.get("remotePciBusId"), f"{at}.remote")),
            )
        )
    return GpuFacts(
        index=index,
        name=_str(raw.get("name"), f"{where}.name") or "",
        uuid=_str(raw.get("uuid"), f"{where}.uuid") or "",
        pci_bus_id=_norm_bus(_str(raw.get("pciBusId"), f"{where}.pciBusId")) or "",
        memory_bytes=_count(raw.get("memoryTotal"), f"{where}.memoryTotal") or 0,
        numa_node=_int(raw.get("numaNode"), f"{where}.numaNode"),
        nvlinks=tuple(links),
    )


def _norm_bus(bus: str | None) -> str | None:
    """PCI bus ids as NVML spells them differ in case and domain width
    ("0000:18:00.0" vs "00000000:18:00.0"): compare them in one form."""
    if bus is None:
        return None
    text = bus.strip().lower()
    domain, sep, rest = text.partition(":")
    if sep and rest.count(":") == 1:
        return f"{int(domain or '0', 16):08x}:{rest}"
    return text


def _sample(raw: Mapping[str, Any], index: int, default_ts: float, where: str) -> GpuSample:
    ts_raw = raw.get("timestamp")
    ts = default_ts if ts_raw is None else _num(ts_raw, f"{where}.timestamp")
    retired = _obj(raw.get("retiredPages"), f"{where}.retiredPages")
    rows = _obj(raw.get("remappedRows"), f"{where}.remappedRows")
    links = _obj(raw.get("nvlinkErrors"), f"{where}.nvlinkErrors")
    ecc = _obj(raw.get("ecc"), f"{where}.ecc")
    xids = []
    for i, event in enumerate(_list(raw.get("xids"), f"{where}.xids")):
        at = f"{where}.xids[{i}]"
        data = _obj(event, at)
        xid = _count(data.get("xid"), f"{at}.xid")
        if xid is None:
            raise ValueError(f"{at}.xid is missing")
        when = data.get("timestamp")
        xids.append(XidEvent(xid, ts if when is None else _num(when, f"{at}.timestamp")))
    active = [
        bool(_obj(link, f"{where}.nvlinks").get("active"))
        for link in _list(raw.get("nvlinks"), f"{where}.nvlinks")
    ]
    return GpuSample(
        index=index,
        timestamp=ts,
        error=_str(raw.get("error"), f"{where}.error"),
        temperature_c=_int(raw.get("temperature"), f"{where}.temperature"),
        power_mw=_count(raw.get("powerUsage"), f"{where}.powerUsage"),
        throttle_reasons=_count(raw.get("throttleReasons"), f"{where}.throttleReasons") or 0,
        ecc_volatile=_ecc(ecc.get("volatile"), f"{where}.ecc.volatile"),
        ecc_aggregate=_ecc(ecc.get("aggregate"), f"{where}.ecc.aggregate"),
        retired_sbe=_count(retired.get("sbe"), f"{where}.retiredPages.sbe"),
        retired_dbe=_count(retired.get("dbe"), f"{where}.retiredPages.dbe"),
        retirement_pending=_bool(retired.get("pending"), f"{where}.retiredPages.pending"),
        remapped_correctable=_count(rows.get("correctable"), f"{where}.remappedRows.correctable"),
        remapped_uncorrectable=_count(
            rows.get("uncorrectable"), f"{where}.remappedRows.uncorrectable"
        ),
        remap_pending=_bool(rows.get("pending"), f"{where}.remappedRows.pending"),
        remap_failure=_bool(rows.get("failure"), f"{where}.remappedRows.failure"),
        nvlink_crc=_count(links.get("crc"), f"{where}.nvlinkErrors.crc"),
        nvlink_replay=_count(links.get("replay"), f"{where}.nvlinkErrors.replay"),
        nvlink_recovery=_count(links.get("recovery"), f"{where}.nvlinkErrors.recovery"),
        nvlinks_active=sum(active) if active else None,
        xids=tuple(xids),
    )


def parse_reading(raw: object) -> NodeReading:
    """Parse one NVML-shaped reading (see the module docstring)."""
    data = _obj(raw, "reading")
    if "timestamp" not in data:
        raise ValueError("reading.timestamp is missing")
    ts = _num(data.get("timestamp"), "reading.timestamp")
    nvml_error = _str(data.get("nvmlError"), "reading.nvmlError")
    facts: list[GpuFacts] = []
    samples: list[GpuSample] = []
    seen: set[int] = set()
    for i, gpu in enumerate(_list(data.get("gpus"), "reading.gpus")):
        where = f"reading.gpus[{i}]"
        raw_gpu = _obj(gpu, where)
        fact = _facts(raw_gpu, where)
        if fact.index in seen:
            raise ValueError(f"{where}: GPU index {fact.index} appears twice")
        seen.add(fact.index)
        facts.append(fact)
        samples.append(_sample(raw_gpu, fact.index, ts, where))
    if nvml_error is None and sorted(seen) != list(range(len(seen))):
        raise ValueError(f"reading.gpus: indices {sorted(seen)} are not 0..{len(seen) - 1}")
    return NodeReading(
        timestamp=ts,
        gpus=tuple(facts),
        samples=tuple(samples) if nvml_error is None else (),
        nvml_error=nvml_error,
        driver_version=_str(data.get("driverVersion"), "reading.driverVersion"),
    )


def nvlink_groups(gpus: Sequence[GpuFacts]) -> tuple[tuple[int, ...], ...]:
    """GPUs joined by active NVLinks, as groups of indices (sorted). Links to an
    NVSwitch join every GPU on the switch fabric; a GPU with no active link is a group
    of its own. Links naming a PCI bus id no GPU here has are ignored."""
    parent = {g.index: g.index for g in gpus}

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(a: int, b: int) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    by_bus = {g.pci_bus_id: g.index for g in gpus if g.pci_bus_id}
    on_switch = [
        g.index for g in gpus if any(x.active and x.remote_type == "switch" for x in g.nvlinks)
    ]
    for a, b in itertools.pairwise(on_switch):
        join(a, b)
    for g in gpus:
        for link in g.nvlinks:
            if link.active and link.remote_type != "switch" and link.remote_pci_bus_id in by_bus:
                join(g.index, by_bus[link.remote_pci_bus_id])
    groups: dict[int, list[int]] = {}
    for g in sorted(gpus, key=lambda g: g.index):
        groups.setdefault(find(g.index), []).append(g.index)
    return tuple(sorted(tuple(v) for v in groups.values()))


def interconnect_annotation(gpus: Sequence[GpuFacts]) -> dict[str, list[Any]]:
    """The `egpu.io/gpu-interconnect` value the placement engine reads."""
    ordered = sorted(gpus, key=lambda g: g.index)
    return {
        "nvlinkGroups": [list(g) for g in nvlink_groups(ordered)],
        "numa": [
            g.numa_node if g.numa_node is not None and g.numa_node >= 0 else 0 for g in ordered
        ],
    }

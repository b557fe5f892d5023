"""The simulated agent's GPUs: NVML-shaped readings for a KWOK node, replayed from a
recording (or made up healthy from the node's own labels), with faults injected at
chosen times.

A fault: `AT[+FOR]:NODE:GPU:KIND[=VALUE]`, seconds from the agent's start, `*` for
every node or GPU; `FOR` bounds faults that are states (a lost GPU, a pending remap,
heat), counters (ECC, NVLink) and XIDs happen once. Kinds: xid=N, dbe[=N], sbe[=N],
lost, nvml-down, stall, remap-pending, remap-failure, retire-pending, temp=C,
throttle, nvlink-down, nvlink-recovery[=N].
"""

from __future__ import annotations

import copy
import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KINDS = {
    "xid": "once",
    "dbe": "once",
    "sbe": "once",
    "nvlink-recovery": "once",
    "lost": "state",
    "nvml-down": "state",
    "stall": "state",
    "remap-pending": "state",
    "remap-failure": "state",
    "retire-pending": "state",
    "temp": "state",
    "throttle": "state",
    "nvlink-down": "state",
}


@dataclass(frozen=True, slots=True)
class Fault:
    at: float
    node: str  # "*": every node
    gpu: int | None  # None: every GPU
    kind: str
    value: int | None = None
    duration: float | None = None

    def applies(self, node: str, gpu: int) -> bool:
        return self.node in ("*", node) and self.gpu in (None, gpu)

    def active(self, t: float) -> bool:
        return t >= self.at and (self.duration is None or t < self.at + self.duration)


def parse_fault(text: str) -> Fault:
    parts = text.split(":")
    if len(parts) != 4:
        raise ValueError(f"fault {text!r}: expected AT[+FOR]:NODE:GPU:KIND[=VALUE]")
    when, node, gpu, what = parts
    at_text, _, for_text = when.partition("+")
    kind, _, value = what.partition("=")
    if kind not in KINDS:
        raise ValueError(f"fault {text!r}: unknown kind {kind!r} (one of {sorted(KINDS)})")
    try:
        return Fault(
            at=float(at_text),
            node=node or "*",
            gpu=None if gpu in ("*", "") else int(gpu),
            kind=kind,
            value=int(value) if value else None,
            duration=float(for_text) if for_text else None,
        )
    except ValueError:
        raise ValueError(f"fault {text!r}: AT, FOR, GPU and VALUE must be numbers") from None


def load_recording(path: str | Path) -> list[dict[str, Any]]:
    """A recording: a JSON object {"frames": [reading, ...]} or one reading."""
    data = json.loads(Path(path).read_text())
    frames = data.get("frames") if isinstance(data, dict) and "frames" in data else [data]
    if not isinstance(frames, list) or not frames or not all(isinstance(f, dict) for f in frames):
        raise ValueError(f"recording {path}: needs a non-empty list of readings")
    return frames


def synthetic_frame(
    gpu_count: int,
    nvlink_groups: list[list[int]],
    numa: list[int],
    model: str = "NVIDIA H100 80GB HBM3",
    memory_bytes: int = 85_520_809_984,
    seed: str = "sim",
) -> dict[str, Any]:
    """A healthy reading of a node's GPUs, wired as its annotation says."""
    bus = [f"00000000:{0x18 + 0x10 * i:02x}:00.0" for i in range(gpu_count)]
    gpus = []
    for i in range(gpu_count):
        group = next((g for g in nvlink_groups if i in g), [i])
        peers = [p for p in group if p != i]
        gpus.append(
            {
                "index": i,
                "name": model,
                "uuid": f"GPU-{zlib.crc32(f'{seed}/{i}'.encode()):08x}-0000-4000-8000-{i:012x}",
                "pciBusId": bus[i],
                "memoryTotal": memory_bytes,
                "numaNode": numa[i] if i < len(numa) else 0,
                "nvlinks": [
                    {"link": k, "active": True, "remoteType": "gpu", "remotePciBusId": bus[p]}
                    for k, p in enumerate(peers)
                ],
                "temperature": 38 + i % 4,
                "powerUsage": 70_000 + 1_000 * i,
                "throttleReasons": 0,
                "ecc": {
                    "volatile": {"corrected": 0, "uncorrected": 0},
                    "aggregate": {"corrected": 0, "uncorrected": 0},
                },
                "retiredPages": {"sbe": 0, "dbe": 0, "pending": False},
                "remappedRows": {
                    "correctable": 0,
                    "uncorrectable": 0,
                    "pending": False,
                    "failure": False,
                },
                "nvlinkErrors": {"crc": 0, "replay": 0, "recovery": 0},
                "xids": [],
            }
        )
    return {"timestamp": 0.0, "driverVersion": "550.54.15", "nvmlError": None, "gpus": gpus}


class SimulatedGpus:
    """Readings for one simulated node: frame after frame of the recording (looping),
    every GPU's timestamp set to now, faults laid over them."""

    def __init__(
        self,
        node: str,
        frames: list[dict[str, Any]],
        faults: list[Fault],
        start: float,
        interval_s: float = 5.0,
    ) -> None:
        self.node = node
        self.frames = frames
        self.faults = [f for f in faults if f.node in ("*", node)]
        self.start = start
        self.interval_s = interval_s
        self.fired: set[int] = set()
        self.offsets: dict[tuple[int, str], int] = {}
        self.frozen: dict[int, float] = {}

    def read(self, now: float) -> dict[str, Any]:
        t = now - self.start
        frame = copy.deepcopy(self.frames[int(t / self.interval_s) % len(self.frames)])
        frame["timestamp"] = now
        if any(f.kind == "nvml-down" and f.active(t) for f in self.faults):
            return {"timestamp": now, "nvmlError": "NVML_ERROR_DRIVER_NOT_LOADED", "gpus": []}
        fresh_xids: dict[int, list[int]] = {}
        for n, f in enumerate(self.faults):
            if KINDS[f.kind] == "once" and t >= f.at and n not in self.fired:
                self.fired.add(n)
                for gpu in frame["gpus"]:
                    i = gpu["index"]
                    if not f.applies(self.node, i):
                        continue
                    if f.kind == "xid":
                        fresh_xids.setdefault(i, []).append(f.value or 79)
                    else:
                        key = (i, f.kind)
                        self.offsets[key] = self.offsets.get(key, 0) + (f.value or 1)
        for gpu in frame["gpus"]:
            i = gpu["index"]
            gpu["timestamp"] = now
            gpu["xids"] = list(gpu.get("xids") or []) + [
                {"xid": x, "timestamp": now} for x in fresh_xids.get(i, [])
            ]
            ecc = gpu.setdefault("ecc", {})
            for part in ("volatile", "aggregate"):
                counts = ecc.setdefault(part, {})
                counts["uncorrected"] = (counts.get("uncorrected") or 0) + self.offsets.get(
                    (i, "dbe"), 0
                )
                counts["corrected"] = (counts.get("corrected") or 0) + self.offsets.get(
                    (i, "sbe"), 0
                )
            links = gpu.setdefault("nvlinkErrors", {"crc": 0, "replay": 0, "recovery": 0})
            links["recovery"] = (links.get("recovery") or 0) + self.offsets.get(
                (i, "nvlink-recovery"), 0
            )
            for f in self.faults:
                if not (f.applies(self.node, i) and KINDS[f.kind] == "state" and f.active(t)):
                    continue
                self._state_fault(gpu, f, now)
            if i in self.frozen and not any(
                f.kind == "stall" and f.applies(self.node, i) and f.active(t) for f in self.faults
            ):
                del self.frozen[i]
        return frame

    def _state_fault(self, gpu: dict[str, Any], f: Fault, now: float) -> None:
        i = gpu["index"]
        if f.kind == "lost":
            for key in list(gpu):
                if key not in ("index", "timestamp"):
                    del gpu[key]
            gpu["error"] = "GPU_IS_LOST"
        elif f.kind == "stall":
            gpu["timestamp"] = self.frozen.setdefault(i, now)
        elif f.kind == "remap-pending":
            gpu.setdefault("remappedRows", {})["pending"] = True
        elif f.kind == "remap-failure":
            gpu.setdefault("remappedRows", {})["failure"] = True
        elif f.kind == "retire-pending":
            gpu.setdefault("retiredPages", {})["pending"] = True
        elif f.kind == "temp":
            gpu["temperature"] = f.value if f.value is not None else 95
        elif f.kind == "throttle":
            gpu["throttleReasons"] = f.value if f.value is not None else 0x40
        elif f.kind == "nvlink-down":
            for link in gpu.get("nvlinks") or []:
                link["active"] = False

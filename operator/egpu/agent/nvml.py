"""A reader of real GPUs through NVML (`nvidia-ml-py`, imported only when used, so
nothing else in the project needs a GPU or the library).

`NvmlReader.read()` returns one NVML-shaped reading (see
`egpu.engines.health.samples`): the same JSON the simulated agent replays.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

MAX_NVLINKS = 18


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NvmlReader:
    def __init__(self, xid_wait_ms: int = 0) -> None:
        import pynvml  # lazy: only the real agent on a GPU node loads the library

        self.nvml: Any = pynvml
        self.xid_wait_ms = xid_wait_ms
        self.started = False
        self.events: Any = None

    def _start(self) -> None:
        n = self.nvml
        n.nvmlInit()
        self.started = True
        try:
            self.events = n.nvmlEventSetCreate()
            for i in range(n.nvmlDeviceGetCount()):
                handle = n.nvmlDeviceGetHandleByIndex(i)
                # no XID events on some GPUs (e.g. in a VM without support)
                with contextlib.suppress(n.NVMLError):
                    n.nvmlDeviceRegisterEvents(handle, n.nvmlEventTypeXidCriticalError, self.events)
        except n.NVMLError:
            self.events = None

    def close(self) -> None:
        if self.started:
            try:
                self.nvml.nvmlShutdown()
            finally:
                self.started = False

    def read(self) -> dict[str, Any]:
        n = self.nvml
        now = time.time()
        try:
            if not self.started:
                self._start()
            count = n.nvmlDeviceGetCount()
            driver = _text(n.nvmlSystemGetDriverVersion())
        except n.NVMLError as exc:
            self.close()
            return {"timestamp": now, "nvmlError": _text(exc), "gpus": []}
        xids = self._xids()
        gpus = [self._gpu(i, xids.get(i, [])) for i in range(count)]
        return {"timestamp": now, "driverVersion": driver, "nvmlError": None, "gpus": gpus}

    def _xids(self) -> dict[int, list[dict[str, Any]]]:
        n = self.nvml
        out: dict[int, list[dict[str, Any]]] = {}
        if self.events is None:
            return out
        while True:
            try:
                data = n.nvmlEventSetWait_v2(self.events, self.xid_wait_ms)
            except n.NVMLError:  # timeout: no more events
                return out
            try:
                index = n.nvmlDeviceGetIndex(data.device)
            except n.NVMLError:
                continue
            out.setdefault(index, []).append({"xid": int(data.eventData), "timestamp": time.time()})

    def _gpu(self, index: int, xids: list[dict[str, Any]]) -> dict[str, Any]:
        n = self.nvml
        gpu: dict[str, Any] = {"index": index, "timestamp": time.time(), "xids": xids}
        try:
            h = n.nvmlDeviceGetHandleByIndex(index)
            gpu["name"] = _text(n.nvmlDeviceGetName(h))
            gpu["uuid"] = _text(n.nvmlDeviceGetUUID(h))
            gpu["pciBusId"] = _text(n.nvmlDeviceGetPciInfo(h).busId)
            gpu["memoryTotal"] = int(n.nvmlDeviceGetMemoryInfo(h).total)
        except n.NVMLError as exc:
            gpu["error"] = _error_name(n, exc)
            return gpu
        gpu["numaNode"] = self._numa(h, gpu["pciBusId"])
        gpu["temperature"] = self._try(lambda: int(n.nvmlDeviceGetTemperature(h, 0)))
        gpu["powerUsage"] = self._try(lambda: int(n.nvmlDeviceGetPowerUsage(h)))
        gpu["throttleReasons"] = (
            self._try(lambda: int(n.nvmlDeviceGetCurrentClocksThrottleReasons(h))) or 0
        )

        def ecc(kind: int, counter: int) -> int | None:
            value: int | None = self._try(
                lambda: int(n.nvmlDeviceGetTotalEccErrors(h, kind, counter))
            )
            return value

        gpu["ecc"] = {
            "volatile": {"corrected": ecc(0, 0), "uncorrected": ecc(1, 0)},
            "aggregate": {"corrected": ecc(0, 1), "uncorrected": ecc(1, 1)},
        }
        gpu["retiredPages"] = {
            "sbe": self._try(lambda: len(n.nvmlDeviceGetRetiredPages(h, 0))),
            "dbe": self._try(lambda: len(n.nvmlDeviceGetRetiredPages(h, 1))),
            "pending": self._try(lambda: int(n.nvmlDeviceGetRetiredPagesPendingStatus(h)) == 1)
            or False,
        }
        rows = self._try(lambda: n.nvmlDeviceGetRemappedRows(h))
        if rows is not None:
            corr, unc, pending, failure = rows
            gpu["remappedRows"] = {
                "correctable": int(corr),
                "uncorrectable": int(unc),
                "pending": bool(pending),
                "failure": bool(failure),
            }
        links, crc, replay, recovery = [], 0, 0, 0
        for link in range(MAX_NVLINKS):
            state = self._try(lambda link=link: int(n.nvmlDeviceGetNvLinkState(h, link)))
            if state is None:
                break
            remote = self._try(
                lambda link=link: _text(n.nvmlDeviceGetNvLinkRemotePciInfo(h, link).busId)
            )
            kind = self._try(lambda link=link: int(n.nvmlDeviceGetNvLinkRemoteDeviceType(h, link)))
            links.append(
                {
                    "link": link,
                    "active": state == 1,
                    "remoteType": {0: "gpu", 2: "switch"}.get(
                        kind if kind is not None else -1, "unknown"
                    ),
                    "remotePciBusId": remote,
                }
            )
            for counter, add in ((0, "replay"), (1, "recovery"), (2, "crc"), (3, "crc")):
                value = self._try(
                    lambda link=link, counter=counter: int(
                        n.nvmlDeviceGetNvLinkErrorCounter(h, link, counter)
                    )
                )
                if value is None:
                    continue
                if add == "replay":
                    replay += value
                elif add == "recovery":
                    recovery += value
                else:
                    crc += value
        gpu["nvlinks"] = links
        if links:
            gpu["nvlinkErrors"] = {"crc": crc, "replay": replay, "recovery": recovery}
        return gpu

    def _numa(self, handle: Any, bus: str) -> int | None:
        n = self.nvml
        getter = getattr(n, "nvmlDeviceGetNumaNodeId", None)
        if getter is not None:
            found: int | None = self._try(lambda: int(getter(handle)))
            if found is not None and found >= 0:
                return found
        # sysfs spells the domain with 4 hex digits, NVML with 8
        domain, _, rest = bus.lower().partition(":")
        path = Path(f"/sys/bus/pci/devices/{int(domain or '0', 16):04x}:{rest}/numa_node")
        try:
            value = int(path.read_text().strip())
        except (OSError, ValueError):
            return None
        return value if value >= 0 else None

    def _try(self, call: Any) -> Any:
        try:
            return call()
        except self.nvml.NVMLError:
            return None


def _error_name(nvml: Any, exc: Exception) -> str:
    lost = getattr(nvml, "NVMLError_GpuIsLost", None)
    if lost is not None and isinstance(exc, lost):
        return "GPU_IS_LOST"
    return _text(exc)

"""A container that really uses memory and CPU, for resize tests on a real kubelet.

Run with the python test image's interpreter (stdlib only):

    python3.11 usage_feeder.py --memory-mib 950,1950,2950 --cpu-millicores 200

It holds its working set at each memory step in turn and moves to the next step only
once its own cgroup's memory limit leaves MARGIN_MIB above that step (so it grows with
an in-place resize and is never OOM-killed for running ahead of it). Each rise is one
populated mapping (MAP_POPULATE: the kernel allocates every page in the one call), so
the use rises at once, not page fault by page fault in the interpreter, which on a
loaded machine took seconds. Meanwhile it burns about `--cpu-millicores` of one core
in 100 ms duty cycles. The start of each rise and its end (the memory held) are
printed with the wall-clock time ("rising to N MiB at T", "step N MiB at T").
`--hold-off-s`: seconds before the first rise (a bench watching it gets ready).
"""

from __future__ import annotations

import argparse
import mmap
import signal
import sys
import time
from pathlib import Path

MIB = 1 << 20
MARGIN_MIB = 64
LIMIT_FILES = (
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),  # cgroup v1
    Path("/sys/fs/cgroup/memory.max"),  # cgroup v2
)
PERIOD_S = 0.1


def memory_limit() -> int | None:
    for path in LIMIT_FILES:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        return None if text == "max" else int(text)
    return None


def fits(step_mib: int, limit: int | None) -> bool:
    return limit is None or step_mib * MIB + MARGIN_MIB * MIB <= limit


def hold(mib: int) -> mmap.mmap:
    """`mib` MiB of private memory, every page allocated (and charged to the cgroup)
    before this returns."""
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | mmap.MAP_POPULATE
    return mmap.mmap(-1, mib * MIB, flags=flags)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--memory-mib", required=True, help="comma-separated steps, MiB")
    parser.add_argument("--cpu-millicores", type=int, default=0)
    parser.add_argument("--hold-off-s", type=float, default=0, help="before the first rise")
    args = parser.parse_args()
    steps = [int(s) for s in args.memory_mib.split(",")]
    busy_s = PERIOD_S * min(1000, max(0, args.cpu_millicores)) / 1000
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    end = time.monotonic() + args.hold_off_s
    while time.monotonic() < end:
        burn(busy_s)
    held: list[mmap.mmap] = []
    held_mib = 0
    for step in steps:
        while not fits(step, memory_limit()):
            burn(busy_s)
        print(f"rising to {step} MiB at {time.time():.3f}", flush=True)
        held.append(hold(step - held_mib))
        held_mib = step
        print(f"step {step} MiB at {time.time():.3f}", flush=True)  # wall clock: benches
    while True:
        burn(busy_s)


def burn(busy_s: float) -> None:
    """One duty cycle: spin for busy_s, sleep the rest of the period."""
    end = time.monotonic() + busy_s
    while time.monotonic() < end:
        pass
    time.sleep(PERIOD_S - busy_s)


if __name__ == "__main__":
    main()

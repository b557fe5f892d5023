#!/usr/bin/env python3
"""Run egpu-operator under tracemalloc, to find what holds its memory.

    .venv/bin/python hack/bench/memtrace.py OUT.txt -- [egpu-operator arguments]

On SIGUSR1 (and at exit) the largest live allocations, grouped by the line that made
them (25 frames kept; the first frame inside the project or kopf is shown), are
written to OUT.txt. tracemalloc slows the operator down several times: use it to
find a cause, never for the figures of a benchmark.
"""

from __future__ import annotations

import atexit
import linecache
import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType

TOP = 40


def interesting(filename: str) -> bool:
    return "/egpu/" in filename or "/kopf/" in filename


def dump(out: Path) -> None:
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )
    total = sum(s.size for s in snapshot.statistics("filename"))
    lines = [f"traced: {total / 2**20:.1f} MiB"]
    by_origin: dict[str, int] = {}
    for trace in snapshot.traces:
        frames = list(trace.traceback)
        frame = next((f for f in frames if interesting(f.filename)), frames[0])
        key = f"{frame.filename}:{frame.lineno}"
        by_origin[key] = by_origin.get(key, 0) + trace.size
    lines.append("-- by the first project/kopf frame that allocated --")
    for key, size in sorted(by_origin.items(), key=lambda kv: -kv[1])[:TOP]:
        filename, lineno = key.rsplit(":", 1)
        code = linecache.getline(filename, int(lineno)).strip()
        lines.append(f"{size / 2**20:8.1f} MiB  {key}  {code}")
    lines.append("-- by the line that allocated --")
    for stat in snapshot.statistics("lineno")[:TOP]:
        lines.append(f"{stat.size / 2**20:8.1f} MiB  {stat.count:8d}  {stat.traceback[0]}")
    out.write_text("\n".join(lines) + "\n")


def main() -> int:
    if len(sys.argv) < 3 or sys.argv[2] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(sys.argv[1])
    tracemalloc.start(25)

    def on_signal(_sig: int, _frame: FrameType | None) -> None:
        dump(out)

    signal.signal(signal.SIGUSR1, on_signal)
    atexit.register(dump, out)
    from egpu.controllers.main import main as operator_main

    return operator_main(sys.argv[3:])


if __name__ == "__main__":
    sys.exit(main())

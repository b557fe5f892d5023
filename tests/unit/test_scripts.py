"""The project's shell scripts must not fail on a race with the reader of a pipe.

Under `set -o pipefail`, `producer | head -N` (or `| grep -q`) fails with SIGPIPE (exit 141)
whenever the producer is still writing when the reader exits early: the demo failed so on a
fresh machine. Readers that consume all of their input (`awk 'NR<=N'`, `grep ... >/dev/null`)
have no such race.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
EARLY_EXIT_READER = re.compile(r"\|\s*\(?\s*(head\b|grep\s+-[A-Za-z]*q)")


def scripts() -> list[Path]:
    found = [*ROOT.glob("hack/**/*.sh"), ROOT / "Makefile", ROOT / ".ci" / "run"]
    return sorted(p for p in found if p.is_file())


def test_the_scripts_are_found() -> None:
    names = {p.name for p in scripts()}
    assert {"demo.sh", "Makefile", "run"} <= names


@pytest.mark.parametrize("path", scripts(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_pipe_into_a_reader_that_exits_early(path: Path) -> None:
    bad = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if EARLY_EXIT_READER.search(line) and not line.lstrip().startswith("#")
    ]
    assert not bad, "pipes that can end in SIGPIPE:\n" + "\n".join(bad)

"""hack/localcluster.py's command line: options that cannot work together are refused
before anything starts."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.unit
HACK = Path(__file__).resolve().parents[2] / "hack"
sys.path.insert(0, str(HACK))
import localcluster  # noqa: E402

sys.path.remove(str(HACK))


@pytest.fixture
def ups(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """What `up` would have been asked to start (nothing is started)."""
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(localcluster, "cmd_up", lambda *args: calls.append(args) or 0)
    for var in ("EGPU_REAL_NODES", "EGPU_REAL_NODE_GPUS", "EGPU_REAL_NODE_DRA", "EGPU_AUDIT"):
        monkeypatch.delenv(var, raising=False)
    return calls


@pytest.mark.parametrize(
    "argv",
    [
        ["up", "--real-node-dra"],
        ["up", "--real-node-dra", "--real-nodes", "1"],
        ["up", "--real-node-dra", "--real-node-gpus", "4"],
    ],
)
def test_dra_without_real_nodes_and_gpus_is_refused(
    argv: list[str], ups: list[tuple[Any, ...]], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        localcluster.main(argv)
    assert exc.value.code == 2
    assert "--real-node-dra needs" in capsys.readouterr().err
    assert ups == []


def test_dra_with_real_nodes_and_gpus_reaches_up(ups: list[tuple[Any, ...]]) -> None:
    argv = ["up", "--real-nodes", "1", "--real-node-gpus", "4", "--real-node-dra"]
    assert localcluster.main(argv) == 0
    assert ups == [(False, 1, 4, True, False)]


def test_the_environment_turns_dra_on(
    ups: list[tuple[Any, ...]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EGPU_REAL_NODE_DRA", "1")
    assert localcluster.main(["up", "--real-nodes", "1", "--real-node-gpus", "2"]) == 0
    assert ups == [(False, 1, 2, True, False)]


def test_audit_is_off_unless_asked(
    ups: list[tuple[Any, ...]], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert localcluster.main(["up"]) == 0
    assert localcluster.main(["up", "--audit"]) == 0
    monkeypatch.setenv("EGPU_AUDIT", "0")
    assert localcluster.main(["up"]) == 0
    monkeypatch.setenv("EGPU_AUDIT", "1")
    assert localcluster.main(["up"]) == 0
    assert [call[-1] for call in ups] == [False, True, False, True]


def test_audit_flags_write_the_policy_and_start_a_fresh_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "logs" / "audit.log"
    monkeypatch.setattr(localcluster, "RUN_DIR", tmp_path)
    monkeypatch.setattr(localcluster, "AUDIT_LOG", log)
    assert localcluster.audit_flags(False) == []
    log.parent.mkdir()
    log.write_text("an earlier control plane's requests\n")
    flags = localcluster.audit_flags(True)
    assert f"--audit-log-path={log}" in flags and not log.exists()
    policy = tmp_path / "audit-policy.yaml"
    assert f"--audit-policy-file={policy}" in flags
    assert policy.read_text() == localcluster.AUDIT_POLICY

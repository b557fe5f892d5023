"""Status conditions the Kubernetes way: lastTransitionTime moves only when
the status does, and every condition names the generation it describes."""

from __future__ import annotations

from typing import Any

Condition = dict[str, Any]


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: bool | str,
    reason: str,
    message: str,
    generation: int | None,
    now: str,
) -> list[Condition]:
    """A new list with `type_` set; the others are kept in their order."""
    status_text = status if isinstance(status, str) else ("True" if status else "False")
    old = next((c for c in conditions if c.get("type") == type_), None)
    changed = old is None or old.get("status") != status_text
    new: Condition = {
        "type": type_,
        "status": status_text,
        "reason": reason,
        "message": message,
        "lastTransitionTime": now if changed or old is None else old["lastTransitionTime"],
    }
    if generation is not None:
        new["observedGeneration"] = generation
    out = [c for c in conditions if c.get("type") != type_]
    index = next((i for i, c in enumerate(conditions) if c.get("type") == type_), len(out))
    out.insert(index, new)
    return out


def same_status(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal but for the timestamps inside conditions: no patch needed."""

    def strip(status: dict[str, Any]) -> dict[str, Any]:
        out = dict(status)
        out["conditions"] = [
            {k: v for k, v in c.items() if k != "lastTransitionTime"}
            for c in status.get("conditions") or []
        ]
        return out

    return strip(a) == strip(b)

"""Artefacts: what a pod loads at start (container images, model files) and what a node
holds of them, so the binder can prefer nodes where a pod starts on the Cached path.

Keys are compared exactly: an image key matches a name in the node's status.images only
when it is spelled the same (the kubelet lists the names the runtime knows, usually
fully qualified, e.g. `docker.io/library/nginx:1.27`; a pod that names `nginx:1.27`
should name its artefact the same way). Model keys (`llama-3-8b@r2`) are opaque.

A node's artefacts are one frozenset shared by every node that holds the same ones
(`intern_artefacts`): 15,000 nodes with the same images cost one set, not 15,000.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable

NO_ARTEFACTS: frozenset[str] = frozenset()

# One set per distinct content, for as long as some node holds it (weak values: a
# content no node holds any more is dropped with its last holder). Keyed by a copy:
# a key that were the value itself would keep it alive for good.
_INTERNED: weakref.WeakValueDictionary[frozenset[str], frozenset[str]] = (
    weakref.WeakValueDictionary()
)


def parse_artefact_keys(raw: object) -> tuple[str, ...]:
    """Comma-separated keys, blanks stripped, empties and repeats dropped, in order.
    Anything but a string reads as none: a malformed value never stops a pod or node."""
    if not isinstance(raw, str) or not raw:
        return ()
    return tuple(dict.fromkeys(key for part in raw.split(",") if (key := part.strip())))


def image_names(images: object) -> list[str]:
    """Every name in a Node's status.images (entries of another shape are skipped)."""
    if not isinstance(images, list):
        return []
    names: list[str] = []
    for entry in images:
        listed = entry.get("names") if isinstance(entry, dict) else None
        if isinstance(listed, list):
            names.extend(n for n in listed if isinstance(n, str) and n)
    return names


def intern_artefacts(keys: Iterable[str]) -> frozenset[str]:
    """The shared set of these keys (NO_ARTEFACTS for none)."""
    held = frozenset(keys)
    if not held:
        return NO_ARTEFACTS
    shared = _INTERNED.get(held)
    if shared is None:
        _INTERNED[frozenset(list(held))] = shared = held
    return shared


def held_count(wanted: Iterable[str], held: frozenset[str]) -> int:
    """How many of the wanted keys the node holds."""
    return sum(1 for key in wanted if key in held)


def holds_all(wanted: Iterable[str], held: frozenset[str]) -> bool:
    return all(key in held for key in wanted)

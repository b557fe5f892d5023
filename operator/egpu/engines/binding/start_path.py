"""Which start path a pod gets on its node: Cached when the node holds everything the pod
loads at start (its images and model files), else Cold."""

from __future__ import annotations

from egpu.domain.artefacts import holds_all
from egpu.domain.labels import START_PATH_CACHED, START_PATH_COLD


def start_path(artefacts: tuple[str, ...], held: frozenset[str]) -> str | None:
    """START_PATH_CACHED or START_PATH_COLD for a pod that names `artefacts`, judged
    against what its node holds (`held`); None for a pod that names none."""
    if not artefacts:
        return None
    return START_PATH_CACHED if holds_all(artefacts, held) else START_PATH_COLD

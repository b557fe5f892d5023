"""GPUs inside a node and how they are wired: NVLink groups and NUMA nodes.

Parsers here turn the node agent's annotations into values. Bad input raises a
ValueError that says what is wrong, so nothing malformed reaches the engines.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True, slots=True)
class Gpu:
    index: int
    model: str | None
    healthy: bool = True


@dataclass(frozen=True, slots=True)
class Interconnect:
    """NVLink groups (GPU index lists) and the NUMA node of every GPU.

    Every GPU is in exactly one group; a GPU with no NVLink peer is a group of its own.
    """

    nvlink_groups: tuple[tuple[int, ...], ...]
    numa: tuple[int, ...]

    def __post_init__(self) -> None:
        seen: set[int] = set()
        for group in self.nvlink_groups:
            if not group:
                raise ValueError("an NVLink group must not be empty")
            for gpu in group:
                if gpu < 0 or gpu >= len(self.numa):
                    last = len(self.numa) - 1
                    raise ValueError(f"NVLink group names GPU {gpu}; the node has GPUs 0..{last}")
                if gpu in seen:
                    raise ValueError(f"GPU {gpu} is in more than one NVLink group")
                seen.add(gpu)
        if len(seen) != len(self.numa):
            missing = sorted(set(range(len(self.numa))) - seen)
            raise ValueError(f"GPUs {missing} are in no NVLink group")
        if any(node < 0 for node in self.numa):
            raise ValueError("NUMA node numbers must not be negative")

    @property
    def gpu_count(self) -> int:
        return len(self.numa)

    @classmethod
    def unknown(cls, gpu_count: int) -> Interconnect:
        """What we assume without an annotation: no NVLink peers, one NUMA node."""
        return cls(tuple((i,) for i in range(gpu_count)), (0,) * gpu_count)


def _int_list(value: object, what: str) -> list[int]:
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise ValueError(f"{what} must be a list of integers, got {value!r}")
    return value


@lru_cache(maxsize=256)
def parse_interconnect(text: str | None, gpu_count: int) -> Interconnect:
    """Parse `egpu.io/gpu-interconnect` for a node with `gpu_count` GPUs.

    `{"nvlinkGroups": [[0,1,2,3],[4,5,6,7]], "numa": [0,0,0,0,1,1,1,1]}`. Absent or
    empty text means "unknown" (no NVLink peers, one NUMA node). GPUs left out of every
    group become groups of their own; a missing `numa` puts every GPU on node 0.
    Cached: a cluster's nodes mostly share one annotation string.
    """
    if gpu_count < 0:
        raise ValueError(f"gpu count must not be negative, got {gpu_count}")
    if text is None or not text.strip():
        return Interconnect.unknown(gpu_count)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"gpu-interconnect annotation is not JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise ValueError("gpu-interconnect annotation must be a JSON object")
    unknown_keys = set(data) - {"nvlinkGroups", "numa"}
    if unknown_keys:
        raise ValueError(f"gpu-interconnect annotation has unknown keys {sorted(unknown_keys)}")
    raw_groups = data.get("nvlinkGroups", [])
    if not isinstance(raw_groups, list):
        raise ValueError("gpu-interconnect nvlinkGroups must be a list of GPU index lists")
    groups = [
        tuple(_int_list(g, f"gpu-interconnect nvlinkGroups[{i}]")) for i, g in enumerate(raw_groups)
    ]
    grouped = {gpu for group in groups for gpu in group}
    groups.extend((gpu,) for gpu in range(gpu_count) if gpu not in grouped)
    if "numa" in data:
        numa = tuple(_int_list(data["numa"], "gpu-interconnect numa"))
        if len(numa) != gpu_count:
            raise ValueError(
                f"gpu-interconnect numa lists {len(numa)} GPUs, but the node has {gpu_count}"
            )
    else:
        numa = (0,) * gpu_count
    try:
        return Interconnect(tuple(groups), numa)
    except ValueError as exc:
        raise ValueError(f"gpu-interconnect annotation: {exc}") from None


def parse_unhealthy_gpus(text: str | None, gpu_count: int) -> frozenset[int]:
    """Parse `egpu.io/unhealthy-gpus` ("3,5"); absent or empty means all healthy."""
    if text is None or not text.strip():
        return frozenset()
    indices: set[int] = set()
    for part in text.split(","):
        item = part.strip()
        if not item:
            continue
        if not (item.isascii() and item.isdigit()):
            raise ValueError(f"unhealthy-gpus annotation: {item!r} is not a GPU index")
        index = int(item)
        if index >= gpu_count:
            raise ValueError(
                f"unhealthy-gpus annotation names GPU {index}, but the node has {gpu_count} GPUs"
            )
        indices.add(index)
    return frozenset(indices)


_WORD_BREAKS = re.compile(r"[-\s_]+")


@lru_cache(maxsize=1024)
def model_words(text: str) -> tuple[str, ...]:
    """A GPU model name as lower-case words: split at dashes, spaces and underscores."""
    return tuple(word for word in _WORD_BREAKS.split(text.strip().lower()) if word)


@lru_cache(maxsize=4096)
def model_matches(selector: str, product: str) -> bool:
    """Whether a node's GPU product matches a workload's `gpuModel` selector.

    The rule: the selector's words, compared whole and case-insensitively, appear in the
    product's words in the same order (words split at dashes, spaces and underscores).
    So `H200`, `h200`, `H200-141GB` and `NVIDIA-H200-141GB-HBM3e` all match GPU Feature
    Discovery's `NVIDIA-H200-141GB-HBM3e`; `H20` and `141GB-H200` do not. A selector of
    no words matches nothing.
    """
    wanted = model_words(selector)
    if not wanted:
        return False
    words = iter(model_words(product))
    return all(word in words for word in wanted)

"""One explicit kopf registry: every handler module registers into it."""

from __future__ import annotations

import kopf

from egpu.controllers import settings


def build_registry() -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    settings.register(registry)
    return registry

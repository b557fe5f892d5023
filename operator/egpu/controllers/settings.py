"""Operator-wide kopf settings, applied at start-up."""

from __future__ import annotations

from typing import Any

import kopf


def register(registry: kopf.OperatorRegistry) -> None:
    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # An explicit registry gets none of kopf's implicit login handlers.
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        # Keep kopf's handler-progress bookkeeping out of annotations on the
        # objects users own; status is ours anyway.
        settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf")
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix="egpu.io", key="last-handled-configuration"
        )
        settings.posting.level = 20  # INFO and above become Kubernetes Events
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        settings.networking.connect_timeout = 10

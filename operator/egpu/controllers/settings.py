"""Operator-wide kopf settings, applied at start-up."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import kopf


def in_cluster_server(env: Mapping[str, str]) -> str | None:
    """The API server's address inside a pod, as client-go finds it: from the
    `kubernetes` Service's environment variables, which need no cluster DNS."""
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        return None
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


def register(registry: kopf.OperatorRegistry) -> None:
    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # An explicit registry gets none of kopf's implicit login handlers.
        info = kopf.login_with_service_account(**kwargs)
        if info is not None:
            # kopf names https://kubernetes.default.svc, which only cluster DNS
            # resolves (not there for hostNetwork pods, dnsPolicy Default, or
            # clusters without DNS); the Service's address always works.
            server = in_cluster_server(os.environ)
            return dataclasses.replace(info, server=server) if server else info
        return kopf.login_with_kubeconfig(**kwargs)

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

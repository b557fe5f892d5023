"""The ResourceClaimTemplate a DRA workload's pods name (see manifests.build_claim_template)."""

from __future__ import annotations

from egpu.kube.client import JSON, ApiError, KubeClient, path_for


async def create_claim_template(client: KubeClient, template: JSON) -> None:
    """Create; an existing template of the same name is not an error (it never changes:
    gpusPerPod and gpuAllocation are immutable)."""
    api_version = template["apiVersion"]
    path = path_for(api_version, "resourceclaimtemplates", template["metadata"]["namespace"])
    try:
        await client.create(path, template)
    except ApiError as exc:
        if not exc.conflict:
            raise

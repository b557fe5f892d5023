"""Names of the node labels and annotations the domain types are read from.

They match what GPU Feature Discovery, topology-labelling clouds and the egpu node
agent write (and what `egpu.sim.nodes` generates for the simulated cluster).
"""

from __future__ import annotations

BLOCK_LABEL = "egpu.io/block"
LEAF_LABEL = "egpu.io/leaf"
HOSTNAME_LABEL = "kubernetes.io/hostname"

GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_COUNT_LABEL = "nvidia.com/gpu.count"
GPU_MEMORY_LABEL = "nvidia.com/gpu.memory"
GPU_RESOURCE = "nvidia.com/gpu"

INTERCONNECT_ANNOTATION = "egpu.io/gpu-interconnect"
UNHEALTHY_GPUS_ANNOTATION = "egpu.io/unhealthy-gpus"

"""egpu: a Kubernetes operator for elastic GPU container workloads."""

import os as _os

GROUP = "egpu.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
DEFAULT_SCHEDULER_NAME = "egpu-scheduler"
# The schedulerName that the operator's pods carry and that it binds: the Helm
# chart's `schedulerName` value reaches it through EGPU_SCHEDULER_NAME.
SCHEDULER_NAME = _os.environ.get("EGPU_SCHEDULER_NAME") or DEFAULT_SCHEDULER_NAME

__version__ = "0.1.0"

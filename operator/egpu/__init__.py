"""egpu: a Kubernetes operator for elastic GPU container workloads."""

GROUP = "egpu.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
SCHEDULER_NAME = "egpu-scheduler"

__version__ = "0.1.0"

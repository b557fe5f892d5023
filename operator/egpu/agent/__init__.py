"""The node agent (`egpu agent`): reads the node's GPUs through NVML (or replays
NVML-shaped recordings on simulated nodes), judges their health, and publishes it on
the Node: annotations, a condition, and Prometheus metrics."""

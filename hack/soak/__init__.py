"""The chaos soak: a fault-injecting API proxy, invariants over the API server's
truth, and the driver behind `make soak` (hack/soak/soak.py)."""

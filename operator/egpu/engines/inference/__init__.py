"""Pure parts of the GPUInferenceService controller.

`policy`: the CRD's spec and status mapped to and from the autoscaling engine's types
(durations, percentiles, cron windows, the engine's memory).
`rollout`: which serving and warm pods to create, delete or relabel.
"""

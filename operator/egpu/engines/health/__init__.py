"""GPU health: NVML-shaped readings parsed into typed facts and samples, and the
rules (with hysteresis) that turn samples into per-GPU health. Pure: no NVML, no
client, no clock (`now` is passed in)."""

"""A seeded fault trace with precursors, to measure the risk score against.

`N` GPUs over `D` days. GPU faults come at the rate Meta reported for Llama 3's
pre-training ("The Llama 3 Herd of Models", 2024, table 5): 419 unexpected
interruptions in 54 days on 16,384 H100 GPUs, 58.7 % of them GPU-related, so
419 x 0.587 / (16,384 x 54) = 2.78e-4 faults per GPU-day. The fault classes and their
shares are that table's GPU rows: faulty GPU 30.1 %, HBM3 memory 17.2 %, SRAM memory
4.5 %, GPU system processor 4.1 %, silent data corruption 1.4 %, thermal interface and
sensor 1.4 %.

Precursors, per class:
- memory (HBM3, SRAM): correctable ECC errors before the uncorrectable one. Schroeder,
  Pinheiro and Weber ("DRAM Errors in the Wild", SIGMETRICS 2009) found that a
  correctable error in a month raises the chance of an uncorrectable one in that month
  13-228x. With a share `c` of GPU-months that see correctable errors (healthy GPUs
  too, see the noise below) and a factor `k`, Bayes gives the share of memory faults
  preceded by correctable errors: c k / (c k + 1 - c). Defaults: k = 54, the geometric
  mean of 13 and 228; c = 0.03 (assumed: the paper's 8 % of DIMMs a year with
  correctable errors, over the ~5 memory stacks of a GPU, per month). With them, 63 %
  of memory faults have a precursor. When the errors start before the fault and how
  fast they come is not in the paper: assumed, the last 1-72 hours (uniform), at a
  rate log-normal with median 20 an hour (sigma 2); in 30 % of them (assumed) rows are
  remapped too (1-4).
- faulty GPU and GPU system processor: assumed 20 % show, in the last 1-24 hours, a
  run of one XID class (3-10 of XID 13 or 31) and half of those telemetry gaps too.
- thermal interface and sensor: assumed 80 % run hot (within the margin of the limit)
  for the last 1-24 hours.
- silent data corruption: no precursor.

Noise on every GPU, so that false alarms can happen (rates per GPU-day; all assumed but
the first, which is `c` above per day): episodes of correctable ECC errors (c / 30,
rate log-normal median 2 an hour, sigma 2, lasting log-normal median 2 hours, at most
24); thermal excursions (0.02, 5-60 minutes); application XIDs (0.05: 1-8 of one of
XID 13, 31, 43 within 1-30 minutes); telemetry gaps (0.01: 1-4 missing stretches of
5 minutes).

Everything here is pure: the same seed and parameters give the same trace.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from enum import StrEnum

DAY_S = 86400.0
HOUR_S = 3600.0
HOT_C = 87  # within the risk score's default margin (5 C) of its limit (90 C)
QUIET_C = 45

# Llama 3 (Meta 2024, table 5): interruptions, days, GPUs, GPU-related share.
LLAMA3_INTERRUPTIONS = 419
LLAMA3_DAYS = 54
LLAMA3_GPUS = 16384
LLAMA3_GPU_SHARE = 0.587
FAULTS_PER_GPU_DAY = LLAMA3_INTERRUPTIONS * LLAMA3_GPU_SHARE / (LLAMA3_GPUS * LLAMA3_DAYS)


class FaultClass(StrEnum):
    FAULTY_GPU = "faulty-gpu"
    HBM3 = "hbm3"
    SRAM = "sram"
    GSP = "gsp"
    SDC = "sdc"
    THERMAL = "thermal"


# Shares of all interruptions, Llama 3 table 5 (they sum to 58.7 %).
CLASS_SHARES: dict[FaultClass, float] = {
    FaultClass.FAULTY_GPU: 30.1,
    FaultClass.HBM3: 17.2,
    FaultClass.SRAM: 4.5,
    FaultClass.GSP: 4.1,
    FaultClass.SDC: 1.4,
    FaultClass.THERMAL: 1.4,
}


class Kind(StrEnum):
    SBE = "sbe"  # correctable ECC errors, `amount` spread evenly over the episode
    REMAP = "remap"  # correctable row remappings, likewise
    HOT = "hot"  # every poll within the episode near the temperature limit
    XID = "xid"  # `amount` XIDs of class `xid`, evenly spaced
    GAP = "gap"  # no reading within the episode


@dataclass(frozen=True, slots=True)
class Episode:
    gpu: int
    kind: Kind
    start_s: float
    end_s: float
    amount: int = 0
    xid: int = 0
    precursor: bool = False  # part of a fault's precursor (else noise)


@dataclass(frozen=True, slots=True)
class Fault:
    gpu: int
    at_s: float
    cls: FaultClass
    has_precursor: bool


@dataclass(frozen=True, slots=True)
class PrecursorModel:
    faults_per_gpu_day: float = FAULTS_PER_GPU_DAY
    ce_gpu_month: float = 0.03  # c: share of GPU-months with correctable errors (assumed)
    ce_factor: float = 54.0  # k: geometric mean of Schroeder et al.'s 13-228x
    precursor_lead_h: tuple[float, float] = (1.0, 72.0)  # assumed
    precursor_sbe_per_h: float = 20.0  # median, assumed
    noise_sbe_per_h: float = 2.0  # median, assumed
    sbe_sigma: float = 2.0  # assumed
    remap_share: float = 0.3  # assumed
    xid_precursor_share: float = 0.2  # assumed
    thermal_precursor_share: float = 0.8  # assumed
    hot_per_gpu_day: float = 0.02  # assumed
    app_xid_per_gpu_day: float = 0.05  # assumed
    gap_per_gpu_day: float = 0.01  # assumed

    @property
    def memory_precursor_share(self) -> float:
        """Bayes on Schroeder et al.'s factor: P(correctable before | uncorrectable)."""
        ck = self.ce_gpu_month * self.ce_factor
        return ck / (ck + 1 - self.ce_gpu_month)


@dataclass(frozen=True, slots=True)
class PrecursorTrace:
    gpus: int
    days: float
    faults: tuple[Fault, ...]
    episodes: tuple[Episode, ...]

    @property
    def gpu_days(self) -> float:
        return self.gpus * self.days


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method; means here are small (per GPU)."""
    limit, k, p = math.exp(-mean), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def _pick_class(rng: random.Random) -> FaultClass:
    x = rng.random() * sum(CLASS_SHARES.values())
    for cls, share in CLASS_SHARES.items():
        x -= share
        if x < 0:
            return cls
    return FaultClass.SDC


def _precursor(
    rng: random.Random, m: PrecursorModel, gpu: int, at: float, cls: FaultClass
) -> list[Episode]:
    def start(lo_h: float, hi_h: float) -> float:
        return max(0.0, at - rng.uniform(lo_h, hi_h) * HOUR_S)

    if cls in (FaultClass.HBM3, FaultClass.SRAM):
        if rng.random() >= m.memory_precursor_share:
            return []
        s = start(*m.precursor_lead_h)
        rate = rng.lognormvariate(math.log(m.precursor_sbe_per_h), m.sbe_sigma)
        out = [Episode(gpu, Kind.SBE, s, at, max(1, round(rate * (at - s) / HOUR_S)), 0, True)]
        if rng.random() < m.remap_share:
            out.append(Episode(gpu, Kind.REMAP, s, at, rng.randint(1, 4), 0, True))
        return out
    if cls in (FaultClass.FAULTY_GPU, FaultClass.GSP):
        if rng.random() >= m.xid_precursor_share:
            return []
        s = start(1.0, 24.0)
        out = [Episode(gpu, Kind.XID, s, at, rng.randint(3, 10), rng.choice((13, 31)), True)]
        if rng.random() < 0.5:
            for _ in range(rng.randint(2, 4)):
                g = rng.uniform(s, at)
                out.append(Episode(gpu, Kind.GAP, g, min(at, g + 300.0), 0, 0, True))
        return out
    if cls is FaultClass.THERMAL and rng.random() < m.thermal_precursor_share:
        return [Episode(gpu, Kind.HOT, start(1.0, 24.0), at, 0, 0, True)]
    return []


def _noise(rng: random.Random, m: PrecursorModel, gpu: int, days: float) -> list[Episode]:
    end = days * DAY_S
    out: list[Episode] = []
    for _ in range(_poisson(rng, m.ce_gpu_month / 30 * days)):
        s = rng.uniform(0, end)
        dur = min(24 * HOUR_S, rng.lognormvariate(math.log(2 * HOUR_S), 1.0))
        rate = rng.lognormvariate(math.log(m.noise_sbe_per_h), m.sbe_sigma)
        out.append(Episode(gpu, Kind.SBE, s, min(end, s + dur), max(1, round(rate * dur / HOUR_S))))
    for _ in range(_poisson(rng, m.hot_per_gpu_day * days)):
        s = rng.uniform(0, end)
        out.append(Episode(gpu, Kind.HOT, s, min(end, s + rng.uniform(300, 3600))))
    for _ in range(_poisson(rng, m.app_xid_per_gpu_day * days)):
        s = rng.uniform(0, end)
        n, xid = rng.randint(1, 8), rng.choice((13, 31, 43))
        out.append(Episode(gpu, Kind.XID, s, min(end, s + rng.uniform(60, 1800)), n, xid))
    for _ in range(_poisson(rng, m.gap_per_gpu_day * days)):
        s = rng.uniform(0, end)
        for k in range(rng.randint(1, 4)):
            g = s + k * 900.0
            out.append(Episode(gpu, Kind.GAP, g, min(end, g + 300.0)))
    return out


def generate(
    gpus: int, days: float, seed: int, model: PrecursorModel | None = None
) -> PrecursorTrace:
    """The trace for `gpus` GPUs over `days` days: faults, their precursors, noise."""
    if gpus < 1 or days <= 0:
        raise ValueError(f"need at least one GPU and a positive span, got {gpus} x {days}")
    m = model or PrecursorModel()
    rng = random.Random(seed)
    faults: list[Fault] = []
    episodes: list[Episode] = []
    for gpu in range(gpus):
        for _ in range(_poisson(rng, m.faults_per_gpu_day * days)):
            at = rng.uniform(0, days * DAY_S)
            cls = _pick_class(rng)
            pre = _precursor(rng, m, gpu, at, cls)
            faults.append(Fault(gpu, at, cls, bool(pre)))
            episodes.extend(pre)
        episodes.extend(_noise(rng, m, gpu, days))
    episodes.sort(key=lambda e: (e.gpu, e.start_s))
    faults.sort(key=lambda f: (f.gpu, f.at_s))
    return PrecursorTrace(gpus, days, tuple(faults), tuple(episodes))

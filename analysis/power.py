# Power of the seed-paired comparison (statsmodels' TTestPower: a paired t-test is a one-sample
# t-test on the differences, effect size d_z = difference / sd of the paired differences).
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from statsmodels.stats.power import TTestIndPower, TTestPower

# The paper's gap in test accuracy: 0.9788 (GAIN) - 0.9762 (baseline).
PAPER_DIFFERENCE = 0.0026
TARGET_POWER = 0.8


def seeds_needed(analysis, effect_size: float, level: float, target_power: float) -> int:
    # Smallest whole n (>= 2) with power >= target. statsmodels' root finder fails (NaN) when even
    # n = 2 is enough, which happens for large gaps or tiny seed variance; answer 2 then.
    if analysis.power(effect_size, 2, level) >= target_power:
        return 2
    kw = {"nobs1": None, "ratio": 1.0} if isinstance(analysis, TTestIndPower) else {"nobs": None}
    return int(math.ceil(analysis.solve_power(effect_size=effect_size, alpha=level, power=target_power, **kw)))


@dataclass(frozen=True)
class PowerResult:
    difference: float  # the gap to detect, accuracy as a fraction
    sd_difference: float  # observed sd of the paired differences over seeds
    effect_size: float  # difference / sd_difference
    n_seeds: int  # paired seeds the study had
    power_at_n: float  # power the study had to detect `difference`
    seeds_for_target: float  # paired seeds needed for TARGET_POWER (ceil); NaN if not computable
    target_power: float
    level: float
    curve_n: tuple[int, ...]
    curve_power: tuple[float, ...]
    method: str = "statsmodels TTestPower (paired t-test), two-sided"
    note: str = ""


def paired_seed_power(
    sd_difference: float,
    n_seeds: int,
    difference: float = PAPER_DIFFERENCE,
    *,
    level: float = 0.05,
    target_power: float = TARGET_POWER,
    curve_max: int | None = None,
) -> PowerResult:
    analysis = TTestPower()
    if not (sd_difference > 0) or not math.isfinite(sd_difference):
        return PowerResult(
            difference, sd_difference, float("nan"), n_seeds, float("nan"), float("nan"), target_power, level, (), (),
            note="the paired standard deviation is zero or unknown (needs >= 2 seeds that differ): power not computable",
        )
    es = abs(difference) / sd_difference
    power_at_n = float(analysis.power(effect_size=es, nobs=n_seeds, alpha=level, alternative="two-sided")) if n_seeds >= 2 else float("nan")
    needed = float(seeds_needed(analysis, es, level, target_power))
    hi = curve_max or int(max(10, n_seeds * 2, min(needed * 1.3, 1000)))
    ns = np.unique(np.linspace(2, hi, num=min(hi - 1, 120)).round().astype(int))
    curve = analysis.power(effect_size=es, nobs=ns, alpha=level, alternative="two-sided")
    return PowerResult(
        difference=float(difference),
        sd_difference=float(sd_difference),
        effect_size=float(es),
        n_seeds=int(n_seeds),
        power_at_n=power_at_n,
        seeds_for_target=needed,
        target_power=target_power,
        level=level,
        curve_n=tuple(int(n) for n in ns),
        curve_power=tuple(float(p) for p in np.atleast_1d(curve)),
    )

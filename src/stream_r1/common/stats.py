"""Small-sample statistics for comparisons over seeds: Student-t intervals, paired differences.

No scipy: the t quantile comes from integrating the t density (Simpson's rule)
with Newton steps on it; accurate to ~1e-6 for the degrees of freedom a few seeds give.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass


def t_pdf(x: float, df: int) -> float:
    """Density of Student's t with `df` degrees of freedom."""
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    return math.exp(log_c - (df + 1) / 2 * math.log1p(x * x / df))


def t_cdf(x: float, df: int, intervals: int = 4000) -> float:
    """P(T ≤ x): ½ plus the density integrated from 0 to x with Simpson's rule."""
    if x == 0:
        return 0.5
    h = abs(x) / intervals
    inner = sum((4 if i % 2 else 2) * t_pdf(i * h, df) for i in range(1, intervals))
    area = h / 3 * (t_pdf(0.0, df) + inner + t_pdf(abs(x), df))
    return 0.5 + math.copysign(area, x)


@functools.lru_cache(maxsize=256)
def t_critical(df: int, confidence: float = 0.95) -> float:
    """Two-sided critical value t such that P(|T| ≤ t) = confidence (e.g. 4.303 for df 2, 95%).

    Newton's method from 0: the CDF is concave on x > 0, so the iterates rise monotonically to the root.
    """
    if df < 1:
        raise ValueError(f"a t interval needs at least 2 values (df={df}); run more seeds")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence} must lie strictly between 0 and 1")
    target, x = 0.5 + confidence / 2, 0.0
    for _ in range(200):
        step = (target - t_cdf(x, df)) / t_pdf(x, df)
        x += step
        if abs(step) < 1e-10 * max(1.0, x):
            break
    return x


SIGN_MARKS = {1: " ▲", -1: " ▼", 0: ""}  # an interval's sign in a report: wholly above zero, below, or neither


@dataclass(frozen=True)
class Interval:
    """Mean of n values with the half-width of its confidence interval (nan when n < 2)."""

    mean: float
    half_width: float
    n: int

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    def sign(self, tolerance: float = 0.0) -> int:
        """+1 if the whole interval is above `tolerance`, −1 if below −tolerance, else (or undefined) 0."""
        if math.isnan(self.half_width):
            return 0
        return 1 if self.low > tolerance else -1 if self.high < -tolerance else 0

    def as_dict(self) -> dict:
        return {**asdict(self), "low": self.low, "high": self.high}


def mean_ci(values: list[float], confidence: float = 0.95) -> Interval:
    """Mean ± t_{df=n−1}·s/√n, s the sample standard deviation (n − 1 in the denominator)."""
    n = len(values)
    if n == 0:
        raise ValueError("no values to average")
    mean = sum(values) / n
    if n < 2:
        return Interval(mean, math.nan, n)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return Interval(mean, t_critical(n - 1, confidence) * sd / math.sqrt(n), n)


def paired_difference(a: dict, b: dict, confidence: float = 0.95) -> Interval:
    """Mean of a[k] − b[k] over the keys (seeds) both hold, with its t interval."""
    keys = sorted(set(a) & set(b))
    if not keys:
        raise ValueError("the two rows share no seed; pair them on common seeds")
    return mean_ci([a[k] - b[k] for k in keys], confidence)


def average_ranks(values: list[float]) -> list[float]:
    """Ranks 1..n with ties given the mean of the ranks they span (as Spearman's ρ needs)."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation of two equally long lists (nan if either is constant)."""
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"need two lists of equal length ≥ 2, got {len(a)} and {len(b)}")
    ra, rb = average_ranks(a), average_ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    var = math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))
    return cov / var if var > 0 else math.nan

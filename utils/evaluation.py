"""How sure a result is: intervals, paired comparisons and summaries over seeds, printed one way.

Three questions, each with its own helper:

- How well does this one trained model do? :func:`accuracy` (right/wrong items), :func:`wilson`
  (from counts) and :func:`bootstrap` (means and pooled rates such as CER). The interval covers
  the sampling of the test items from the population they stand for, *for one fixed model*: it does
  not say what retraining with another seed would give. When items come in groups (utterances by
  voice, questions by table, digits by writer, pictures by scene), pass ``groups``: the bootstrap
  then resamples whole groups, because items of one group succeed or fail together and are worth
  less than as many independent items.
- Is system A better than system B on the same items? :func:`mcnemar` (right/wrong items) and
  :func:`paired_bootstrap` (rates, losses): the difference, its paired interval and a p-value.
- How much does training vary? :func:`over_seeds`: one result per seed, mean, standard deviation,
  range and every value. Does A beat B when both are trained again? :func:`paired_t`: one result
  per seed for each, a paired t-test over the seeds' differences. Only this one covers retraining;
  the paired tests above cover the test items for the trained models at hand.
- How sure is a mean over a handful of groups? :func:`t_interval`: the mean of one value per group
  (a voice's CER, a seed's accuracy) with Student's t interval, which, unlike a bootstrap over the
  same few groups, widens for having estimated the spread from them.

With few groups (under about 20) the percentile bootstrap's intervals come out too narrow: the
resamples cannot show more variety than the handful of groups holds. The paired tests' p-values
come from an exact sign-flip test over the groups and do not share that weakness; where an interval
and a p-value disagree over few groups, read the p-value.

Every result prints itself the same way (``str(result)``), and :func:`table` lays several out as a
DataFrame. The helpers are thin: Wilson's interval and the exact binomial test come from scipy; the
bootstrap is the plain percentile bootstrap (Efron & Tibshirani 1993, ch. 13), resampling groups when
told to (the cluster bootstrap, Davison & Hinkley 1997, sec. 3.8).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product

import numpy as np

__all__ = ["Estimate", "Comparison", "SeedSummary", "wilson", "accuracy", "bootstrap", "mcnemar", "welch_t", "permutation_p",
           "paired_bootstrap", "over_seeds", "paired_t", "t_interval", "format_value", "format_p", "table"]

N_BOOT = 2000  # bootstrap resamples
EXACT_FLIPS = 16  # up to this many groups, the sign-flip test enumerates every flip (2**16 = 65,536)
N_FLIPS = 20000  # beyond that, this many random flips


# ---- printing ------------------------------------------------------------------------------

def format_value(x: float, percent: bool = False, digits: int | None = None, sign: bool = False) -> str:
    """One number as every result prints it: a percentage with one decimal, or a plain number
    with three. ``sign`` writes a + before positive numbers (for differences)."""
    digits = (1 if percent else 3) if digits is None else digits
    value = 100 * x if percent else x
    text = f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"
    return text + ("%" if percent and not sign else "")


def format_p(p: float) -> str:
    """A p-value as every result prints it: ``p < 0.001`` below that, never ``p = 0.000``."""
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:.3f}" if p < 0.01 else f"p = {p:.2f}"


_format_p = format_p


@dataclass(frozen=True)
class Estimate:
    """A measured value with its interval: ``str()`` gives e.g. ``97.4% (95% CI 95.3% to 98.6%)``.

    ``method`` says how the interval was made and over what it resamples."""
    value: float
    low: float
    high: float
    n: int
    method: str
    confidence: float = 0.95
    percent: bool = False
    digits: int | None = None

    def __str__(self) -> str:
        f = lambda x: format_value(x, self.percent, self.digits)  # noqa: E731
        return f"{f(self.value)} ({self.confidence:.0%} CI {f(self.low)} to {f(self.high)})"


@dataclass(frozen=True)
class Comparison:
    """System A minus system B on the same items: ``str()`` gives e.g.
    ``+2.3 points (95% CI -0.4 to +5.0), p = 0.09``. ``a`` and ``b`` are each system's value."""
    difference: float
    low: float
    high: float
    p_value: float
    a: float
    b: float
    n: int
    method: str
    confidence: float = 0.95
    percent: bool = False
    digits: int | None = None

    def __str__(self) -> str:
        f = lambda x: format_value(x, self.percent, self.digits, sign=True)  # noqa: E731
        unit = " points" if self.percent else ""
        return (f"{f(self.difference)}{unit} ({self.confidence:.0%} CI {f(self.low)} to {f(self.high)}), "
                f"{_format_p(self.p_value)}")


@dataclass(frozen=True)
class SeedSummary:
    """One result per training seed: ``str()`` gives e.g. ``97.4% ± 0.6 over 5 seeds (96.5% to 98.1%)``,
    the mean, the sample standard deviation and the range. `unit` names what each value is one of
    ("runs" where a seed was trained more than once)."""
    values: tuple
    percent: bool = False
    digits: int | None = None
    unit: str = "seeds"
    mean: float = field(init=False)
    std: float = field(init=False)
    min: float = field(init=False)
    max: float = field(init=False)

    def __post_init__(self):
        values = np.asarray(self.values, dtype=float)
        object.__setattr__(self, "mean", float(values.mean()))
        object.__setattr__(self, "std", float(values.std(ddof=1)))
        object.__setattr__(self, "min", float(values.min()))
        object.__setattr__(self, "max", float(values.max()))

    def __str__(self) -> str:
        f = lambda x: format_value(x, self.percent, self.digits)  # noqa: E731
        spread = format_value(self.std, self.percent, self.digits).rstrip("%")
        return f"{f(self.mean)} ± {spread} over {len(self.values)} {self.unit} ({f(self.min)} to {f(self.max)})"


def table(results: dict, digits: int | None = None):
    """Several results (name -> Estimate, Comparison or SeedSummary) as one DataFrame with a row
    per name: the value and its interval (or spread) as printed text, and the numbers behind them."""
    import pandas as pd

    rows = {}
    for name, r in results.items():
        if isinstance(r, Estimate):
            rows[name] = {"result": str(r), "value": r.value, "low": r.low, "high": r.high, "n": r.n}
        elif isinstance(r, Comparison):
            rows[name] = {"result": str(r), "value": r.difference, "low": r.low, "high": r.high, "n": r.n,
                          "p": r.p_value}
        elif isinstance(r, SeedSummary):
            rows[name] = {"result": str(r), "value": r.mean, "low": r.min, "high": r.max, "n": len(r.values)}
        else:
            raise TypeError(f"table: {name!r} is a {type(r).__name__}, not an Estimate, Comparison or SeedSummary")
    return pd.DataFrame(rows).T


# ---- checking the inputs --------------------------------------------------------------------

def _check_confidence(confidence):
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")


def _vector(x, name):
    array = np.asarray(x, dtype=float)
    if array.ndim != 1 or not len(array):
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return array


def _binary(x, name):
    array = _vector(x, name)
    if not np.isin(array, (0, 1)).all():
        raise ValueError(f"{name} must hold right/wrong items (booleans or 0/1), got values {np.unique(array)[:5]}")
    return array


def _group_index(groups, n):
    """Map `groups` (one label per item) to integer ids 0..G-1; None means every item is its own group."""
    if groups is None:
        return np.arange(n), n
    labels = np.asarray(groups)
    if labels.shape != (n,):
        raise ValueError(f"groups must give one label per item: {n} items, got shape {labels.shape}")
    _, ids = np.unique(labels, return_inverse=True)
    return ids, int(ids.max()) + 1


def _by_group(values, ids, n_groups):
    return np.bincount(ids, weights=values, minlength=n_groups)


def _resample_ratios(numerators, denominators, n_boot, seed):
    """Ratio of sums for `n_boot` resamples of the groups (rows: resamples)."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(numerators), size=(n_boot, len(numerators)))
    return numerators[picks].sum(axis=1) / denominators[picks].sum(axis=1), picks


def _what(n, n_groups, grouped, n_boot):
    units = f"{n_groups} groups of {n} items" if grouped else f"{n} items"
    return f"percentile bootstrap over {units} ({n_boot} resamples)"


# ---- one system ---------------------------------------------------------------------------------

def wilson(k: int, n: int, confidence: float = 0.95) -> Estimate:
    """The share of `k` successes in `n` independent trials with its Wilson score interval
    (Wilson 1927; scipy.stats.binomtest). Use it when items are independent; otherwise
    :func:`accuracy` with `groups`."""
    from scipy.stats import binomtest

    _check_confidence(confidence)
    if int(n) != n or int(k) != k or not 0 <= k <= n or n < 1:
        raise ValueError(f"wilson needs whole numbers 0 <= k <= n and n >= 1, got k={k}, n={n}")
    interval = binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return Estimate(k / n, float(interval.low), float(interval.high), int(n), f"Wilson, {int(n)} items",
                    confidence, percent=True)


def accuracy(correct, groups=None, confidence: float = 0.95, n_boot: int = N_BOOT, seed: int = 0) -> Estimate:
    """The share of right items (`correct`: booleans or 0/1) with an interval: Wilson's when the
    items are independent (`groups` None), else a bootstrap that resamples whole groups."""
    correct = _binary(correct, "correct")
    if groups is None:
        return wilson(int(correct.sum()), len(correct), confidence)
    return bootstrap(correct, groups=groups, confidence=confidence, n_boot=n_boot, seed=seed, percent=True)


def bootstrap(values, weights=None, groups=None, confidence: float = 0.95, n_boot: int = N_BOOT, seed: int = 0,
              percent: bool = False) -> Estimate:
    """A mean, or a pooled rate, with a percentile bootstrap interval.

    Without `weights` the value is the mean of `values` (a loss per item, a 0/1 per item). With
    `weights` it is ``sum(values) / sum(weights)``: a rate pooled over items of unequal size, e.g.
    character errors over reference characters for a CER. Each resample draws items, or whole
    groups when `groups` gives one label per item, with replacement, and recomputes the value.
    """
    _check_confidence(confidence)
    values = _vector(values, "values")
    weights = np.ones_like(values) if weights is None else _vector(weights, "weights")
    if weights.shape != values.shape:
        raise ValueError(f"weights must match values: {values.shape} against {weights.shape}")
    if weights.sum() <= 0 or (weights < 0).any():
        raise ValueError("weights must be non-negative with a positive sum")
    ids, n_groups = _group_index(groups, len(values))
    if n_groups < 2:
        raise ValueError(f"bootstrap needs at least 2 {'groups' if groups is not None else 'items'} to resample, got 1")
    num, den = _by_group(values, ids, n_groups), _by_group(weights, ids, n_groups)
    if (den == 0).any():
        raise ValueError("every group needs a positive total weight")
    ratios, _ = _resample_ratios(num, den, n_boot, seed)
    tail = (1 - confidence) / 2
    low, high = np.quantile(ratios, [tail, 1 - tail])
    return Estimate(float(values.sum() / weights.sum()), float(low), float(high), len(values),
                    _what(len(values), n_groups, groups is not None, n_boot), confidence, percent)


# ---- two systems on the same items ----------------------------------------------------------

def _sign_flip_p(differences) -> float:
    """Two-sided p-value of the paired randomisation test: under "A and B are exchangeable", each
    group's summed difference keeps or flips its sign with probability 1/2."""
    d = differences[differences != 0]
    observed = abs(d.sum())
    if not len(d):
        return 1.0
    tolerance = 1e-9 * max(1.0, observed)
    if len(d) <= EXACT_FLIPS:
        signs = np.array(list(product((1, -1), repeat=len(d))))
        return float((np.abs(signs @ d) >= observed - tolerance).mean())
    rng = np.random.default_rng(0)
    signs = rng.choice((1, -1), size=(N_FLIPS, len(d)))
    return float((1 + (np.abs(signs @ d) >= observed - tolerance).sum()) / (1 + N_FLIPS))


def _paired(a, b, weights, groups, confidence, n_boot, seed, percent, test):
    _check_confidence(confidence)
    if a.shape != b.shape:
        raise ValueError(f"a and b must score the same items: {a.shape} against {b.shape}")
    weights = np.ones_like(a) if weights is None else _vector(weights, "weights")
    if weights.shape != a.shape:
        raise ValueError(f"weights must match the items: {a.shape} against {weights.shape}")
    ids, n_groups = _group_index(groups, len(a))
    if n_groups < 2:
        raise ValueError("a paired comparison needs at least 2 items or groups to resample, got 1")
    da, db, den = (_by_group(x, ids, n_groups) for x in (a, b, weights))
    total = weights.sum()
    value_a, value_b = a.sum() / total, b.sum() / total
    differences, _ = _resample_ratios(da - db, den, n_boot, seed)
    tail = (1 - confidence) / 2
    low, high = np.quantile(differences, [tail, 1 - tail])
    if test == "mcnemar" and groups is None:
        from scipy.stats import binomtest

        a_only, b_only = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
        p = binomtest(a_only, a_only + b_only, 0.5).pvalue if a_only + b_only else 1.0
        method = f"McNemar exact test ({a_only} right only by A, {b_only} only by B of {len(a)} items)"
    else:
        p = _sign_flip_p(da - db)
        units = f"{n_groups} groups" if groups is not None else f"{len(a)} items"
        method = f"paired sign-flip test over {units}"
    method += "; " + _what(len(a), n_groups, groups is not None, n_boot).replace("percentile", "paired percentile")
    return Comparison(float(value_a - value_b), float(low), float(high), float(min(p, 1.0)), float(value_a),
                      float(value_b), len(a), method, confidence, percent)


def mcnemar(a_correct, b_correct, groups=None, confidence: float = 0.95, n_boot: int = N_BOOT,
            seed: int = 0) -> Comparison:
    """Accuracy of A minus accuracy of B on the same items, with a paired bootstrap interval and a
    p-value for "A and B are equally accurate".

    Independent items: McNemar's exact test (McNemar 1947), the binomial test on the items that
    exactly one of the two gets right. Items in groups: the same question asked of whole groups,
    a sign-flip randomisation test of each group's difference (McNemar's test would count a
    group's correlated items as independent evidence)."""
    a, b = _binary(a_correct, "a_correct"), _binary(b_correct, "b_correct")
    return _paired(a, b, None, groups, confidence, n_boot, seed, True, "mcnemar")


def paired_bootstrap(a, b, weights=None, groups=None, confidence: float = 0.95, n_boot: int = N_BOOT,
                     seed: int = 0, percent: bool = False) -> Comparison:
    """A's value minus B's on the same items, for means or pooled rates (`weights` as in
    :func:`bootstrap`: e.g. each system's character errors per utterance, weighted by the
    reference's characters). The interval resamples items or groups once for both systems; the
    p-value comes from the paired sign-flip randomisation test (exact up to 16 groups or items that
    differ, from 20,000 random flips beyond)."""
    a, b = _vector(a, "a"), _vector(b, "b")
    return _paired(a, b, weights, groups, confidence, n_boot, seed, percent, "sign-flip")


# ---- over training seeds --------------------------------------------------------------------------

def over_seeds(values, percent: bool = False, digits: int | None = None, unit: str = "seeds") -> SeedSummary:
    """One result per training seed, summarised: mean, sample standard deviation, range, values.
    This is the spread a rerun gives, which no test-set interval shows. `unit` is what one value is
    the result of, as printed ("seeds", or "runs" where some seeds were trained twice)."""
    values = _vector(values, "values")
    if len(values) < 2:
        raise ValueError(f"over_seeds needs results from at least 2 seeds, got {len(values)}")
    return SeedSummary(tuple(float(v) for v in values), percent, digits, unit)


def _t_half_width(values, confidence):
    """Half the width of Student's t interval for the mean of `values` (n - 1 degrees of freedom)."""
    from scipy import stats

    return float(stats.t.ppf((1 + confidence) / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))


def t_interval(values, confidence: float = 0.95, percent: bool = False, digits: int | None = None) -> Estimate:
    """The mean of a few values, one per group (a voice's CER, a table's accuracy), with Student's t
    interval on n - 1 degrees of freedom.

    With few groups the percentile bootstrap (:func:`bootstrap` with ``groups``) comes out too narrow:
    its resamples cannot vary more than the handful of groups does. The t interval pays for having
    estimated the spread from those few values (its quantile grows as n shrinks), under the assumption
    that the groups' values are roughly normal. It is the unweighted mean of the groups, not a rate
    pooled over their items, so it weighs a short group as much as a long one."""
    _check_confidence(confidence)
    values = _vector(values, "values")
    if len(values) < 2:
        raise ValueError(f"t_interval needs at least 2 values, got {len(values)}")
    mean = float(values.mean())
    half = 0.0 if np.allclose(values, values[0]) else _t_half_width(values, confidence)
    return Estimate(mean, mean - half, mean + half, len(values),
                    f"Student's t over {len(values)} groups ({len(values) - 1} degrees of freedom)", confidence,
                    percent, digits)


def welch_t(a, b, confidence: float = 0.95, percent: bool = False, digits: int | None = None) -> Comparison:
    """A minus B over training runs of two different systems, not paired: one result per seed for each, as
    many seeds as each has. Use it where seed k of A and seed k of B share nothing (different architectures
    start from unrelated weights), so pairing by seed number would only drop seeds and add noise.

    The difference is the difference of the means; the interval is Welch's, with the Welch-Satterthwaite
    degrees of freedom, and the p-value the two-sided Welch test (``scipy.stats.ttest_ind(equal_var=False)``).
    Like :func:`paired_t` it covers what training again would change, under the assumption that each
    system's results are roughly normal."""
    from scipy import stats

    _check_confidence(confidence)
    a, b = _vector(a, "a"), _vector(b, "b")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"welch_t needs results from at least 2 seeds of each, got {len(a)} and {len(b)}")
    mean = float(a.mean() - b.mean())
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    if va + vb == 0:
        low = high = mean
        p = 1.0 if mean == 0 else 0.0
        df = len(a) + len(b) - 2
    else:
        df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
        half = float(stats.t.ppf((1 + confidence) / 2, df) * np.sqrt(va + vb))
        low, high = mean - half, mean + half
        p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return Comparison(mean, float(low), float(high), p, float(a.mean()), float(b.mean()), len(a) + len(b),
                      f"Welch's t-test over {len(a)} and {len(b)} seeds ({df:.1f} degrees of freedom)", confidence,
                      percent, digits)


def permutation_p(a, b) -> float:
    """Two-sided p-value of the exact two-sample permutation test of A against B (one result per seed each, not
    paired): under "A and B are exchangeable", every way of dealing the pooled results into groups of A's and B's
    sizes is equally likely, and p is the share of the deals whose difference of means is at least as far from
    zero as the observed one. Unlike :func:`welch_t` it assumes no normality; with few seeds its smallest possible
    p is coarse (2 / C(n_a + n_b, n_a) for distinct values: 2/56 with 3 and 5 seeds). Enumerates every deal, so
    it is meant for a handful of seeds (at most 20 results in all)."""
    from itertools import combinations

    a, b = _vector(a, "a"), _vector(b, "b")
    if len(a) < 1 or len(b) < 1:
        raise ValueError(f"permutation_p needs at least one result for each, got {len(a)} and {len(b)}")
    pooled = np.concatenate([a, b])
    if len(pooled) > 20:
        raise ValueError(f"permutation_p enumerates every deal; {len(pooled)} results are too many (at most 20)")
    total, observed = pooled.sum(), abs(a.mean() - b.mean())
    deals = np.array(list(combinations(range(len(pooled)), len(a))))
    sums = pooled[deals].sum(1)
    differences = np.abs(sums / len(a) - (total - sums) / len(b))
    return float((differences >= observed - 1e-12 * max(1.0, observed)).mean())


def paired_t(a, b, confidence: float = 0.95, percent: bool = False, digits: int | None = None) -> Comparison:
    """A minus B over training runs: one result per seed (or per run) for each, paired by seed.

    The difference is the mean of the seeds' differences; the interval is Student's t interval on
    those differences (n - 1 degrees of freedom) and the p-value the two-sided paired t-test
    (``scipy.stats.ttest_rel``). Unlike :func:`mcnemar` and :func:`paired_bootstrap`, which hold the
    trained models fixed and resample test items, this covers what training again would change,
    under the assumption that the seeds' differences are roughly normal; with 3 seeds it has 2
    degrees of freedom and its intervals are wide. If every seed gives the same difference, the
    interval is that difference and p is 1 when it is 0, else 0."""
    from scipy import stats

    _check_confidence(confidence)
    a, b = _vector(a, "a"), _vector(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a and b must hold one result per seed each, paired: {a.shape} against {b.shape}")
    if len(a) < 2:
        raise ValueError(f"paired_t needs results from at least 2 seeds, got {len(a)}")
    d = a - b
    mean, n = float(d.mean()), len(d)
    if np.allclose(d, d[0]):
        low = high = mean
        p = 1.0 if mean == 0 else 0.0
    else:
        half = _t_half_width(d, confidence)
        low, high = mean - half, mean + half
        p = float(stats.ttest_rel(a, b).pvalue)
    return Comparison(mean, float(low), float(high), p, float(a.mean()), float(b.mean()), n,
                      f"paired t-test over {n} seeds ({n - 1} degrees of freedom)", confidence, percent, digits)

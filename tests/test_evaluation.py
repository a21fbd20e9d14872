"""utils.evaluation against values worked by hand and against scipy."""
import math

import numpy as np
import pytest

from utils import evaluation as ev


def wilson_by_hand(k, n, z=1.959963984540054):
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@pytest.mark.parametrize("k, n", [(9, 10), (0, 20), (343, 360), (5, 10)])
def test_wilson_matches_the_closed_form(k, n):
    result = ev.wilson(k, n)
    assert (result.low, result.high) == pytest.approx(wilson_by_hand(k, n), abs=1e-9)
    assert result.value == k / n and result.n == n and result.percent


def test_wilson_of_nine_in_ten_is_the_textbook_interval():
    result = ev.wilson(9, 10)
    assert (result.low, result.high) == pytest.approx((0.5958, 0.9821), abs=1e-4)
    assert str(result) == "90.0% (95% CI 59.6% to 98.2%)"


def test_accuracy_without_groups_is_wilson():
    correct = np.r_[np.ones(343), np.zeros(17)]
    assert ev.accuracy(correct) == ev.wilson(343, 360)


def test_mcnemar_with_eight_discordant_pairs_one_way():
    a = np.r_[np.ones(8), np.ones(30), np.zeros(12)]  # A alone right on the first 8
    b = np.r_[np.zeros(8), np.ones(30), np.zeros(12)]
    result = ev.mcnemar(a, b)
    assert result.p_value == pytest.approx(2 * 0.5**8)  # 0.0078
    assert result.difference == pytest.approx(8 / 50) and result.a == pytest.approx(38 / 50)
    assert result.low <= result.difference <= result.high
    assert "8 right only by A, 0 only by B" in result.method


def test_mcnemar_ten_against_two_is_the_binomial_tail():
    a = np.r_[np.ones(10), np.zeros(2), np.ones(20)]
    b = np.r_[np.zeros(10), np.ones(2), np.ones(20)]
    # two-sided exact binomial: 2 * P(X <= 2), X ~ Bin(12, 1/2) = 2 * (1 + 12 + 66) / 4096
    assert ev.mcnemar(a, b).p_value == pytest.approx(158 / 4096)
    assert ev.mcnemar(b, a).difference == pytest.approx(-8 / 32)


def test_mcnemar_with_no_discordant_items_gives_p_one():
    same = np.r_[np.ones(5), np.zeros(5)]
    result = ev.mcnemar(same, same)
    assert result.p_value == 1.0 and result.difference == 0 == result.low == result.high


def test_grouped_mcnemar_counts_groups_not_items():
    # 8 groups (tables) of 5 questions; A gets the whole first group right where B gets it wrong.
    groups = np.repeat(np.arange(8), 5)
    a, b = np.ones(40), np.ones(40)
    b[:5] = 0
    grouped, items = ev.mcnemar(a, b, groups=groups), ev.mcnemar(a, b)
    # one group differs: flipping its sign gives the same |sum| half the time, never less: p = 1
    assert grouped.p_value == 1.0
    assert items.p_value == pytest.approx(2 * 0.5**5)  # five "independent" wins, as McNemar sees them
    assert "sign-flip test over 8 groups" in grouped.method


def test_sign_flip_p_by_hand():
    # per-item differences 1, 2, 3: the 8 sign patterns sum to 6, 4, 2, 0, 0, -2, -4, -6; |sum| >= 6 in 2 of 8
    result = ev.paired_bootstrap([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    assert result.p_value == pytest.approx(2 / 8) and result.difference == pytest.approx(2.0)


def test_sign_flip_by_sampling_agrees_with_a_paired_t_test_on_many_items():
    from scipy.stats import ttest_rel

    rng = np.random.default_rng(1)
    a = rng.normal(0.3, 1, 200)
    b = rng.normal(0, 1, 200)
    ours = ev.paired_bootstrap(a, b)
    assert ours.p_value == pytest.approx(ttest_rel(a, b).pvalue, abs=0.01)
    half = 1.96 * (a - b).std(ddof=1) / math.sqrt(200)
    assert ours.high - ours.low == pytest.approx(2 * half, rel=0.1)


def test_bootstrap_of_a_mean_approaches_the_normal_interval():
    values = np.random.default_rng(0).exponential(1.0, 2000)
    result = ev.bootstrap(values)
    half = 1.96 * values.std(ddof=1) / math.sqrt(len(values))
    assert result.value == pytest.approx(values.mean())
    assert (result.low, result.high) == pytest.approx((values.mean() - half, values.mean() + half), abs=0.01)


def test_bootstrap_pools_a_rate_over_unequal_items():
    errors, lengths = np.array([1, 0, 5, 2]), np.array([10, 5, 20, 15])
    result = ev.bootstrap(errors, weights=lengths, percent=True)
    assert result.value == pytest.approx(8 / 50)  # pooled, not the mean of 0.1, 0, 0.25, 0.133
    assert result.low <= result.value <= result.high


def test_groups_of_one_item_give_the_item_bootstrap():
    values = np.random.default_rng(2).normal(size=30)
    assert ev.bootstrap(values, groups=np.arange(30)) .low == ev.bootstrap(values).low


def test_grouped_bootstrap_is_wider_when_items_of_a_group_agree():
    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(10), 20)  # 10 voices of 20 utterances
    voice_effect = rng.normal(0, 1, 10)[groups]
    values = voice_effect + rng.normal(0, 0.2, 200)  # utterances of one voice are alike
    plain, grouped = ev.bootstrap(values), ev.bootstrap(values, groups=groups)
    assert grouped.value == plain.value
    assert grouped.high - grouped.low > 3 * (plain.high - plain.low)
    assert "10 groups of 200 items" in grouped.method


def test_grouped_accuracy_uses_the_group_bootstrap():
    groups = np.repeat(np.arange(6), 10)
    correct = np.repeat([1, 1, 1, 0, 1, 0], 10)
    result = ev.accuracy(correct, groups=groups)
    assert result.value == pytest.approx(4 / 6) and result.percent
    assert result.high - result.low > ev.wilson(40, 60).high - ev.wilson(40, 60).low


def test_over_seeds_summary_and_format():
    summary = ev.over_seeds([0.965, 0.972, 0.981, 0.974, 0.978], percent=True)
    assert summary.mean == pytest.approx(0.974) and summary.std == pytest.approx(np.std(summary.values, ddof=1))
    assert str(summary) == "97.4% ± 0.6 over 5 seeds (96.5% to 98.1%)"
    assert str(ev.over_seeds([1.5, 2.5])) == "2.000 ± 0.707 over 2 seeds (1.500 to 2.500)"
    assert str(ev.over_seeds([1.5, 2.5], unit="runs")) == "2.000 ± 0.707 over 2 runs (1.500 to 2.500)"


def test_comparison_prints_points_and_p():
    a = np.r_[np.ones(8), np.ones(30), np.zeros(12)]
    b = np.r_[np.zeros(8), np.ones(30), np.zeros(12)]
    text = str(ev.mcnemar(a, b))
    assert text.startswith("+16.0 points (95% CI +") and text.endswith("p = 0.008")


def test_table_lays_results_out():
    results = {"A": ev.wilson(9, 10), "seeds": ev.over_seeds([0.1, 0.2])}
    frame = ev.table(results)
    assert list(frame.index) == ["A", "seeds"] and frame.loc["A", "result"] == str(results["A"])
    with pytest.raises(TypeError, match="'B' is a float"):
        ev.table({"B": 0.5})


@pytest.mark.parametrize("call, message", [
    (lambda: ev.wilson(11, 10), "0 <= k <= n"),
    (lambda: ev.wilson(3, 10, confidence=95), "confidence"),
    (lambda: ev.accuracy([1, 0, 2]), "right/wrong"),
    (lambda: ev.accuracy([1, 0, 1], groups=[0, 1]), "one label per item"),
    (lambda: ev.bootstrap([1.0]), "at least 2 items"),
    (lambda: ev.bootstrap([1.0, 2.0], groups=["a", "a"]), "at least 2 groups"),
    (lambda: ev.bootstrap([1.0, float("nan")]), "NaN"),
    (lambda: ev.bootstrap([1.0, 2.0], weights=[1.0]), "weights must match"),
    (lambda: ev.mcnemar([1, 0, 1], [1, 0]), "same items"),
    (lambda: ev.over_seeds([0.9]), "at least 2 seeds"),
    (lambda: ev.paired_t([0.9], [0.8]), "at least 2 seeds"),
    (lambda: ev.paired_t([0.9, 0.8], [0.8]), "paired"),
    (lambda: ev.t_interval([0.3]), "at least 2 values"),
])
def test_bad_input_names_the_problem(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_paired_t_matches_scipy_over_three_seeds():
    from scipy import stats

    a, b = [0.97, 0.95, 0.98], [0.69, 0.90, 0.69]
    result = ev.paired_t(a, b, percent=True)
    d = np.subtract(a, b)
    interval = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
    assert result.difference == pytest.approx(d.mean())
    assert (result.low, result.high) == pytest.approx(interval)
    assert result.p_value == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert str(result).startswith(f"+{100 * d.mean():.1f} points (95% CI ")
    # by hand: mean 0.2067, sd 0.1358, t = 0.2067 / (0.1358 / sqrt 3) = 2.64 on 2 degrees of freedom
    assert result.p_value == pytest.approx(0.119, abs=0.002)


def test_welch_t_matches_scipy_with_unequal_seed_counts():
    from scipy import stats

    a, b = [0.948, 0.942, 0.953], [0.967, 0.953, 0.975, 0.972, 0.969]  # 3 seeds of one model, 5 of another
    result = ev.welch_t(a, b, percent=True)
    reference = stats.ttest_ind(a, b, equal_var=False)
    assert result.difference == pytest.approx(np.mean(a) - np.mean(b))
    assert (result.low, result.high) == pytest.approx(tuple(reference.confidence_interval(0.95)))
    assert result.p_value == pytest.approx(reference.pvalue) and result.n == 8 and "Welch" in result.method
    # the same numbers paired by seed number would drop two of b's seeds and give another answer
    assert ev.paired_t(a, b[:3]).p_value != pytest.approx(result.p_value)
    with pytest.raises(ValueError, match="at least 2 seeds of each"):
        ev.welch_t([0.9], b)


def test_permutation_p_is_scipys_exact_test_on_the_absolute_difference_of_means():
    from scipy import stats

    a, b = [0.942, 0.953, 0.95], [0.975, 0.953, 0.975, 0.972, 0.964]  # 3 seeds of one model, 5 of another
    reference = stats.permutation_test((a, b), lambda x, y, axis: np.abs(np.mean(x, axis=axis) - np.mean(y, axis=axis)),
                                       permutation_type="independent", n_resamples=np.inf, alternative="greater")
    assert ev.permutation_p(a, b) == pytest.approx(reference.pvalue) == pytest.approx(3 / 56)
    assert ev.permutation_p([1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0, 8.0]) == pytest.approx(2 / 56)  # the smallest p
    assert ev.permutation_p([0.9, 0.9], [0.9, 0.9]) == 1.0
    with pytest.raises(ValueError, match="too many"):
        ev.permutation_p(np.arange(11.0), np.arange(10.0))


def test_paired_t_with_equal_differences_has_no_spread():
    result = ev.paired_t([0.6, 0.7, 0.8], [0.5, 0.6, 0.7])
    assert (result.low, result.high, result.p_value) == pytest.approx((0.1, 0.1, 0.0))
    assert ev.paired_t([0.5, 0.5], [0.5, 0.5]).p_value == 1.0


def test_t_interval_matches_scipy_and_is_wider_than_the_bootstrap_over_few_groups():
    from scipy import stats

    cers = [0.31, 0.31, 0.29, 0.34, 0.27, 0.43, 0.44, 0.31]  # eight voices' CERs
    result = ev.t_interval(cers, percent=True)
    interval = stats.t.interval(0.95, len(cers) - 1, loc=np.mean(cers), scale=stats.sem(cers))
    assert (result.value, result.low, result.high) == pytest.approx((np.mean(cers), *interval))
    assert "7 degrees of freedom" in result.method and str(result).startswith("33.8% (95% CI ")
    boot = ev.bootstrap(cers, groups=range(len(cers)))
    assert result.high - result.low > boot.high - boot.low
    same = ev.t_interval([0.2, 0.2, 0.2])
    assert (same.low, same.high) == pytest.approx((0.2, 0.2))

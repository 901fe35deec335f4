"""Paired tests of RLVR against MLE: tiny graded differences must survive rounding."""

import numpy as np
import pytest

from rlvr_world.stats import paired_test, round_sig, weighted_paired_test


def records(values):
    return {"records": [{"index": i, "group": "g", "value": float(v)} for i, v in enumerate(values)]}


def test_sig_keeps_significant_digits():
    assert round_sig(-6.1234e-5) == -6.123e-5
    assert round_sig(24.04821, 5) == 24.048
    assert round_sig(0.0) == 0.0


def test_graded_delta_of_a_tiny_metric_is_not_rounded_away():
    rng = np.random.default_rng(0)
    mle = rng.uniform(0.004, 0.005, size=200)  # an MSE-sized metric
    rlvr = mle - 3e-5 + rng.normal(0, 1e-6, size=200)
    out = paired_test(records(mle), records(rlvr), "g", binary=False, scale=1.0)
    assert out["delta"] == pytest.approx(float((rlvr - mle).mean()), rel=1e-3)
    assert out["delta"] < 0 and out["lost"] == 200 and out["p"] < 1e-10
    assert out["ci95"][0] <= out["delta"] <= out["ci95"][1] < 0
    # the same fall, for a metric where lower is better, is a gain on every example; delta keeps its sign
    lower = paired_test(records(mle), records(rlvr), "g", binary=False, scale=1.0, lower_is_better=True)
    assert (lower["gained"], lower["lost"]) == (200, 0) and lower["delta"] == out["delta"]


def two_groups(unchanged, changed):
    rows = [("unchanged", v) for v in unchanged] + [("changed", v) for v in changed]
    return {"records": [{"index": i, "group": g, "value": float(v)} for i, (g, v) in enumerate(rows)]}


def test_a_balanced_subset_is_tested_at_the_split_mix():
    # 100 unchanged transitions both models get right, 100 changed: RLVR gets 20 more right (none fewer)
    mle = two_groups([1] * 100, [0] * 100)
    rlvr = two_groups([1] * 100, [1] * 20 + [0] * 80)
    at_split = weighted_paired_test(mle, rlvr, {"unchanged": 0.75, "changed": 0.25})
    assert at_split["delta"] == pytest.approx(0.25 * 20) and (at_split["gained"], at_split["lost"]) == (20, 0)
    assert at_split["p"] < 1e-3 and at_split["ci95"][0] <= at_split["delta"] <= at_split["ci95"][1]
    # weighted as the examples are, it is the plain paired test's difference, with a p-value of McNemar's size
    own = weighted_paired_test(mle, rlvr, {"unchanged": 0.5, "changed": 0.5})
    plain = paired_test(mle, rlvr)
    assert own["delta"] == pytest.approx(plain["delta"]) and own["p"] == pytest.approx(plain["p"], rel=1e-9)
    # as many lost as gained: no evidence either way; nothing moved: p = 1
    mixed = two_groups([1] * 100, [1] * 10 + [0] * 90)
    swapped = two_groups([1] * 100, [0] * 10 + [1] * 10 + [0] * 80)
    assert weighted_paired_test(mixed, swapped, {"unchanged": 0.6, "changed": 0.4})["p"] > 0.5
    assert weighted_paired_test(mle, mle, {"unchanged": 0.6, "changed": 0.4}) == {
        "delta": 0.0, "gained": 0, "lost": 0, "test": "sign-flip", "p": 1.0, "ci95": [0.0, 0.0]}


def test_the_weights_decide_which_stratum_counts():
    # RLVR loses 10 unchanged and gains 10 changed: at a mix of mostly unchanged transitions that is a loss
    mle = two_groups([1] * 50, [0] * 50)
    rlvr = two_groups([1] * 40 + [0] * 10, [1] * 10 + [0] * 40)
    mostly_unchanged = weighted_paired_test(mle, rlvr, {"unchanged": 0.9, "changed": 0.1})
    mostly_changed = weighted_paired_test(mle, rlvr, {"unchanged": 0.1, "changed": 0.9})
    assert mostly_unchanged["delta"] == pytest.approx(-16.0) and mostly_changed["delta"] == pytest.approx(16.0)
    assert mostly_unchanged["p"] < 0.01 and mostly_changed["p"] < 0.01


def test_a_large_gain_gets_its_exact_p_and_a_graded_metric_a_randomisation_one():
    mle = two_groups([0] * 1800, [0] * 1154)
    rlvr = two_groups([1] * 1100 + [0] * 700, [0] * 1154)  # 1,100 gained: far beyond any randomisation's floor
    assert weighted_paired_test(mle, rlvr, {"unchanged": 0.6, "changed": 0.4})["p"] < 1e-100
    graded = two_groups([0.5] * 50, [0.5] * 50)
    better = two_groups([0.75] * 50, [0.5] * 40 + [0.25] * 10)
    out = weighted_paired_test(graded, better, {"unchanged": 0.5, "changed": 0.5}, draws=4000)
    assert out["delta"] == pytest.approx(100 * (0.5 * 0.25 - 0.5 * 0.05)) and 1 / 4001 <= out["p"] < 0.01

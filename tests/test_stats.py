"""Paired tests of RLVR against MLE: tiny graded differences must survive rounding."""

import numpy as np
import pytest

from rlvr_world.stats import paired_test, round_sig


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

"""Paired significance tests of RLVR against MLE on the same test examples.

A 0/1 metric (exact-state accuracy) gets McNemar's exact test, a graded one
(F1, MAE, PSNR, SSIM) the Wilcoxon signed-rank test on the per-example
differences; both come with a paired bootstrap 95% interval of the mean
difference.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import binomtest, wilcoxon


def round_sig(x: float, digits: int = 4) -> float:
    """`x` rounded to `digits` significant digits (a tiny MSE difference stays visible, unlike round(x, 4))."""
    return float(f"{x:.{digits}g}")


def paired_test(mle: dict, rlvr: dict, group: str | None = None, seed: int = 0, binary: bool = True,
                key: str = "value", scale: float = 100.0, lower_is_better: bool = False) -> dict:
    """Paired test of rlvr - mle on the same examples, in points, with a bootstrap 95% interval.

    `key` names the per-example record field compared (default: the metric's
    value); differences are multiplied by `scale` (100: percentage points).
    `gained` and `lost` count the examples RLVR improved and worsened: for a
    `lower_is_better` metric (MSE, MAE, repetition) a fall is a gain. `delta`
    and the interval keep the sign of rlvr - mle.

    A 0/1 metric gets McNemar's exact test (a binomial test on the examples
    where exactly one model is right); a graded one (F1) the Wilcoxon
    signed-rank test on the per-example differences.
    """
    a = {r["index"]: r[key] for r in mle["records"] if group in (None, r["group"]) and key in r}
    b = {r["index"]: r[key] for r in rlvr["records"] if group in (None, r["group"]) and key in r}
    keys = sorted(a.keys() & b.keys())
    x = np.array([a[k] for k in keys], dtype=float)
    y = np.array([b[k] for k in keys], dtype=float)
    if not len(keys):
        return {}
    better, worse = (y < x, y > x) if lower_is_better else (y > x, y < x)
    gained, lost = int(better.sum()), int(worse.sum())
    if not gained + lost:
        p = 1.0
    elif binary:
        p = binomtest(gained, gained + lost, 0.5).pvalue
    else:
        p = wilcoxon(y - x, zero_method="wilcox").pvalue
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(keys), size=(2000, len(keys)))
    diffs = scale * (y[idx] - x[idx]).mean(axis=1)
    return {"delta": round_sig(scale * float((y - x).mean())), "gained": gained, "lost": lost,
            "test": "mcnemar" if binary else "wilcoxon", "p": float(p), **({"mcnemar_p": float(p)} if binary else {}),
            "ci95": [round_sig(float(np.percentile(diffs, 2.5))), round_sig(float(np.percentile(diffs, 97.5)))]}

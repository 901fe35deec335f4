"""Paired significance tests of RLVR against MLE on the same test examples.

A 0/1 metric (exact-state accuracy) gets McNemar's exact test, a graded one
(F1, MAE, PSNR, SSIM) the Wilcoxon signed-rank test on the per-example
differences; both come with a paired bootstrap 95% interval of the mean
difference. A mean that weights the groups otherwise than the examples do
(the test split's mix, measured on a balanced subset) gets a sign-flip
randomisation test (`weighted_paired_test`).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import binom, binomtest, wilcoxon


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


def weighted_paired_test(mle: dict, rlvr: dict, weights: dict[str, float], seed: int = 0, scale: float = 100.0,
                         draws: int = 20000) -> dict:
    """Paired test of rlvr - mle in a mean that gives each group the weight `weights` says (shares summing to 1)
    instead of its share of the examples: e.g. a balanced subset's accuracy at the whole test split's mix.

    Each example's difference counts with its group's weight over its group's size. Under the null hypothesis
    (the two models exchangeable on every example) each difference is as likely negated: the p-value is the
    chance that random signs give a weighted mean at least as far from 0 as the observed one. For a 0/1 metric
    it is exact (per group, the number of examples gained among those that moved is binomial; McNemar's test
    when there is one group); for a graded one it is the share of `draws` random sign flips (a randomisation
    test, whose smallest p is 1 / (draws + 1)). The 95% interval is a bootstrap within each group.
    """
    a = {r["index"]: (r["group"], r["value"]) for r in mle["records"] if r["group"] in weights}
    b = {r["index"]: r["value"] for r in rlvr["records"]}
    keys = sorted(k for k in a if k in b)
    if not keys:
        return {}
    group = np.array([a[k][0] for k in keys])
    d = np.array([b[k] - a[k][1] for k in keys], dtype=float)
    w = np.zeros(len(keys))
    for g, share in weights.items():
        n = int((group == g).sum())
        if n:
            w[group == g] = share / n
    w /= w.sum()
    observed = float((w * d).sum())
    rng = np.random.default_rng(seed)
    moved = d != 0
    if not moved.any():
        p = 1.0
    elif np.all(np.abs(d[moved]) == 1):
        rows = [moved & (group == g) for g in weights]
        p = _exact_sign_flip_p(observed, [(float(w[r][0]), int(r.sum())) for r in rows if r.any()])
    else:
        wd = (w * d)[moved]
        flips = np.concatenate([((rng.integers(0, 2, size=(min(2000, draws - i), wd.size)) * 2 - 1) @ wd)
                                for i in range(0, draws, 2000)])
        p = float((1 + (np.abs(flips) >= abs(observed) - 1e-12).sum()) / (draws + 1))
    boot = np.zeros(2000)
    for g in weights:
        rows = np.flatnonzero(group == g)
        if rows.size:
            boot += (w[rows] * d[rows][rng.integers(0, rows.size, size=(2000, rows.size))]).sum(1)
    return {"delta": round_sig(scale * observed), "gained": int((d > 0).sum()), "lost": int((d < 0).sum()),
            "test": "sign-flip", "p": p,
            "ci95": [round_sig(scale * float(np.percentile(boot, 2.5))),
                     round_sig(scale * float(np.percentile(boot, 97.5)))]}


def _exact_sign_flip_p(observed: float, groups: list[tuple[float, int]]) -> float:
    """P(|sum over groups of w (2K - n)| >= |observed|) for independent K ~ Binomial(n, 1/2) per (w, n) group: the
    weighted sum of n random signs of weight w each."""
    values, probs = np.zeros(1), np.ones(1)
    for w, n in groups:
        k = np.arange(n + 1)
        values = (values[:, None] + w * (2 * k - n)[None, :]).ravel()
        probs = (probs[:, None] * binom.pmf(k, n, 0.5)[None, :]).ravel()
    return float(min(1.0, probs[np.abs(values) >= abs(observed) - 1e-12].sum()))

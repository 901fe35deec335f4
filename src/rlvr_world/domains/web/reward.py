"""The web domain's verifiable reward: F1 of the predicted page difference.

A prediction and the real difference are each three sections of tree lines
(new, deleted, updated). Within a section, predicted lines are matched one to
one with real lines that are exactly equal; the matches of the three sections
are pooled:

    precision = matches / predicted lines     recall = matches / real lines

and the reward is their harmonic mean, F1. With exact equality as the only way
two lines can match, the largest one-to-one matching of a section is the
size of the multiset intersection of its two line lists (the tests check this
against `scipy.optimize.linear_sum_assignment`). Predicting "no change" for a
transition that changes nothing scores 1; a response that does not parse
scores 0 and never raises. Only the answer part of a response is read: the
sections from the last `New items:` header on (`acctree.parse_diff`), so text
or drafts before it do not count (the paper's code scored its reasoning text
too, a quirk we do not keep).
"""

from __future__ import annotations

from collections import Counter

from .acctree import Diff, parse_diff

def matches(predicted: list[str] | tuple[str, ...], real: list[str] | tuple[str, ...]) -> int:
    """Size of the largest one-to-one matching of equal lines."""
    return sum((Counter(predicted) & Counter(real)).values())


def prf(predicted: Diff, real: Diff) -> dict[str, float]:
    """Pooled precision, recall and F1 (each in [0, 1]) of a predicted difference."""
    n_pred = sum(map(len, predicted.sections))
    n_real = sum(map(len, real.sections))
    if n_pred == 0 and n_real == 0:
        return {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    tp = sum(matches(p, r) for p, r in zip(predicted.sections, real.sections))
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_real if n_real else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if tp else 0.0}


def has_answer(text: str) -> bool:
    return "New items:" in text or "Deleted items:" in text or "Updated items:" in text


def f1_reward(text: str, real: Diff) -> tuple[float, dict[str, float]]:
    """F1 of a response against the real difference; parts: precision, recall, and whether it parsed."""
    if not isinstance(text, str) or not has_answer(text):
        return 0.0, {"precision": 0.0, "recall": 0.0, "f1": 0.0, "parsed": 0.0}
    scores = prf(parse_diff(text), real)
    return scores["f1"], {**scores, "parsed": 1.0}


def answer_kind(text: str) -> str:
    """What a response predicts: "no_change" (every section empty), a "change", or nothing readable ("invalid")."""
    if not isinstance(text, str) or not has_answer(text):
        return "invalid"
    return "no_change" if not any(parse_diff(text).sections) else "change"

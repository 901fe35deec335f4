"""Value functions: how likely a (predicted) page is to lead to the task's success.

A value function reads the instruction, the page now and a page that may
follow (both with ids renamed 1, 2, 3, ... by `worlds.dense`): the browser's
hidden state (MiniWoB's reward) never reaches it. `LearnedValue` is a logistic
regression on what changed between the two pages, measured against the
instruction (`features`); it is fitted on the agent's own episodes, labelled
with MiniWoB's real outcome of the episode each step belongs to.

Every feature reads the *difference* between the pages, never the action, so
the value of a candidate is exactly as good as the world model's prediction of
what it does: the same action scored on a wrong prediction scores wrong.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from scipy.stats import mannwhitneyu

from ...domains.web.acctree import diff, parse

FEATURES = (
    "ends",  # a 'START' line appears: MiniWoB has ended the episode (success or not)
    "unchanged",  # nothing changed
    "new", "deleted", "updated",  # log(1 + lines) of each section of the difference
    "goal_focused", "other_focused",  # an element the instruction names (or not) becomes focused
    "goal_checked", "other_checked",  # ... becomes checked or selected (minus those that stop being so)
    "goal_text_shown", "goal_text_lost",  # text the instruction names appears / disappears
    "ends_goal",  # ends, after an element or text the instruction names changed
    "ends_other",  # ends, after only other elements changed
)
STATE = re.compile(r"\b(checked|selected|pressed|expanded): True\b")


def goal_terms(goal: str) -> tuple[str, set[str]]:
    """The instruction in lower case and its quoted phrases."""
    return goal.lower(), {q.strip().lower() for q in re.findall(r'"([^"]+)"', goal) if q.strip()}


def names_goal(name: str, goal: str, quoted: set[str]) -> bool:
    """Whether an element's name is something the instruction mentions."""
    name = name.strip().lower()
    if not name or name in ("start",):
        return False
    return name in quoted or re.search(r"(?<!\w)" + re.escape(name) + r"(?!\w)", goal) is not None


def features(goal: str, before: str, after: str) -> np.ndarray:
    """The feature vector (`FEATURES`) of going from page `before` to page `after` under instruction `goal`."""
    g, quoted = goal_terms(goal)
    d = diff(before, after, rule="aligned")
    old = {n.id: n for n in parse(before)}
    new = {n.id: n for n in parse(after)}
    starts = sum(n.name == "START" for n in new.values()) > sum(n.name == "START" for n in old.values())
    focus = {True: 0, False: 0}
    checked = {True: 0, False: 0}
    for node_id, n in new.items():
        was = old.get(node_id)
        named = names_goal(n.name, g, quoted) or (was is not None and names_goal(was.name, g, quoted))
        if "focused: True" in n.attrs and (was is None or "focused: True" not in was.attrs):
            focus[named] += 1
        checked[named] += len(STATE.findall(n.attrs)) - (len(STATE.findall(was.attrs)) if was else 0)
    texts_before = {n.name.strip().lower() for n in old.values()}
    texts_after = {n.name.strip().lower() for n in new.values()}
    shown = sum(q in texts_after and q not in texts_before for q in quoted)
    lost = sum(q in texts_before and q not in texts_after for q in quoted)
    goal_moved = focus[True] + max(checked[True], 0) + shown > 0
    return np.array([
        starts, d.empty, math.log1p(len(d.new)), math.log1p(len(d.deleted)), math.log1p(len(d.updated)),
        focus[True], focus[False], checked[True], checked[False], shown, lost,
        starts and goal_moved, starts and not goal_moved,
    ], dtype=float)


@dataclass
class LearnedValue:
    """A logistic regression on `features`, standardised by the training set's mean and spread."""

    weights: list[float]  # bias first, then one per feature
    mean: list[float]
    scale: list[float]

    def score(self, goal: str, before: str, after: str) -> float:
        return float(self.logits(features(goal, before, after)[None])[0])

    def logits(self, x: np.ndarray) -> np.ndarray:
        w = np.asarray(self.weights)
        return w[0] + ((x - np.asarray(self.mean)) / np.asarray(self.scale)) @ w[1:]

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, l2: float = 1.0) -> "LearnedValue":
        """Maximum likelihood with an L2 penalty `l2` on the feature weights (not the bias)."""
        mean, scale = x.mean(0), x.std(0)
        scale[scale == 0] = 1.0
        z = np.hstack([np.ones((len(x), 1)), (x - mean) / scale])  # (N, 1 + F)

        def loss(w):
            t = z @ w
            p = 1 / (1 + np.exp(-t))
            nll = np.sum(np.logaddexp(0, t) - y * t) + 0.5 * l2 * np.sum(w[1:] ** 2)
            grad = z.T @ (p - y) + l2 * np.r_[0, w[1:]]
            return nll, grad

        w = minimize(loss, np.zeros(z.shape[1]), jac=True, method="L-BFGS-B").x
        return cls(w.tolist(), mean.tolist(), scale.tolist())

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"features": FEATURES, "weights": self.weights, "mean": self.mean,
                                          "scale": self.scale}, indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "LearnedValue":
        d = json.loads(Path(path).read_text())
        if tuple(d.get("features", ())) != FEATURES:
            raise ValueError(f"{path}: a value function over other features; fit it again")
        return cls(d["weights"], d["mean"], d["scale"])

    def named_weights(self) -> dict[str, float]:
        return {"bias": round(self.weights[0], 4), **{f: round(w, 4) for f, w in zip(FEATURES, self.weights[1:])}}


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve: the chance a positive example outscores a negative one (ties count half)."""
    pos, neg = scores[labels > 0], scores[labels <= 0]
    if not len(pos) or not len(neg):
        return float("nan")
    return float(mannwhitneyu(pos, neg).statistic / (len(pos) * len(neg)))

"""Value functions: how likely a (predicted) page is to lead to the task's success.

A value function reads the instruction, the page now and a page that may
follow (both with ids renamed 1, 2, 3, ... by `worlds.dense`): the browser's
hidden state (MiniWoB's reward) never reaches it. `LearnedValue` is a logistic
regression on what changed between the two pages, measured against the
instruction (`features`); it is fitted on the proposal policy's own episodes,
labelled with MiniWoB's real outcome. `JudgeValue` asks a pretrained LM.

The features read the *difference* between the pages, and which element the
action acts on (on some pages, a menu say, every item ends the episode and
only the action tells the right one from the wrong): the value of a candidate
is as good as the world model's prediction of what it does, since whether it
ends the episode, what it checks, focuses or shows, come from the prediction.
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

from ...domains.web.acctree import parse

# Only what says whether the task is being done right. The sizes of the difference and the number of empty fields
# were tried and dropped: they raised AUC across tasks (0.89 against 0.86 on the steps that end an episode, 4-fold
# by episode) by learning which tasks tend to succeed, not which move is right (docs/webagent.md)
FEATURES = (
    "ends",  # a 'START' line appears: MiniWoB has ended the episode (success or not)
    "goal_focused", "other_focused",  # an element the instruction names (or not) becomes focused
    "goal_checked", "other_checked",  # ... becomes checked or selected (minus those that stop being so)
    "unmet",  # on the page after: elements the instruction names that could be checked but are not, quoted text
    # that no field holds (no element shows, on a page without fields), and empty fields when it says enter or type
    "act_goal",  # the action acts on an element the instruction names
)
STATE = re.compile(r"\b(checked|selected|pressed|expanded): True\b")
ENTER = re.compile(r"\b(enter|type)\b")
FIELDS = {"textbox", "searchbox", "combobox", "spinbutton", "TextField"}
CHECKABLE = {"checkbox", "radio", "tab", "option", "menuitemcheckbox", "menuitemradio", "switch", "ListBoxOption",
             "MenuListOption", "treeitem"}


def goal_terms(goal: str) -> tuple[str, set[str]]:
    """The instruction in lower case and its quoted phrases."""
    return goal.lower(), {q.strip().lower() for q in re.findall(r'"([^"]+)"', goal) if q.strip()}


def names_goal(name: str, goal: str, quoted: set[str]) -> bool:
    """Whether an element's name is something the instruction mentions."""
    name = name.strip().lower()
    if not name or name == "start":  # MiniWoB's own start button, shown when an episode ends
        return False
    return name in quoted or re.search(r"(?<!\w)" + re.escape(name) + r"(?!\w)", goal) is not None


def features(goal: str, before: str, after: str, action: str = "") -> np.ndarray:
    """The feature vector (`FEATURES`) of going from page `before` to page `after` by `action` (its text, in the
    pages' ids) under instruction `goal`."""
    g, quoted = goal_terms(goal)
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
    texts_after = {n.name.strip().lower() for n in new.values()}
    values = field_values(list(new.values()))
    held = (lambda q: any(v == q or v == "•" * len(q) for v in values)) if values else (lambda q: q in texts_after)
    unmet = sum(n.role in CHECKABLE and names_goal(n.name, g, quoted) and not STATE.search(n.attrs)
                for n in new.values()) + sum(not held(q) for q in quoted)
    if ENTER.search(g):  # asked to enter text: a field left empty is still to do
        unmet += sum(not v for v in values)
    target = re.match(r"\s*(?:click|hover|type)\s*\[(\d+)\]", action)
    act_goal = target is not None and target[1] in old and names_goal(old[target[1]].name, g, quoted)
    return np.array([starts, focus[True], focus[False], checked[True], checked[False], unmet, act_goal], dtype=float)


def field_values(nodes: list) -> list[str]:
    """What each text field of a page holds (lower case): the text of the lines under it; a password shows bullets."""
    values = {n.id: [] for n in nodes if n.role in FIELDS}
    for n in nodes:
        if n.parent in values and n.name.strip():
            values[n.parent].append(n.name.strip().lower())
    return [" ".join(v) for v in values.values()]


@dataclass
class LearnedValue:
    """A logistic regression on `features`, standardised by the training set's mean and spread.

    With `continuation` set (the default fit), the regression judges only
    pages on which MiniWoB has ended the episode, where the label is exact
    (the step's own reward), and every other page is worth `continuation`:
    the log-odds that the policy's episodes succeed from a page that did not
    end, with that many actions left (none left: the episode has failed). A
    candidate that ends the episode is then taken when it looks more likely
    right than carrying on; among those that do not, the tie goes to the
    policy's own order. (Fitted on every step with the episode's outcome
    instead, the regression learns which tasks tend to succeed: pages that
    gain elements, say, and it steers the agent off the policy's good moves.)
    """

    weights: list[float]  # bias first, then one per feature
    mean: list[float]
    scale: list[float]
    continuation: list[float] | None = None  # by steps left after this one: the log-odds score of a page that does
    # not end the episode (None: the regression scores every page)

    def score(self, goal: str, before: str, after: str, action: str = "", steps_left: int = 1) -> float:
        return float(self.logits(features(goal, before, after, action)[None], np.array([steps_left]))[0])

    def logits(self, x: np.ndarray, steps_left: np.ndarray | None = None) -> np.ndarray:
        """Scores of feature rows (N, F); `steps_left` (N,): actions left after each step (default: 1)."""
        w = np.asarray(self.weights)
        t = w[0] + ((x - np.asarray(self.mean)) / np.asarray(self.scale)) @ w[1:]  # (N,)
        if self.continuation is None:
            return t
        left = np.ones(len(x), dtype=int) if steps_left is None else np.asarray(steps_left, dtype=int)
        carry_on = np.asarray(self.continuation)[np.clip(left, 0, len(self.continuation) - 1)]  # (N,)
        return np.where(x[:, FEATURES.index("ends")] > 0, t, carry_on)

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, steps_left: np.ndarray | None = None, l2: float = 1.0,
            split: bool = True) -> LearnedValue:
        """Maximum likelihood with an L2 penalty `l2` on the feature weights (not the bias); `split`: see the class."""
        continuation = None
        if split:
            ends = x[:, FEATURES.index("ends")] > 0
            left = np.zeros(len(x), dtype=int) if steps_left is None else np.asarray(steps_left, dtype=int)
            continuation = []
            for n in range(int(left.max(initial=0)) + 1):
                rows = ~ends & (left == n)
                p = (y[rows].sum() + 1) / (rows.sum() + 2)  # add-one smoothed
                continuation.append(float(math.log(p / (1 - p))))
            if not ends.any():
                raise ValueError("no step of the value data ends an episode: collect more (--value-episodes)")
            x, y = x[ends], y[ends]
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
        return cls(w.tolist(), mean.tolist(), scale.tolist(), continuation)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"features": FEATURES, "weights": self.weights, "mean": self.mean,
                                          "scale": self.scale, "continuation": self.continuation}, indent=1))

    @classmethod
    def load(cls, path: str | Path) -> LearnedValue:
        d = json.loads(Path(path).read_text())
        if tuple(d.get("features", ())) != FEATURES:
            raise ValueError(f"{path}: a value function over other features; fit it again")
        return cls(d["weights"], d["mean"], d["scale"], d.get("continuation"))

    def named_weights(self) -> dict[str, float]:
        return {"bias": round(self.weights[0], 4), **{f: round(w, 4) for f, w in zip(FEATURES, self.weights[1:])},
                **({"continuation": [round(c, 4) for c in self.continuation]} if self.continuation is not None else {})}


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve: the chance a positive example outscores a negative one (ties count half)."""
    pos, neg = scores[labels > 0], scores[labels <= 0]
    if not len(pos) or not len(neg):
        return float("nan")
    return float(mannwhitneyu(pos, neg).statistic / (len(pos) * len(neg)))


class JudgeValue:
    """A pretrained instruction-following LM as the judge: log P(Yes) - log P(No) that the step made progress.

    It reads the instruction and the two pages in its chat template and
    answers one token; nothing is generated, so a candidate costs one forward
    pass over its prompt (pages are cut to `max_page_chars` characters each).
    """

    QUESTION = ("Task: {goal}\n\nWeb page before the action:\n{before}\n\nAction: {action}\n\n"
                "Web page after the action:\n{after}\n\n"
                "Did the action bring the task closer to being completed correctly? Answer Yes or No.")

    def __init__(self, spec: str = "smollm2-135m", *, dtype: str = "auto", max_page_chars: int = 3000):
        import torch

        from ... import device as dev
        from ...engine import models, pretrained
        from ...text import load_tokenizer

        path = pretrained.resolve(spec)
        self.spec = spec
        self.torch, self.model, self.tokenizer = torch, models.load(path).eval(), load_tokenizer(path)
        self.amp = dev.amp(torch.device("cpu"), dtype)
        self.max_page_chars = max_page_chars
        yes, no = (self.tokenizer.encode(w, add_special_tokens=False) for w in ("Yes", "No"))
        self.yes, self.no = yes[0], no[0]

    def score(self, goal: str, before: str, after: str, action: str = "", steps_left: int = 1) -> float:
        text = self.QUESTION.format(goal=goal, before=before[: self.max_page_chars], action=action,
                                    after=after[: self.max_page_chars])
        prompt = self.tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                    add_generation_prompt=True)
        ids = self.torch.tensor([self.tokenizer.encode(prompt, add_special_tokens=False)])  # (1, T)
        with self.torch.inference_mode(), self.amp():
            logits = self.model(input_ids=ids).logits[0, -1].float()  # (V,)
        logp = self.torch.log_softmax(logits, -1)
        return float(logp[self.yes] - logp[self.no])

"""Verifiable rewards for text-game state prediction: pure functions, never raising.

The response (a JSON difference) is applied to the current state to rebuild
the predicted next state, which is compared with the real next state object
by object, property by property, as the benchmark's `evaluate` does:
`contains` compares as a set, a missing object or key is an error, extra
predicted objects are ignored; the three score keys compare separately.

- `binary`: 1 when every property and every score key is right, else 0.
- `task_specific`: 0.09 * property accuracy + 0.01 * score-key accuracy
  + 0.2 * binary + accuracy on the properties that really change (a term left
  out when nothing changes), as in the paper. Its range is [0, 1.3].

Departures from the paper's code, on purpose:
- Objects in `modified` whose uuid is not in the current state are *added* to
  the predicted state. The paper's `recover_game_state_from_partial` only
  walks the current objects, so a transition that creates an object (51 of
  the 2,954 test transitions) could never be predicted right; we fix that.
- The response must be strict JSON (`json.loads`): nothing is repaired, so an
  output that is wrong as text cannot be scored as right.

Every unparseable or ill-formed response scores 0 and says why in
`parts["why"]`, with `parts["parsed"]` = 0.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .data import Transition

SCORE_KEYS = ("score", "gameOver", "gameWon")


@dataclass
class Comparison:
    """Counts from comparing a predicted state with the real one."""

    props: int = 0  # compared (object, property) pairs, `contains` included
    props_right: int = 0
    changing: int = 0  # pairs whose value really changes (all pairs of a new object)
    changing_right: int = 0
    score_keys: int = 0
    score_right: int = 0

    @property
    def exact(self) -> bool:
        return self.props_right == self.props and self.score_right == self.score_keys


def parse_diff(text: str) -> tuple[dict | None, str]:
    """A well-formed difference dict, or None and the reason it is not one."""
    try:
        diff = json.loads(text)
    except (RecursionError, ValueError, TypeError):  # TypeError: not text at all (None, a number, ...)
        return None, "not JSON"
    if not isinstance(diff, dict):
        return None, "not a JSON object"
    modified, removed, score = diff.get("modified", []), diff.get("removed", []), diff.get("score", {})
    if not isinstance(modified, list) or not all(isinstance(o, dict) and "uuid" in o for o in modified):
        return None, "'modified' is not a list of objects with uuids"
    if not isinstance(removed, list) or not isinstance(score, dict):
        return None, "'removed' is not a list or 'score' is not an object"
    try:
        hash(tuple(o["uuid"] for o in modified) + tuple(removed))
    except TypeError:
        return None, "uuids are not plain values"
    return {"modified": modified, "removed": removed, "score": score}, ""


def answer_kind(text: str) -> str:
    """What an answer does: "attempted" (it changes an object or the score), "no_change" (a well-formed empty
    difference) or "invalid" (not a difference at all)."""
    diff, _ = parse_diff(text)
    if diff is None:
        return "invalid"
    return "attempted" if diff["modified"] or diff["removed"] or diff["score"] else "no_change"


def apply_diff(objects: list[dict], score: dict, diff: dict) -> tuple[dict[Any, dict], dict]:
    """The predicted next state: objects by uuid, and the score."""
    removed = set(diff["removed"])
    state = {o["uuid"]: o for o in objects if o["uuid"] not in removed}
    for o in diff["modified"]:
        state[o["uuid"]] = o  # replaces a current object, or adds a new one (see module doc)
    return state, (diff["score"] or score)


def _contents(x: Any) -> list[str] | None:
    return sorted(map(str, x)) if isinstance(x, list) else None


def _units(obj: dict) -> dict[str, Any]:
    """The comparable parts of an object: each property, and `contains` as a set."""
    props = obj.get("properties")
    units = dict(props) if isinstance(props, dict) else {}
    units["\0contains"] = _contents(obj.get("contains"))
    return units


def compare(pred: dict[Any, dict], pred_score: dict, t: Transition) -> Comparison:
    c = Comparison()
    before = {o["uuid"]: _units(o) for o in t.objects}
    for true_obj in t.next_objects:
        truth = _units(true_obj)
        old = before.get(true_obj["uuid"])
        guess_obj = pred.get(true_obj["uuid"])
        guess = _units(guess_obj) if isinstance(guess_obj, dict) else {}
        for key, value in truth.items():
            right = key in guess and guess[key] == value
            c.props += 1
            c.props_right += right
            if old is None or key not in old or old[key] != value:
                c.changing += 1
                c.changing_right += right
    for key in SCORE_KEYS:
        if key in t.next_score:
            c.score_keys += 1
            c.score_right += key in pred_score and pred_score[key] == t.next_score[key]
    return c


def _failure(reason: str) -> tuple[float, dict[str, Any]]:
    return 0.0, {"parsed": 0.0, "format_error": 1.0, "exact": 0.0, "prop_acc": 0.0, "score_acc": 0.0, "why": reason}


def evaluate(text: str, t: Transition) -> tuple[Comparison | None, dict[str, Any]]:
    """Compare a response with the real next state; None when it cannot be parsed."""
    diff, why = parse_diff(text)
    if diff is None:
        return None, _failure(why)[1]
    try:
        state, score = apply_diff(t.objects, t.score, diff)
        c = compare(state, score, t)
    except Exception:  # noqa: BLE001 - model output must never crash a run
        return None, _failure("unusable difference")[1]
    parts = {
        "parsed": 1.0,
        "format_error": 0.0,
        "exact": float(c.exact),
        "prop_acc": c.props_right / max(c.props, 1),
        "score_acc": c.score_right / max(c.score_keys, 1),
    }
    if c.changing:
        parts["changing_acc"] = c.changing_right / c.changing
    return c, parts


def binary(text: str, t: Transition) -> tuple[float, dict[str, Any]]:
    """1.0 when the rebuilt next state is exactly right, else 0.0."""
    c, parts = evaluate(text, t)
    return (float(c.exact) if c else 0.0), parts


def task_specific(text: str, t: Transition) -> tuple[float, dict[str, Any]]:
    """The paper's shaped reward: dense credit for properties, score keys and real changes."""
    c, parts = evaluate(text, t)
    if c is None:
        return 0.0, parts
    value = 0.09 * parts["prop_acc"] + 0.01 * parts["score_acc"] + 0.2 * parts["exact"]
    value += parts.get("changing_acc", 0.0)
    return value, parts


REWARDS = {"binary": binary, "task_specific": task_specific}

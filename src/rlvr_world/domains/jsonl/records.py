"""Your own transitions: JSON-lines records of `{state, action, next_state}`, their responses and rewards.

A state is a string or a JSON object (the same kind in every record). The
model answers a string state with the whole next state, and a JSON-object
state with the difference of its top-level fields,
`{"set": {field: new value, ...}, "unset": [removed field, ...]}`, which is
applied to the state to get the prediction. Every reward compares the
predicted next state with the real one and lies in [0, 1]:

- `exact`: 1 when the prediction equals the next state.
- `field_accuracy`: the share of fields (of either state) whose values agree;
  the fields of a string state are its lines, by position.
- `diff_f1`: F1 of the predicted changes against the real ones (set and
  removed fields; for strings, added and removed lines); 1 when both are empty.
- `line_f1`: F1 of the predicted next state's lines against the real ones
  (a JSON object is one `"field": value` line per field), as the web domain's
  reward counts lines.

Rewards never raise: a response that cannot be read scores 0 with
`parts["why"]`.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...engine.errors import UserError
from ..jsonlines import read_json_lines


class DataError(UserError, ValueError):
    """A records file that is missing or malformed (the message names the file and line)."""


@dataclass
class Record:
    state: str | dict
    action: str
    next_state: str | dict

    @property
    def changed(self) -> bool:
        return self.state != self.next_state

    @property
    def structured(self) -> bool:
        return isinstance(self.state, dict)


def dumps(x: Any) -> str:
    return json.dumps(x, separators=(",", ":"), ensure_ascii=False)


def read_records(path: str | Path) -> list[Record]:
    """Records of a (gzipped) JSON-lines file, or a DataError naming the file and line."""
    out = read_json_lines(path, _record, DataError, "a record")
    kinds = {r.structured for r in out}
    if len(kinds) > 1:
        first = next(i for i, r in enumerate(out, 1) if r.structured != out[0].structured)
        raise DataError(f"{path}: the states of record 1 and record {first} are of different kinds "
                        f"(a string and a JSON object): use one kind in a file")
    return out


def _record(row: Any) -> Record:
    if not isinstance(row, dict):
        raise TypeError("a record must be a JSON object with state, action and next_state")
    missing = [k for k in ("state", "action", "next_state") if k not in row]
    if missing:
        raise TypeError(f"the record has no {', '.join(missing)}")
    state, action, nxt = row["state"], row["action"], row["next_state"]
    for name, value in (("state", state), ("next_state", nxt)):
        if not isinstance(value, (str, dict)):
            raise TypeError(f"{name} must be a string or a JSON object, not {type(value).__name__}")
    if type(state) is not type(nxt):
        raise TypeError("state and next_state must be of the same kind (both strings or both JSON objects)")
    return Record(state, action if isinstance(action, str) else dumps(action), nxt)


# ---- prompts and responses ---------------------------------------------------------------------------------------

def state_text(state: str | dict) -> str:
    return state if isinstance(state, str) else dumps(state)


def prompt_text(r: Record) -> str:
    return f"state:\n{state_text(r.state)}\naction: {r.action}\nnext:\n"


def state_diff(state: dict, nxt: dict) -> dict:
    return {"set": {k: v for k, v in nxt.items() if k not in state or state[k] != v},
            "unset": [k for k in state if k not in nxt]}


def target_text(r: Record) -> str:
    return dumps(state_diff(r.state, r.next_state)) if r.structured else r.next_state


def trivial_text(r: Record) -> str:
    """The answer "nothing changes": an empty difference, or the string state itself."""
    return target_text(Record(r.state, r.action, r.state))


def kind_of(text: str, r: Record) -> str:
    """What a response predicts: "no_change", a "change", or nothing readable ("invalid")."""
    pred, _ = predicted_state(text, r)
    return "invalid" if pred is None else "no_change" if pred == r.state else "change"


def predicted_state(text: str, r: Record) -> tuple[str | dict | None, str]:
    """The next state a response predicts, or None and why it cannot be read."""
    if not isinstance(text, str):
        return None, "not text"
    if not r.structured:
        return text, ""
    try:
        diff = json.loads(text)
    except (ValueError, RecursionError):
        return None, "not JSON"
    if not isinstance(diff, dict) or set(diff) - {"set", "unset"} or not isinstance(diff.get("set", {}), dict) \
            or not isinstance(diff.get("unset", []), list):  # a misspelt key is no empty difference
        return None, "not a difference ({\"set\": {...}, \"unset\": [...]})"
    unset = {k for k in diff.get("unset", []) if isinstance(k, str)}
    return {**{k: v for k, v in r.state.items() if k not in unset}, **diff.get("set", {})}, ""


# ---- rewards -----------------------------------------------------------------------------------------------------

def _fields(state: str | dict) -> dict:
    return state if isinstance(state, dict) else dict(enumerate(state.splitlines()))


def _lines(state: str | dict) -> Counter:
    if isinstance(state, dict):
        return Counter(f"{json.dumps(k)}: {dumps(v)}" for k, v in state.items())
    return Counter(state.splitlines())


def _changes(before: str | dict, after: str | dict) -> Counter:
    if isinstance(before, dict):
        d = state_diff(before, after)
        return Counter([f"set {json.dumps(k)}: {dumps(v)}" for k, v in d["set"].items()]
                       + [f"unset {json.dumps(k)}" for k in d["unset"]])
    a, b = _lines(before), _lines(after)
    return Counter({f"+{k}": v for k, v in (b - a).items()}) + Counter({f"-{k}": v for k, v in (a - b).items()})


def f1(pred: Counter, true: Counter) -> float:
    """F1 of two multisets; 1 when both are empty."""
    if not pred and not true:
        return 1.0
    hits = sum((pred & true).values())
    return 2 * hits / (sum(pred.values()) + sum(true.values()))


def _scorer(measure):
    def reward(text: str, r: Record) -> tuple[float, dict[str, Any]]:
        try:
            pred, why = predicted_state(text, r)
            if pred is None:
                return 0.0, {"parsed": 0.0, "why": why}
            value = float(measure(pred, r))
        except Exception as e:  # noqa: BLE001 - model output must never crash a run
            return 0.0, {"parsed": 0.0, "why": f"unusable response ({type(e).__name__})"}
        return value, {"parsed": 1.0}
    reward.__doc__ = measure.__doc__
    return reward


def _exact(pred, r: Record) -> float:
    """1 when the predicted next state equals the real one."""
    if isinstance(pred, str):
        return float(pred.strip() == r.next_state.strip())
    return float(pred == r.next_state)


def _field_accuracy(pred, r: Record) -> float:
    """The share of fields of either state whose values agree."""
    p, t = _fields(pred), _fields(r.next_state)
    keys = set(p) | set(t)
    return sum(k in p and k in t and p[k] == t[k] for k in keys) / len(keys) if keys else 1.0


def _diff_f1(pred, r: Record) -> float:
    """F1 of the predicted changes against the real ones."""
    return f1(_changes(r.state, pred), _changes(r.state, r.next_state))


def _line_f1(pred, r: Record) -> float:
    """F1 of the predicted next state's lines against the real ones."""
    return f1(_lines(pred), _lines(r.next_state))


REWARDS = {"exact": _scorer(_exact), "field_accuracy": _scorer(_field_accuracy), "diff_f1": _scorer(_diff_f1),
           "line_f1": _scorer(_line_f1)}


def user_reward(spec: str):
    """The reward `module:function` names: `function(predicted next state, record) -> (value, parts)`.

    It is called only on responses that can be read (others score 0). It is
    imported when the run starts, so a wrong name is one line before any work,
    and `check_user_reward` tries it on training records before any work too.
    During RL a call that raises, or returns a value that is not a finite
    number, scores 0 with `parts["why"]` saying so, and a warning is printed
    the first time each kind of failure happens: one bad record does not end a
    run, and the reward parts logged per step count such calls
    (`reward/reward_error`).
    """
    import importlib
    import os
    import sys

    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"a reward of your own is named module:function, got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())  # the user's own module, next to their data
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot load the reward {spec}: {e}") from None
    warned: set[str] = set()

    def reward(text: str, r: Record) -> tuple[float, dict[str, Any]]:
        pred, why = predicted_state(text, r)
        if pred is None:
            return 0.0, {"parsed": 0.0, "why": why}
        try:
            value, parts = called(spec, fn, pred, r)
        except ValueError as e:
            if type(e.__cause__).__name__ not in warned:
                warned.add(type(e.__cause__).__name__)
                print(f"warning: {e}; such calls score 0 (said once per kind of failure)", file=sys.stderr)
            return 0.0, {"parsed": 1.0, "reward_error": 1.0, "why": str(e)}
        return value, {"parsed": 1.0, "reward_error": 0.0, **parts}

    reward.__doc__ = fn.__doc__
    reward.spec, reward.raw = spec, fn
    return reward


def called(spec: str, fn, pred, r: Record) -> tuple[float, dict[str, float]]:
    """`fn(pred, r)` as (finite value, numeric parts), or a one-line ValueError naming `spec`."""
    import math

    try:
        value, parts = fn(pred, r)
        value = float(value)
    except Exception as e:  # noqa: BLE001 - the user's code: any failure becomes one line
        raise ValueError(f"the reward {spec} raised {type(e).__name__}: {e}") from e
    if not math.isfinite(value):
        raise ValueError(f"the reward {spec} returned {value}") from ArithmeticError()
    return value, {k: float(v) for k, v in dict(parts or {}).items() if isinstance(v, (int, float))}


def check_user_reward(reward, records: list[Record], n: int = 20) -> None:
    """Before any work: the reward returns a finite number on the true next state of the first `n` records, and
    scores it at least as high as the prediction "nothing changes"; else a one-line ValueError."""
    for i, r in enumerate(records[:n], 1):
        truth, _ = called(reward.spec, reward.raw, r.next_state, r)
        nothing, _ = called(reward.spec, reward.raw, r.state, r)
        if truth < nothing:
            raise ValueError(f"the reward {reward.spec} scores record {i}'s true next state ({truth:g}) below "
                             f"the prediction that nothing changes ({nothing:g}): it should score being right highest")


class RewardTable(dict):
    """The built-in rewards, and any `module:function` of your own: such a name is a member as it is, and its module
    is imported when the reward is first looked up (`table[name]`, `table.get(name)`)."""

    def __contains__(self, name) -> bool:
        return super().__contains__(name) or _is_user_reward(name)

    def __missing__(self, name):
        if not _is_user_reward(name):
            raise KeyError(name)
        self[name] = reward = user_reward(name)
        return reward

    def get(self, name, default=None):
        return self[name] if name in self else default


def _is_user_reward(name) -> bool:
    return isinstance(name, str) and ":" in name

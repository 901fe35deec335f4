"""A small household environment as JSON-lines records, with a chosen share of transitions that change the state.

    python -m rlvr_world.domains.jsonl.synthetic --out data/house-50 --changed 0.5

writes `train.jsonl` and `test.jsonl` for `rlvr-world run --domain jsonl`.
A robot moves between four rooms, switches each room's light, opens, closes,
locks and unlocks a door (locking needs the key in hand) and carries one of
three objects at a time. An action whose precondition fails changes nothing
(picking up an object in another room, switching on a light that is on), so
whether anything changes is a rule the world model has to learn, not a
property of the action's words. Each record's state is drawn at random, then
an action that changes it (with probability `changed`) or one that does not:
the share of changing transitions is exact in expectation, for any share in
[0, 1]. Used as the fast test bed of the RL recipe (docs/grpo.md) and by the
tests.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

ROOMS = ("kitchen", "hall", "bedroom", "bath")
THINGS = ("cup", "key", "book")


def random_state(rng: random.Random) -> dict:
    holding = rng.choice(("nothing",) + THINGS)
    state = {"robot": rng.choice(ROOMS), "holding": holding, "door": rng.choice(("open", "closed", "locked"))}
    state.update({f"light_{r}": rng.choice(("on", "off")) for r in ROOMS})
    state.update({t: "hand" if t == holding else rng.choice(ROOMS) for t in THINGS})
    return state


def actions() -> list[str]:
    return ([f"go to the {r}" for r in ROOMS] + ["switch the light on", "switch the light off", "open the door",
            "close the door", "lock the door", "unlock the door", "put down"] + [f"pick up the {t}" for t in THINGS])


def step(state: dict, action: str) -> dict:
    """The next state: the action's effect where its precondition holds, else the same state."""
    s = dict(state)
    here, light = s["robot"], f"light_{s['robot']}"
    if action.startswith("go to the "):
        s["robot"] = action.removeprefix("go to the ")
    elif action.startswith("switch the light "):
        s[light] = action.removeprefix("switch the light ")
    elif action == "open the door" and s["door"] == "closed":
        s["door"] = "open"
    elif action == "close the door" and s["door"] == "open":
        s["door"] = "closed"
    elif action == "lock the door" and s["door"] == "closed" and s["holding"] == "key":
        s["door"] = "locked"
    elif action == "unlock the door" and s["door"] == "locked" and s["holding"] == "key":
        s["door"] = "closed"
    elif action == "put down" and s["holding"] != "nothing":
        s[s["holding"]], s["holding"] = here, "nothing"
    elif action.startswith("pick up the "):
        thing = action.removeprefix("pick up the ")
        if s["holding"] == "nothing" and s[thing] == here and s[light] == "on":  # it must be seen to be taken
            s[thing], s["holding"] = "hand", thing
    return s


def record(rng: random.Random, changed: float) -> dict:
    """One transition whose state changes with probability `changed` (redrawn until such an action exists)."""
    want = rng.random() < changed
    while True:
        state = random_state(rng)
        fitting = [a for a in actions() if (step(state, a) != state) == want]
        if fitting:
            action = rng.choice(fitting)
            return {"state": state, "action": action, "next_state": step(state, action)}


def write(out: Path, changed: float, n_train: int, n_test: int, seed: int = 0) -> dict[str, Path]:
    """`train.jsonl` and `test.jsonl` in `out`; the test records are drawn from a stream of their own."""
    if not 0.0 <= changed <= 1.0:
        raise ValueError(f"--changed must lie in [0, 1], not {changed}")
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, n, offset in (("train", n_train, 0), ("test", n_test, 1)):
        rng = random.Random(seed * 2 + offset)
        paths[split] = out / f"{split}.jsonl"
        paths[split].write_text("".join(json.dumps(record(rng, changed)) + "\n" for _ in range(n)))
    return paths


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m rlvr_world.domains.jsonl.synthetic", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="folder for train.jsonl and test.jsonl")
    p.add_argument("--changed", type=float, default=0.5, help="share of transitions that change the state (0-1)")
    p.add_argument("--train", type=int, default=3000, help="training records")
    p.add_argument("--test", type=int, default=300, help="test records")
    p.add_argument("--seed", type=int, default=0, help="random seed of the records")
    a = p.parse_args(argv)
    try:
        paths = write(Path(a.out), a.changed, a.train, a.test, a.seed)
    except ValueError as e:
        p.error(str(e))
    print(f"wrote {paths['train']} ({a.train} records) and {paths['test']} ({a.test}), {a.changed:.0%} changing")


if __name__ == "__main__":
    main()

"""Loading the bundled ByteSized32 state-prediction data (see data/PROVENANCE.md).

A transition is (current objects + score, action) -> (tick-state objects +
next score). The full next state to predict is `tick_state` with
`next_score_state`, as in the benchmark's "full" setting.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...engine.errors import UserError
from ..jsonlines import read_json_lines

DATA_DIR = Path(__file__).parent / "data"
SPLITS = {"train": DATA_DIR / "train.jsonl.gz", "test": DATA_DIR / "test.jsonl.gz"}


class DataError(UserError, ValueError):
    """A data file that is missing or cannot be read."""


@dataclass
class Transition:
    game: str
    state_id: str
    task: str
    action: str
    objects: list[dict]  # current state's objects
    score: dict  # current {score, gameOver, gameWon}
    next_objects: list[dict]  # tick_state objects
    next_score: dict
    max_uuid: int  # uuids of new objects start here

    @property
    def changed(self) -> bool:
        """Any object differs between the states: the benchmark's "changed" group (1,154 of 2,954 test)."""
        return self.objects != self.next_objects


def _transition(row: dict) -> Transition:
    cur, tick = row["current_state"], row["tick_state"]
    t = Transition(
        game=row["game"],
        state_id=str(row["state_id"]),
        task=cur.get("taskDesc", ""),
        action=row["action_state"]["lastAction"],
        objects=cur["objects"],
        score=row["current_score_state"],
        next_objects=tick["objects"],
        next_score=row["next_score_state"],
        max_uuid=int(cur.get("max_UUID", 0)),
    )
    if not all(isinstance(x, str) for x in (t.game, t.task, t.action)):
        raise TypeError("game, taskDesc and lastAction must be strings")
    if not isinstance(t.score, dict) or not isinstance(t.next_score, dict):
        raise TypeError("the score states must be objects")
    for objects in (t.objects, t.next_objects):
        if not isinstance(objects, list) or not all(_is_object(o) for o in objects):
            raise TypeError("objects must be a list of objects, each with a uuid, a properties object "
                            "and a contains list")
    return t


def _is_object(o) -> bool:
    return (isinstance(o, dict) and isinstance(o.get("uuid"), (int, str)) and isinstance(o.get("properties", {}), dict)
            and isinstance(o.get("contains", []), list))


def read_jsonl(path: str | Path) -> list[Transition]:
    """Transitions from a (gzipped) JSON-lines file, or a one-line DataError."""
    return read_json_lines(path, _transition, DataError, "a text-game transition")


def load_split(split: str, path: str = "") -> list[Transition]:
    """The bundled split, or `path` when given."""
    return read_jsonl(path or SPLITS[split])


def select_games(transitions: list[Transition], games: list[str]) -> list[Transition]:
    """Keep the named games (all when `games` is empty); unknown names are an error."""
    if not games:
        return transitions
    known = {t.game for t in transitions}
    unknown = sorted(set(games) - known)
    if unknown:
        raise DataError(f"unknown game(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    keep = set(games)
    return [t for t in transitions if t.game in keep]

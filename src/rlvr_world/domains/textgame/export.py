"""The bundled text-game transitions as `jsonl` records, for `rlvr-world run --domain jsonl`.

    python -m rlvr_world.domains.textgame.export DIR [GAME ...]   writes DIR/train.jsonl and DIR/test.jsonl

A game state becomes one JSON object: `"score"` holds the score, and every
game object sits under its uuid (as a string), its `contains` list sorted
(the benchmark compares contents as a set). The jsonl domain's difference of
two such states is then the text game's own: the objects that changed or
appeared (`set`), the uuids that went (`unset`), the score when it changed.
`jsonl_response` rewrites a text-game response in that form, so both
domains can score the same prediction: exact match and the text game's
`binary` reward agree, except on a prediction that invents objects the real
next state lacks (the text game ignores them; exact match does not).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .data import Transition, load_split, select_games


def _object(o: dict) -> dict:
    return {**o, "contains": sorted(map(str, o.get("contains", [])))} if isinstance(o.get("contains"), list) else o


def game_state(objects: list[dict], score: dict) -> dict:
    return {"score": score, **{str(o["uuid"]): _object(o) for o in objects}}


def record(t: Transition) -> dict:
    return {"state": game_state(t.objects, t.score), "action": f"{t.action} (task: {t.task})",
            "next_state": game_state(t.next_objects, t.next_score)}


def jsonl_response(text: str) -> str:
    """A text-game JSON difference as the jsonl domain's `{"set", "unset"}` (unreadable text stays as it is)."""
    try:
        diff = json.loads(text)
        changed = {str(o["uuid"]): _object(o) for o in diff.get("modified", [])}
        if diff.get("score"):
            changed["score"] = diff["score"]
        return json.dumps({"set": changed, "unset": [str(u) for u in diff.get("removed", [])]})
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return text


def export(out: Path, games: list[str] | None = None) -> dict[str, int]:
    """Write both splits (of the named games only, when given); returns the number of records of each."""
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split in ("train", "test"):
        rows = [record(t) for t in select_games(load_split(split), games or [])]
        (out / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        counts[split] = len(rows)
    return counts


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python -m rlvr_world.domains.textgame.export DIR [GAME ...]")
    print(export(Path(sys.argv[1]), sys.argv[2:]))

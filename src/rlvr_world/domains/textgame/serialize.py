"""Text-game states and actions as text, and the JSON state difference.

The prompt carries the task, the action, the score, the uuid base for new
objects and every object as one compact JSON line. The natural-language rules
and the in-context example of the benchmark's GPT-4 prompt are left out: small
models trained here learn the games' rules from data, and the prompt stays short.

The response is the paper's JSON difference
`{"modified": [objects that changed or appeared], "removed": [uuids], "score": {...}}`
with `score` empty when the score is unchanged (as in the benchmark's own
`make_game_state_partial`). An object whose `contains` list only changed order
is unchanged: `contains` compares as a set.
"""

from __future__ import annotations

import json

from .data import Transition


def dumps(x) -> str:
    return json.dumps(x, separators=(",", ":"), ensure_ascii=False)


def same_object(a: dict, b: dict) -> bool:
    """Equal properties and the same contents as a set (the benchmark's comparison)."""
    return a.get("properties") == b.get("properties") and sorted(map(str, a.get("contains", []))) == sorted(
        map(str, b.get("contains", []))
    )


def state_diff(objects: list[dict], score: dict, next_objects: list[dict], next_score: dict) -> dict:
    before = {o["uuid"]: o for o in objects}
    after_uuids = {o["uuid"] for o in next_objects}
    modified = [o for o in next_objects if o["uuid"] not in before or not same_object(before[o["uuid"]], o)]
    removed = [o["uuid"] for o in objects if o["uuid"] not in after_uuids]
    return {"modified": modified, "removed": removed, "score": next_score if next_score != score else {}}


def prompt_text(t: Transition) -> str:
    lines = [
        f"task: {t.task}",
        f"action: {t.action}",
        f"score: {dumps(t.score)}",
        f"uuid base: {t.max_uuid}",
        "objects:",
        *(dumps(o) for o in t.objects),
        "next:",
    ]
    return "\n".join(lines) + "\n"


def target_text(t: Transition) -> str:
    return dumps(state_diff(t.objects, t.score, t.next_objects, t.next_score))


def trivial_text(t: Transition) -> str:
    """The difference that changes nothing."""
    return dumps(state_diff(t.objects, t.score, t.objects, t.score))

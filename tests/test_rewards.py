"""Text-game rewards on hand-made cases and on real benchmark records."""

import copy
import json

import pytest

from rlvr_world.domains.textgame import reward
from rlvr_world.domains.textgame.data import Transition, load_split
from rlvr_world.domains.textgame.serialize import state_diff, target_text

SCORE = {"score": 0, "gameOver": False, "gameWon": False}


def obj(uuid, contains=(), **props):
    return {"name": f"o{uuid}", "uuid": uuid, "type": "T", "properties": props, "contains": list(contains)}


def make(objects, next_objects, next_score=SCORE):
    return Transition("g", "s", "task", "act", objects, SCORE, next_objects, next_score, max_uuid=10)


@pytest.fixture(scope="module")
def test_split():
    return load_split("test")


def test_split_sizes_match_the_benchmark(test_split):
    assert len(test_split) == 2954
    assert sum(t.changed for t in test_split) == 1154
    assert len({t.game for t in test_split}) == 31


def test_true_difference_of_every_real_record_scores_one(test_split):
    for t in test_split:
        assert reward.binary(target_text(t), t)[0] == 1.0
        value, parts = reward.task_specific(target_text(t), t)
        assert value == pytest.approx(1.3 if parts.get("changing_acc") is not None else 0.3)


def real_changed(test_split, pred):
    return next(t for t in test_split if pred(t))


def test_each_kind_of_error_lowers_the_reward_on_a_real_record(test_split):
    modified = lambda t: state_diff(t.objects, t.score, t.next_objects, t.next_score)["modified"]  # noqa: E731
    t = real_changed(test_split, lambda t: t.changed and len(modified(t)) >= 1
                     and any(o["properties"] for o in t.next_objects))
    truth = state_diff(t.objects, t.score, t.next_objects, t.next_score)
    best = reward.task_specific(json.dumps(truth), t)[0]

    def worse(diff):
        v, _ = reward.task_specific(json.dumps(diff), t)
        b, _ = reward.binary(json.dumps(diff), t)
        assert b == 0.0 and v < best
        return v

    # 1. nothing predicted to change
    worse({"modified": [], "removed": [], "score": {}})
    # 2. a wrong property value in a modified object
    d = copy.deepcopy(truth)
    o = next(o for o in d["modified"] if o["properties"])
    key = next(iter(o["properties"]))
    o["properties"][key] = "WRONG"
    worse(d)
    # 3. a dropped property key
    d = copy.deepcopy(truth)
    o = next(o for o in d["modified"] if o["properties"])
    o["properties"].pop(next(iter(o["properties"])))
    worse(d)
    # 4. wrong contents
    d = copy.deepcopy(truth)
    d["modified"][0]["contains"] = d["modified"][0]["contains"] + ["ghost (ID: 99)"]
    worse(d)
    # 5. a wrong score
    d = copy.deepcopy(truth)
    d["score"] = {**t.next_score, "score": t.next_score["score"] + 7}
    worse(d)
    # 6. an object wrongly removed
    d = copy.deepcopy(truth)
    d["removed"] = [t.next_objects[0]["uuid"]]
    d["modified"] = [o for o in d["modified"] if o["uuid"] != t.next_objects[0]["uuid"]]
    worse(d)


def test_unparseable_output_scores_zero_and_never_raises():
    t = make([obj(1, a=1)], [obj(1, a=2)])
    for text in ["", "{", "null", "[]", '{"modified": 3}', '{"modified": [{"no_uuid": 1}]}',
                 '{"modified": [], "removed": 5}', '{"modified": [{"uuid": [1]}]}', "\x00\xff", "{" * 5000,
                 '{"modified": [{"uuid": 1, "properties": 7, "contains": 3}]}']:
        for fn in (reward.binary, reward.task_specific):
            value, parts = fn(text, t)
            assert value == 0.0 or parts["parsed"] == 1.0
    value, parts = reward.task_specific("not json", t)
    assert value == 0.0 and parts["parsed"] == 0.0 and parts["why"] == "not JSON"


def test_contains_compares_as_a_set_and_extra_objects_are_ignored():
    t = make([obj(1, ["a", "b"], x=1)], [obj(1, ["b", "a"], x=2)])
    diff = {"modified": [obj(1, ["a", "b"], x=2), obj(5, y=1)], "removed": [], "score": {}}
    assert reward.binary(json.dumps(diff), t)[0] == 1.0


def test_new_objects_from_modified_are_added():
    # The paper's code drops objects that are not in the current state; we add them (see reward.py).
    t = make([obj(1, x=1)], [obj(1, x=1), obj(10, y=2)])
    diff = {"modified": [obj(10, y=2)], "removed": [], "score": {}}
    assert reward.binary(json.dumps(diff), t)[0] == 1.0
    assert reward.binary(json.dumps({"modified": [], "removed": [], "score": {}}), t)[0] == 0.0


def test_task_specific_reward_formula_by_hand():
    # Two objects, 3 compared units each (2 properties + contains); one property changes.
    t = make([obj(1, a=1, b=1), obj(2, a=1, b=1)], [obj(1, a=2, b=1), obj(2, a=1, b=1)],
             next_score={"score": 1, "gameOver": False, "gameWon": False})
    # Predict no object change but the right score: 5/6 properties, 3/3 score keys, 0/1 changing.
    diff = {"modified": [], "removed": [], "score": {"score": 1, "gameOver": False, "gameWon": False}}
    value, parts = reward.task_specific(json.dumps(diff), t)
    assert parts["prop_acc"] == pytest.approx(5 / 6) and parts["score_acc"] == 1.0 and parts["changing_acc"] == 0.0
    assert value == pytest.approx(0.09 * 5 / 6 + 0.01 * 1.0)
    # Right object, stale score: 6/6, 1/3 score keys ("score" wrong), 1/1 changing, not exact.
    diff = {"modified": [obj(1, a=2, b=1)], "removed": [], "score": {}}
    value, parts = reward.task_specific(json.dumps(diff), t)
    assert value == pytest.approx(0.09 + 0.01 * 2 / 3 + 1.0)


def test_answers_are_told_apart_as_attempted_no_change_or_invalid():
    from rlvr_world.engine.evaluate import answer_breakdown

    change = json.dumps({"modified": [obj(1, on=True)], "removed": [], "score": {}})
    nothing = json.dumps({"modified": [], "removed": [], "score": {}})
    assert [reward.answer_kind(t) for t in (change, nothing, "{oops", "[1]", json.dumps({"score": {"score": 1}}))] \
        == ["attempted", "no_change", "invalid", "invalid", "attempted"]
    records = [{"group": "changed", "answer": "change", "value": 1.0},
               {"group": "changed", "answer": "change", "value": 0.0},
               {"group": "unchanged", "answer": "no_change", "value": 1.0},
               {"group": "unchanged", "answer": "invalid", "value": 0.0},
               {"group": "video", "value": 0.5}]  # an example without a trivial answer has no answer kind
    assert answer_breakdown(records) == {
        "changed": {"n": 2, "attempted": 2, "attempted_right": 1, "no_change": 0, "invalid": 0},
        "unchanged": {"n": 2, "attempted": 0, "attempted_right": 0, "no_change": 1, "invalid": 1}}

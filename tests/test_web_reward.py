"""The web reward: pooled F1 of exact line matches, on hand-made cases and on real WebArena annotations."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from rlvr_world.domains.web.acctree import Diff, format_diff, parse_diff
from rlvr_world.domains.web.reward import f1_reward, matches, prf

FIXTURE = Path(__file__).parent / "fixtures" / "web" / "webarena_samples_tao.json"
A, B, C, D = "[1] button 'A'", "[2] link 'B'", "[3] StaticText 'C'", "[4] checkbox 'D' checked: True"


def test_perfect_prediction_scores_one_and_no_change_is_right_when_nothing_changes():
    real = Diff(new=(A,), deleted=(B,), updated=(C,))
    assert f1_reward(format_diff(real), real)[0] == 1.0
    assert f1_reward(format_diff(Diff()), Diff())[0] == 1.0
    assert f1_reward(format_diff(Diff()), real)[0] == 0.0


def test_each_kind_of_error_lowers_f1():
    real = Diff(new=(A, B), updated=(C,))
    missing = prf(Diff(new=(A,), updated=(C,)), real)  # recall 2/3, precision 1
    assert missing["precision"] == 1.0 and missing["recall"] == pytest.approx(2 / 3)
    extra = prf(Diff(new=(A, B, D), updated=(C,)), real)  # precision 3/4, recall 1
    assert extra["precision"] == pytest.approx(3 / 4) and extra["recall"] == 1.0
    wrong_section = prf(Diff(new=(A, B), deleted=(C,)), real)  # a right line in the wrong section does not match
    assert wrong_section["f1"] == pytest.approx(2 * (2 / 3) * (2 / 3) / (4 / 3))
    assert 0 < missing["f1"] < 1 and 0 < extra["f1"] < 1


def test_only_the_answer_is_read_and_garbage_scores_zero():
    real = Diff(new=(A,))
    assert f1_reward("I think a button appears.\n" + format_diff(real), real)[0] == 1.0
    for bad in ["", "no idea", "{", "\x00\xff", "New items", None]:
        value, parts = f1_reward(bad, real)
        assert value == 0.0 and parts["parsed"] == 0.0


def test_multiset_matching_equals_the_assignment_problem():
    rng = random.Random(0)
    for _ in range(200):
        pred = [rng.choice("abcd") for _ in range(rng.randint(0, 6))]
        real = [rng.choice("abcd") for _ in range(rng.randint(0, 6))]
        if pred and real:
            eq = np.array([[p == r for r in real] for p in pred], dtype=float)
            rows, cols = linear_sum_assignment(eq, maximize=True)
            best = int(eq[rows, cols].sum())
        else:
            best = 0
        assert matches(pred, real) == best


def test_real_annotations_score_one_against_themselves_and_drop_when_damaged():
    for record in json.loads(FIXTURE.read_text()):
        real = parse_diff(record["next_state_tao"])
        assert f1_reward(record["next_state_tao"], real)[0] == 1.0
        lines = [*real.new, *real.deleted, *real.updated]
        if len(lines) < 2:
            continue
        dropped = Diff(new=real.new, deleted=real.deleted, updated=real.updated[:-1]) if real.updated else \
            Diff(new=real.new[:-1], deleted=real.deleted)
        assert f1_reward(format_diff(dropped), real)[0] < 1.0

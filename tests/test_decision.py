"""The decision split of RL's credit: its math against a plain loop, which responses decide what, the trivial answer
of each language domain, the diagnostics of a collapse, and the synthetic household environment."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch

from rlvr_world.domains.jsonl import synthetic
from rlvr_world.domains.jsonl.records import Record, kind_of, predicted_state, trivial_text
from rlvr_world.engine.advantages import decided_right, decision_metrics
from rlvr_world.engine.domain import Domain, Example
from rlvr_world.engine.evaluate import decision_summary
from rlvr_world.engine.grpo import decision_advantages
from rlvr_world.engine.rl import decisions


def plain_decision_advantages(rewards, at, attempt, right, G, width, eps=1e-6):
    """The same credit, one response at a time."""
    out = []
    for b in range(len(rewards) // G):
        idx = range(b * G, (b + 1) * G)
        deciding = [i for i in idx if at[i] >= 0]
        attempts = [i for i in idx if attempt[i]]

        def normalised(i, members, value):
            if i not in members:
                return 0.0
            vals = [value(j) for j in members]
            mean = sum(vals) / len(vals)
            std = math.sqrt(sum((v - mean) ** 2 for v in vals) / max(1, len(vals) - 1))
            return (value(i) - mean) / (std + eps)

        for i in idx:
            dec = normalised(i, deciding, lambda j: float(right[j]))
            con = normalised(i, attempts, lambda j: rewards[j])
            out.append([dec if t <= at[i] else con for t in range(width)])
    return out


def test_decision_advantages_match_a_plain_loop():
    g = torch.Generator().manual_seed(0)
    N, G, W = 12, 4, 6
    rewards = torch.rand(N, generator=g)
    at = torch.randint(-1, W, (N,), generator=g)
    at[4:8] = torch.tensor([1, 2, 5, 0])  # one whole group that decides
    attempt = torch.rand(N, generator=g) < 0.6
    right = torch.rand(N, generator=g) < 0.5
    adv, m = decision_advantages(rewards, at, attempt, right, G, W)
    want = plain_decision_advantages(rewards.tolist(), at.tolist(), attempt.tolist(), right.tolist(), G, W)
    assert torch.allclose(adv, torch.tensor(want), atol=1e-4)
    assert 0 <= m["adv/decision_split_frac"] <= 1


def test_without_a_trivial_answer_the_split_is_grpo():
    from rlvr_world.engine.grpo import group_advantages

    r = torch.tensor([0.1, 0.5, 0.9, 0.2, 0.0, 1.0])
    adv, _ = decision_advantages(r, torch.full((6,), -1), torch.ones(6, dtype=torch.bool),
                                 torch.zeros(6, dtype=torch.bool), 3, 4)
    want, _ = group_advantages(r, 3)
    assert torch.allclose(adv, want[:, None].expand(6, 4), atol=1e-5)


def test_the_decision_token_gets_no_push_when_a_group_agrees():
    # every response attempts (right), one reward each: only content credit, and none on the decision token
    r = torch.tensor([0.0, 0.5, 1.0])
    adv, _ = decision_advantages(r, torch.tensor([2, 2, 2]), torch.ones(3, dtype=torch.bool),
                                 torch.ones(3, dtype=torch.bool), 3, 5)
    assert torch.all(adv[:, :3] == 0) and adv[0, 3] < 0 < adv[2, 3]


def test_balancing_the_axis_leaves_no_net_pull_toward_the_trivial_answer():
    # unchanged group: trivial right, an attempt wrong; changed group: an attempt right, two unreadable answers wrong,
    # the trivial answer wrong. Balanced by stratum, punishing the unreadable answers still pulls toward "no change"
    at = torch.tensor([1, 1, 1, 1, 1, 3, 3, 1])  # (8,) decision positions, every example has a trivial answer
    trivial = torch.tensor([1, 1, 1, 0, 0, 0, 0, 1]).bool()
    attempt = torch.tensor([0, 0, 0, 1, 1, 0, 0, 0]).bool()
    right = torch.tensor([1, 1, 1, 0, 1, 0, 0, 0]).bool()
    unchanged = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0]).bool()
    r = right.float()
    pull = lambda adv: (adv[:, 0] * torch.where(trivial, 1.0, -1.0)).sum().item()  # noqa: E731
    plain, _ = decision_advantages(r, at, attempt, right, 4, 5, unchanged=unchanged)
    axis, _ = decision_advantages(r, at, attempt, right, 4, 5, unchanged=unchanged, trivial=trivial)
    assert pull(plain) > 0.5 and abs(pull(axis)) < 1e-5
    shift = axis[:, 0] - plain[:, 0]  # one amount for every response, signed by whether it is the trivial answer
    assert torch.allclose(shift.abs(), shift.abs()[0].expand(8)) and (shift[trivial] < 0).all()
    assert torch.equal(axis[4, 2:], plain[4, 2:])  # an attempt's content credit is untouched


class Tokens(Domain):
    """Ids are the answer: [5, 6, 2] says "nothing changes", anything else ending in 2 a change, no 2 is unreadable."""

    eos_id, pad_id = 2, 0

    def answer_kind(self, ids, example):
        return "invalid" if 2 not in ids else "no_change" if list(ids) == [5, 6, 2] else "change"


def test_decisions_mark_the_departure_the_trivial_answer_and_who_was_right():
    unchanged = Example([1], [5, 6, 2], group="unchanged", trivial_ids=[5, 6, 2])
    changed = Example([1], [5, 9, 2], group="changed", trivial_ids=[5, 6, 2])
    none = Example([1], [5, 9, 2])
    rows = decisions(Tokens(), [[5, 6, 2], [5, 9, 2], [5, 6, 2], [5, 9, 2], [5, 7], [3, 2]],
                     [unchanged, unchanged, changed, changed, changed, none])
    assert rows.tolist() == [[2, 1, 1], [1, 0, 1], [2, 1, 0], [1, 0, 0], [1, 2, 0], [-1, 0, 0]]  # [5, 7]: all decision
    assert decided_right(rows[:5]).tolist() == [True, False, False, True, False]  # unreadable is never right
    m = decision_metrics(rows[:5], torch.tensor([1.0, -1.0, -0.5, 0.5, -0.5]))
    assert m["decision/unchanged/trivial_frac"] == 0.5 and m["decision/changed/trivial_frac"] == pytest.approx(1 / 3)
    assert m["decision/unchanged/trivial_adv"] == 1.0 and m["decision/changed/trivial_adv"] == -0.5


def test_decision_summary_separates_the_strata():
    ex = [Example([1], [5, 6, 2], trivial_ids=[5, 6, 2])] * 3 + [Example([1], [5, 9, 2], trivial_ids=[5, 6, 2])] * 2
    d = decision_summary(ex, [math.log(0.9), math.log(0.8), math.log(0.15), math.log(0.2), math.log(0.1)])
    assert d["p_trivial"] == {"unchanged": pytest.approx(1.85 / 3, abs=1e-4), "changed": pytest.approx(0.15)}
    assert d["auc"] == pytest.approx(5 / 6, abs=1e-4)  # one pair of the six inverted: 0.15 below 0.2


def test_jsonl_trivial_answers_and_kinds():
    r = Record({"a": 1, "b": "x"}, "act", {"a": 2, "b": "x"})
    assert trivial_text(r) == '{"set":{},"unset":[]}'
    assert kind_of(trivial_text(r), r) == "no_change" and kind_of('{"set":{"a":2},"unset":[]}', r) == "change"
    assert kind_of('{"setunset":[]}', r) == "invalid"  # a misspelt key is no empty difference
    assert predicted_state('{"setunset":[]}', r)[0] is None
    s = Record("one\ntwo", "act", "one\nthree")
    assert trivial_text(s) == "one\ntwo" and kind_of("one\ntwo", s) == "no_change" and kind_of("x", s) == "change"


def test_textgame_and_web_trivial_answers_score_as_no_change():
    from rlvr_world.domains.textgame.data import load_split
    from rlvr_world.domains.textgame.domain import TextGameDomain
    from rlvr_world.domains.textgame.reward import binary
    from rlvr_world.domains.web.acctree import parse_diff
    from rlvr_world.domains.web.domain import WebDomain, trivial_text as web_trivial
    from rlvr_world.domains.web.reward import answer_kind

    ts = load_split("test")[:300]
    for t in ts:
        text = TextGameDomain.trivial_text(t)
        assert TextGameDomain.kind_of(text, t) == "no_change"
        assert binary(text, t)[0] == float(TextGameDomain.target_text(t) == text)
    assert any(TextGameDomain.target_text(t) == TextGameDomain.trivial_text(t) for t in ts)
    empty = web_trivial(None)
    assert answer_kind(empty) == "no_change" and not any(parse_diff(empty).sections)
    assert WebDomain.kind_of("nonsense", None) == "invalid"


@pytest.mark.parametrize("share", [0.25, 0.75])
def test_synthetic_environment_has_the_share_of_changes_asked_for(tmp_path, share):
    paths = synthetic.write(tmp_path, share, 2000, 100, seed=3)
    rows = [json.loads(line) for line in paths["train"].read_text().splitlines()]
    changed = sum(r["state"] != r["next_state"] for r in rows) / len(rows)
    assert abs(changed - share) < 0.04
    for r in rows[:200]:  # every record follows the rules
        assert synthetic.step(r["state"], r["action"]) == r["next_state"]
    assert paths["test"].read_text() != paths["train"].read_text()[: len(paths["test"].read_text())]


def test_synthetic_rules_need_the_state_not_just_the_action():
    dark = {**synthetic.random_state(__import__("random").Random(0)), "robot": "hall", "holding": "nothing",
            "cup": "hall", "light_hall": "off"}
    assert synthetic.step(dark, "pick up the cup") == dark  # it must be seen to be taken
    lit = {**dark, "light_hall": "on"}
    assert synthetic.step(lit, "pick up the cup") == {**lit, "cup": "hand", "holding": "cup"}


def test_synthetic_command_line_refuses_a_share_outside_0_1(tmp_path):
    p = subprocess.run([sys.executable, "-m", "rlvr_world.domains.jsonl.synthetic", "--out", str(tmp_path),
                        "--changed", "1.5"], capture_output=True, text=True)
    assert p.returncode == 2 and "[0, 1]" in p.stderr and not list(tmp_path.iterdir())


def test_rl_with_the_defaults_keeps_both_strata_on_the_synthetic_environment(tmp_path):
    """What a user does with their own environment: the CLI on JSON-lines records, half of them changing. RL must
    lower neither stratum beyond noise (one-sided McNemar, 5%); the model is small, the budget the suite's."""
    synthetic.write(tmp_path, 0.5, 800, 160, seed=5)
    out = tmp_path / "run"
    args = ["run", "--domain", "jsonl", "--data.train-path", "train.jsonl", "--data.test-path", "test.jsonl",
            "--out", str(out), "--results", str(out / "results.json"), "--threads", "1", "--vocab-size", "400",
            "--model.hidden-size", "96", "--model.num-layers", "2", "--model.num-heads", "2", "--mle.epochs", "30",
            "--mle.lr", "3e-3", "--mle.batch-tokens", "4000", "--rl.steps", "20", "--rl.eval-every", "0",
            "--curve-limit", "0"]
    p = subprocess.run([sys.executable, "-m", "rlvr_world.cli", *args], cwd=tmp_path, capture_output=True, text=True,
                       timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    assert res["mle"]["unchanged"] > 60 and res["mle"]["changed"] > 20  # MLE learned some of each stratum
    assert (res["trivial"]["unchanged"], res["trivial"]["changed"]) == (100.0, 0.0)
    for g in ("unchanged", "changed"):
        s = res["significance"][g]
        assert not (s["delta"] < 0 and s["p"] / 2 < 0.05), (g, s)  # one-sided: a fall beyond noise
    rows = [json.loads(line) for line in (out / "rl" / "metrics.jsonl").read_text().splitlines()]
    assert all("decision/changed/trivial_frac" in r for r in rows if "reward/mean" in r)
    assert set(res["decision"]["mle"]["p_trivial"]) == {"unchanged", "changed"}

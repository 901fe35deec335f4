"""`rlvr-world agent`: a MiniWoB++ agent planning with web world models (issue #26's application)."""

import gzip
import json
import random
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import save_tiny_text_model
from test_cli import ENV, cli

from rlvr_world.apps.webagent.mpc import episode_seed, planner, run_episode
from rlvr_world.apps.webagent.policy import propose
from rlvr_world.apps.webagent.value import FEATURES, LearnedValue, auc, features
from rlvr_world.apps.webagent.worlds import (LanguageWorld, OracleWorld, State, dense, endpoint, id_map, in_process,
                                             translate)
from rlvr_world.domains.web.acctree import renumber
from rlvr_world.domains.web.browser import Action, Browser
from rlvr_world.domains.web.collect import Episode, random_action, scripted_action

SAMPLE = Path(__file__).parent / "fixtures" / "web" / "miniwob-sample.jsonl.gz"
GOAL = 'Click on the "next" button.'
BEFORE = ("[7] RootWebArea 'Click Button Task' focused: True\n\t[9] StaticText 'Click on the \"next\" button.'\n"
          "\t[12] button 'next'\n\t[15] button 'submit'")


def after(focused: str) -> str:
    return BEFORE.replace(f"button '{focused}'", f"button '{focused}' focused: True") + "\n\t[20] StaticText 'START'"


def rows():
    return [json.loads(line) for line in gzip.open(SAMPLE, "rt")]


def test_proposals_are_distinct_and_the_first_is_the_collectors_own_choice():
    for r in rows()[:40]:
        got = propose(r["before"], r["objective"], 4, random.Random(3))
        rng = random.Random(3)
        first = scripted_action(r["before"], r["objective"], set(), rng) if rng.random() < 0.6 else None
        assert got[0] == (first or random_action(r["before"], rng))
        assert len(got) == len(set(got)) and 1 <= len(got) <= 4


def test_features_read_what_changed_against_the_instruction():
    right, wrong = features(GOAL, BEFORE, after("next")), features(GOAL, BEFORE, after("submit"))
    f = {name: i for i, name in enumerate(FEATURES)}
    assert right[f["ends"]] == wrong[f["ends"]] == 1
    assert right[f["goal_focused"]] == 1 and right[f["other_focused"]] == 0
    assert wrong[f["other_focused"]] == 1 and wrong[f["goal_focused"]] == 0
    assert features(GOAL, BEFORE, after("next"), "click [12]")[f["act_goal"]] == 1  # the action's own element
    assert features(GOAL, BEFORE, after("next"), "click [15]")[f["act_goal"]] == 0
    assert not features(GOAL, BEFORE, BEFORE).any()  # nothing changed, no action
    options = ("[1] RootWebArea 'Click Option Task'\n\t[3] radio 'Ty' checked: {}\n\t[4] radio 'Msag' checked: False"
               "\n\t[5] button 'Submit'")
    ended = "\n\t[9] StaticText 'START'"
    goal = "Select Ty and click Submit."
    assert features(goal, options.format(False), options.format(False) + ended)[f["unmet"]] == 1  # submitted too early
    checked = features(goal, options.format(False), options.format(True))
    assert checked[f["unmet"]] == 0 and checked[f["goal_checked"]] == 1
    password = ("[1] RootWebArea 'Enter Password Task'\n\t[2] StaticText 'yD'\n\t[3] textbox '' required: False{}"
                "\n\t[4] textbox '' required: False{}\n\t[5] button 'Submit'")
    typed = "\n\t\t[{}] StaticText '••'"
    goal = 'Enter the password "yD" into both text fields and press submit.'
    empty = password.format("", "")
    full = password.format(typed.format(7), typed.format(8))
    assert features(goal, empty, empty + ended)[f["unmet"]] == 3  # "yD" is in no field (only the instruction), 2 empty
    assert features(goal, full, full + ended)[f["unmet"]] == 0  # a password field shows one bullet a character
    half = password.format(typed.format(7), "")
    assert features(goal, half, half + ended)[f["unmet"]] == 1  # "into both": the second field is still empty
    for r in rows()[:60]:  # real pages
        b, a, act = renumber(r["before"], r["after"], r["action"])
        assert np.isfinite(features(r["objective"], b, a, act)).all()


def test_the_value_function_learns_separable_outcomes_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, len(FEATURES)))
    y = (x[:, 0] - x[:, 3] + 0.3 * rng.normal(size=400) > 0).astype(float)
    v = LearnedValue.fit(x[:300], y[:300], split=False)
    assert auc(v.logits(x[300:]), y[300:]) > 0.95 and v.continuation is None
    # the default: only pages that end the episode are regressed; the others score the continuation log-odds
    ends = FEATURES.index("ends")
    x[:, ends] = rng.random(400) < 0.5
    y = np.where(x[:, ends] > 0, x[:, 3] > 0, rng.random(400) < 0.25).astype(float)
    left = rng.integers(0, 3, 400)  # actions left after the step
    y[(x[:, ends] == 0) & (left == 0)] = 0  # out of steps: failed
    v = LearnedValue.fit(x[:300], y[:300], left[:300])
    p = 1 / (1 + np.exp(-np.array(v.continuation)))
    for n in (1, 2):
        assert abs(p[n] - y[:300][(x[:300, ends] == 0) & (left[:300] == n)].mean()) < 0.03
    assert p[0] < 0.03  # no actions left: carrying on fails
    s = v.logits(x[300:], left[300:])
    assert (s[x[300:, ends] == 0] == np.array(v.continuation)[left[300:][x[300:, ends] == 0]]).all()
    assert auc(s[x[300:, ends] > 0], y[300:][x[300:, ends] > 0]) > 0.95
    v.save(tmp_path / "v.json")
    assert LearnedValue.load(tmp_path / "v.json") == v
    (tmp_path / "old.json").write_text(json.dumps({"features": ["x"], "weights": [0, 1], "mean": [0], "scale": [1]}))
    with pytest.raises(ValueError, match="other features"):
        LearnedValue.load(tmp_path / "old.json")
    assert auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75


def test_a_language_world_applies_its_predicted_difference_and_a_refusal_changes_nothing():
    answer = ("New items:\n[5] StaticText 'START'\n\nDeleted items:\nNone\n\n"
              "Updated items:\n[3] button 'next' focused: True\n")
    prompts = []

    def complete(body):
        prompts.extend(body["prompt"])
        assert body["temperature"] == 0.0
        return {"choices": [{"index": i, "text": answer} for i in range(len(body["prompt"]))]}

    world = LanguageWorld(complete)
    state = State("click-button", 0, GOAL, BEFORE)
    pages = world.predict(state, [Action("click", 12), Action("click", 15)])
    assert world.calls == 2 and "Action: click [3]\n" in prompts[0] and "Action: click [4]\n" in prompts[1]
    assert "[3] button 'next' focused: True" in pages[0] and pages[0].endswith("[5] StaticText 'START'")

    def refuse(body):
        raise ValueError("too long")

    world = LanguageWorld(refuse)
    assert world.predict(state, [Action("click", 12)]) == [dense(BEFORE)[0]] and world.failed == 1


def test_ids_carry_over_to_a_replayed_page_element_by_element():
    replay = BEFORE.replace("[12]", "[112]").replace("[15]", "[115]").replace("[7]", "[107]").replace("[9]", "[109]")
    assert id_map(BEFORE, replay) == {7: 107, 9: 109, 12: 112, 15: 115}
    assert translate(Action("click", 15), BEFORE, replay) == Action("click", 115)
    assert translate(Action("press", text="Enter"), BEFORE, replay) == Action("press", text="Enter")
    assert id_map(BEFORE, replay.replace("'next'", "'prev'")) is None


@pytest.fixture(scope="module")
def world_model_dir(tmp_path_factory):
    """A saved random 2-layer Llama with a BPE tokenizer trained on MiniWoB pages (context 4096)."""
    texts = [r["before"] + r["action"] + r["after"] for r in rows()]
    texts += ["New items:\nNone\n\nDeleted items:\nNone\n\nUpdated items:\nNone\n"] * 5
    return save_tiny_text_model(tmp_path_factory.mktemp("webagent") / "model", texts, 1000, max_positions=4096,
                                split_digits=True)


def test_an_mpc_episode_in_the_real_browser_with_a_tiny_world_model_in_process_and_over_http(world_model_dir):
    from rlvr_world.engine import models
    from rlvr_world.serve import Completer, make_server
    from rlvr_world.text import load_tokenizer

    value = LearnedValue([0.0] + [1.0] * len(FEATURES), [0.0] * len(FEATURES), [1.0] * len(FEATURES))
    local = in_process(str(world_model_dir), dtype="fp32", max_tokens=8)
    seed = episode_seed("click-button", 0, "test")
    with Browser() as browser:
        r = run_episode(browser, "mle", planner(local, value, 2), "click-button", seed, k=3, max_steps=2, world=local)
        assert 1 <= r.steps <= 2 and r.world_calls == local.calls and 1 <= r.world_calls <= 3 * r.steps
        assert len(r.trace) == r.steps and all(0 <= i < 3 for i in r.chosen) and isinstance(r.success, bool)
        page = Episode(browser, "click-button", seed)
        state = State("click-button", seed, page.goal, page.tree)
    candidates = propose(state.tree, state.goal, 3, random.Random(seed))
    server = make_server(Completer(models.load(world_model_dir), load_tokenizer(world_model_dir), "wm", max_tokens=8))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        remote = endpoint(f"http://127.0.0.1:{server.server_address[1]}/v1", "wm", max_tokens=8)
        assert remote.predict(state, candidates) == local.predict(state, candidates)  # the same greedy answers
    finally:
        server.shutdown()


def test_the_oracle_predicts_the_real_next_page_by_replaying_the_episode():
    seed = episode_seed("click-tab", 1, "test")
    oracle = OracleWorld()
    try:
        with Browser() as browser:
            page = Episode(browser, "click-tab", seed)
            state = State("click-tab", seed, page.goal, page.tree)
            rng = random.Random(0)
            first = propose(state.tree, state.goal, 1, rng)[0]
            state.history.append((state.tree, first))
            state.tree = page.act(first)
            second = propose(state.tree, state.goal, 3, rng)
            predicted = oracle.predict(state, second)
            before = state.tree
            real = page.act(second[-1])
        assert oracle.calls == len(second) and oracle.diverged == 0
        assert predicted[-1] == renumber(before, real)[1]
    finally:
        oracle.close()


def test_the_agent_command_compares_agents_writes_results_and_resumes(tmp_path, world_model_dir):
    args = ["agent", "--tasks", "click-button", "--episodes", "2", "--value-episodes", "4", "--k", "3",
            "--max-steps", "3", "--mle", str(world_model_dir), "--max-tokens", "8", "--threads", "1",
            "--run-dir", str(tmp_path / "run"), "--out", str(tmp_path / "mpc.json")]
    p = cli(*args, cwd=tmp_path, env={**ENV, "CI": "true"})
    res = json.loads((tmp_path / "mpc.json").read_text())
    assert set(res["agents"]) == {"policy", "oracle", "mle"} and (tmp_path / "mpc.png").is_file()
    assert all(0 <= a["success"] <= 100 and a["n"] == 2 for a in res["agents"].values())
    assert res["agents"]["policy"]["world_calls_per_episode"] == 0 < res["agents"]["mle"]["world_calls_per_episode"]
    assert "oracle vs policy" in res["paired"] and res["command"].startswith("rlvr-world agent")
    assert 0 <= res["value_function"]["held_out_auc"] <= 1 or np.isnan(res["value_function"]["held_out_auc"])
    assert "| policy |" in p.stdout
    lines = (tmp_path / "run" / "episodes.jsonl").read_text().count("\n")
    cli(*args, cwd=tmp_path, env={**ENV, "CI": "true"})  # everything is on record: nothing runs again
    assert (tmp_path / "run" / "episodes.jsonl").read_text().count("\n") == lines == 6


def test_bad_agent_options_are_one_line_errors_and_write_nothing(tmp_path):
    for bad in (["--tasks", "no-such-task"], ["--k", "0"], ["--value-episodes", "1"]):
        p = cli("agent", *bad, "--run-dir", str(tmp_path / "run"), "--out", str(tmp_path / "r.json"), cwd=tmp_path,
                check=False)
        assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "r.json").exists()

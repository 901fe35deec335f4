"""Bring your own transitions: the jsonl domain's records, rewards and a run on a file the test writes."""

import json
import os
import random
import subprocess
import sys

import pytest

from rlvr_world.domains.jsonl.records import (REWARDS, DataError, Record, RewardTable, check_user_reward, prompt_text,
                                             read_records, target_text)

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def test_json_states_are_answered_with_a_difference_and_scored():
    r = Record({"lamp": "off", "door": "closed", "dog": "sleeps"}, "switch the lamp on",
               {"lamp": "on", "door": "closed"})
    assert json.loads(target_text(r)) == {"set": {"lamp": "on"}, "unset": ["dog"]}
    right = target_text(r)
    for name in REWARDS:
        assert REWARDS[name](right, r) == (1.0, {"parsed": 1.0}), name
    half = json.dumps({"set": {"lamp": "on"}, "unset": []})  # forgot that the dog left
    assert REWARDS["exact"](half, r)[0] == 0.0
    assert REWARDS["field_accuracy"](half, r)[0] == pytest.approx(2 / 3)  # lamp, door right; dog should be gone
    assert REWARDS["diff_f1"](half, r)[0] == pytest.approx(2 * 1 / (1 + 2))
    assert REWARDS["line_f1"](half, r)[0] == pytest.approx(2 * 2 / (3 + 2))
    for bad in ("no json", "[1, 2]", '{"set": 3}', None, '{"set": {"a": 1}, "unset": "dog"}'):
        value, parts = REWARDS["diff_f1"](bad, r)
        assert value == 0.0 and parts["parsed"] == 0.0 and parts["why"]


def test_text_states_are_answered_whole_and_scored_by_line():
    r = Record("a\nb\nc", "drop b", "a\nc")
    assert target_text(r) == "a\nc"
    assert REWARDS["exact"]("a\nc\n", r)[0] == 1.0
    assert REWARDS["line_f1"]("a\nb\nc", r)[0] == pytest.approx(2 * 2 / (3 + 2))
    assert REWARDS["diff_f1"]("a\nb\nc", r)[0] == 0.0  # predicted no change: the real change (-b) missed
    assert REWARDS["diff_f1"]("a\nc", r)[0] == 1.0
    assert REWARDS["field_accuracy"]("a\nx", r)[0] == 0.5  # lines by position


def test_malformed_records_name_the_file_and_line(tmp_path):
    path = tmp_path / "data.jsonl"
    good = json.dumps({"state": "s", "action": "a", "next_state": "t"})
    for bad, message in (("{not json", "line 2"), (json.dumps({"state": "s", "action": "a"}), "no next_state"),
                         (json.dumps({"state": 3, "action": "a", "next_state": "t"}), "string or a JSON object"),
                         (json.dumps({"state": {}, "action": "a", "next_state": "t"}), "same kind"),
                         ("[1]", "JSON object")):
        path.write_text(good + "\n" + bad + "\n")
        with pytest.raises(DataError, match=message) as e:
            read_records(path)
        assert "data.jsonl" in str(e.value) and "line 2" in str(e.value)
    path.write_text(good + "\n" + json.dumps({"state": {}, "action": "a", "next_state": {}}) + "\n")
    with pytest.raises(DataError, match="different kinds"):
        read_records(path)
    with pytest.raises(DataError, match="not found"):
        read_records(tmp_path / "nope.jsonl")


def test_a_reward_of_your_own(tmp_path, monkeypatch):
    (tmp_path / "myreward.py").write_text(
        "def lamp_right(pred, record):\n"
        "    return float(pred.get('lamp') == record.next_state.get('lamp')), {'lamp': 1.0}\n")
    monkeypatch.chdir(tmp_path)
    table = RewardTable(REWARDS)
    assert "myreward:lamp_right" in table and "nope" not in table
    r = Record({"lamp": "off"}, "on", {"lamp": "on"})
    assert table["myreward:lamp_right"](target_text(r), r) == (1.0, {"parsed": 1.0, "reward_error": 0.0, "lamp": 1.0})
    assert table["myreward:lamp_right"]("junk", r)[0] == 0.0
    with pytest.raises(ValueError, match="cannot load the reward"):
        _ = table["myreward:missing"]  # looking the reward up loads its module


def test_a_reward_of_your_own_that_fails_is_caught_before_work_and_scores_0_during_rl(tmp_path, monkeypatch, capsys):
    (tmp_path / "picky.py").write_text(
        "def door(pred, record):\n    return float(pred['door'] == record.next_state['door']), {}\n"
        "def upside_down(pred, record):\n    return float(pred != record.next_state), {}\n")
    monkeypatch.chdir(tmp_path)
    table = RewardTable(REWARDS)
    assert "picky:door" in table and "picky:upside_down" in table
    lamp_only = Record({"lamp": "off"}, "on", {"lamp": "on"})
    with pytest.raises(ValueError, match=r"the reward picky:door raised KeyError: 'door'"):
        check_user_reward(table["picky:door"], [lamp_only])
    with pytest.raises(ValueError, match="true next state .* below the prediction that nothing changes"):
        check_user_reward(table["picky:upside_down"], [lamp_only])
    check_user_reward(table["picky:door"], [Record({"door": "open"}, "push", {"door": "closed"})])
    # during RL: scored 0 with the reason, warned once
    for _ in range(3):
        value, parts = table["picky:door"](target_text(lamp_only), lamp_only)
        assert value == 0.0 and parts["reward_error"] == 1.0 and "KeyError" in parts["why"]
    assert capsys.readouterr().err.count("warning: the reward picky:door raised KeyError") == 1


def lamp_world(n: int, seed: int) -> list[dict]:
    """A tiny environment: a lamp and a door; actions toggle one of them or do nothing."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        state = {"lamp": rng.choice(["on", "off"]), "door": rng.choice(["open", "closed"])}
        action = rng.choice(["press switch", "push door", "wait"])
        nxt = dict(state)
        if action == "press switch":
            nxt["lamp"] = {"on": "off", "off": "on"}[state["lamp"]]
        elif action == "push door":
            nxt["door"] = {"open": "closed", "closed": "open"}[state["door"]]
        out.append({"state": state, "action": action, "next_state": nxt})
    return out


def test_run_on_your_own_jsonl_file(tmp_path):
    for split, n, seed in (("train", 300, 0), ("test", 40, 1)):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lamp_world(n, seed)))
    (tmp_path / "myreward.py").write_text(
        "def lamp(pred, record):\n    return float(pred == record.next_state), {}\n")
    out = tmp_path / "run"
    args = ["run", "--domain", "jsonl", "--data.train-path", "train.jsonl", "--data.test-path", "test.jsonl",
            "--out", str(out), "--results", str(out / "results.json"), "--threads", "1", "--vocab-size", "300",
            "--model.hidden-size", "64", "--model.num-layers", "2", "--model.num-heads", "2",
            "--mle.epochs", "20", "--mle.lr", "1e-2", "--mle.batch-tokens", "2000", "--mle.warmup-steps", "2",
            "--rl.steps", "2",
            "--rl.prompts-per-step", "4", "--rl.group-size", "4", "--rl.max-new-tokens", "32", "--rl.reward",
            "myreward:lamp", "--max-new-tokens", "32", "--curve-limit", "0"]
    p = subprocess.run([sys.executable, "-m", "rlvr_world.cli", *args], cwd=tmp_path, env=ENV, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    assert res["domain"] == "jsonl" and res["n_test"] == 40 and res["reward"] == "myreward:lamp"
    assert set(res["mle"]) == {"unchanged", "changed", "overall", "split_mix"}
    assert res["mle"]["overall"] > 50  # a world this small is learned in a few epochs
    for model in ("mle", "rlvr"):  # what the greedy answers were, per group: every test answer counted once
        answers = res["answers"][model]
        assert set(answers) == {"changed", "unchanged"} and sum(a["n"] for a in answers.values()) == 40
        assert all(a["attempted"] + a["no_change"] + a["invalid"] == a["n"] for a in answers.values())
    assert "answers (greedy)" in (out / "results.md").read_text()
    rows = [json.loads(l) for l in (out / "rl" / "metrics.jsonl").read_text().splitlines()]
    assert len([r for r in rows if "reward/mean" in r]) == 2
    # each saved model carries a card: its prompt format shown on the run's own first changing test record
    first = next(r for r in read_records(tmp_path / "test.jsonl") if r.changed)
    for phase in ("mle", "rl"):
        card = (out / phase / "model" / "README.md").read_text()
        assert card.startswith("# jsonl world model") and "- Domain: `jsonl` (train: `train.jsonl`" in card
        assert "`rlvr-world run --domain jsonl --data.train-path train.jsonl" in card and "`myreward:lamp`" in card
        assert f"```text\n{prompt_text(first)}```" in card and f"```text\n{target_text(first)}\n```" in card
        assert f"rlvr-world serve --model {out / phase / 'model'}" in card and "up to 32 new tokens" in card
    body = json.loads(card.split("-d '")[1].split("'\n")[0])  # the curl request's body: the example's prompt
    assert body == {"prompt": prompt_text(first), "max_tokens": 32, "temperature": 0}
    code = card.split("```python\n")[1].split("```")[0]  # its transformers recipe, which needs no rlvr-world code
    scope = {"prompt": prompt_text(first)}
    exec(code, scope)
    assert isinstance(scope["answer"], str) and scope["ids"].shape[1] > 10
    # `eval` takes the run's own domain and data options, and evaluates on another test file when asked
    (tmp_path / "other.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lamp_world(12, 2)))
    ev = subprocess.run([sys.executable, "-m", "rlvr_world.cli", "eval", "--model", str(out / "rl" / "model"),
                         "--data.test-path", "other.jsonl", "--threads", "1", "--max-new-tokens", "32",
                         "--out", "ev.json"], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert ev.returncode == 0, ev.stderr[-2000:]
    got = json.loads((tmp_path / "ev.json").read_text())
    assert got["domain"] == "jsonl" and got["n"] == 12 and got["data"]["train_path"] == "train.jsonl"
    assert sum(a["n"] for a in got["answers"].values()) == 12 and all("answer" in r for r in got["records"])
    bad = subprocess.run([sys.executable, "-m", "rlvr_world.cli", "run", "--domain", "jsonl", "--out",
                          str(tmp_path / "x")], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "--data.train-path" in bad.stderr and not (tmp_path / "x").exists()
    # a reward of your own that fails on a true next state stops the run before any work, in one line
    (tmp_path / "broken.py").write_text("def lamp(pred, record):\n    return pred['bulb'], {}\n")
    broken = [a if a != "myreward:lamp" else "broken:lamp" for a in args]
    broken[broken.index(str(out))] = str(tmp_path / "y")
    bad = subprocess.run([sys.executable, "-m", "rlvr_world.cli", *broken], cwd=tmp_path, env=ENV,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "the reward broken:lamp raised KeyError: 'bulb'" in bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "y").exists()


def test_the_text_game_exported_as_records_scores_like_the_text_game(tmp_path):
    """Exact match on exported records agrees with the text game's binary reward on the same predictions."""
    from rlvr_world.domains.textgame import export, reward, serialize
    from rlvr_world.domains.textgame.data import load_split

    def variants(t):
        right = json.loads(serialize.target_text(t))
        yield right
        yield {"modified": [], "removed": [], "score": {}}  # "nothing changes"
        if right["modified"]:
            shuffled = json.loads(json.dumps(right))
            shuffled["modified"][0]["contains"] = shuffled["modified"][0].get("contains", [])[::-1]
            yield shuffled
            wrong = json.loads(json.dumps(right))
            props = wrong["modified"][0]["properties"]
            key = sorted(props)[0]
            props[key] = "surely not this" if props[key] != "surely not this" else 0
            yield wrong
            yield {**right, "modified": right["modified"] + [t.objects[0]]}  # an unchanged object, repeated
        if right["score"]:
            yield {**right, "score": {}}

    tested = agree = 0
    seen = set()
    for t in load_split("test")[:400]:
        r = Record(**export.record(t))
        assert json.loads(target_text(r)) == json.loads(export.jsonl_response(serialize.target_text(t)))
        for diff in variants(t):
            text = json.dumps(diff)
            tested += 1
            value = reward.binary(text, t)[0]
            seen.add(value)
            agree += value == REWARDS["exact"](export.jsonl_response(text), r)[0]
    assert tested > 800 and agree == tested and seen == {0.0, 1.0}
    counts = export.export(tmp_path)
    assert counts == {"train": 10735, "test": 2954} and len(read_records(tmp_path / "test.jsonl")) == 2954


def test_run_on_the_exported_text_game(tmp_path):
    p = subprocess.run([sys.executable, "-m", "rlvr_world.domains.textgame.export", "tg", "lit-lightbulb"],
                       cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    out = tmp_path / "run"
    args = ["run", "--domain", "jsonl", "--data.train-path", "tg/train.jsonl", "--data.test-path", "tg/test.jsonl",
            "--out", str(out), "--results", str(out / "results.json"), "--threads", "1", "--vocab-size", "600",
            "--model.hidden-size", "64", "--model.num-layers", "2", "--model.num-heads", "2",
            "--model.max-positions", "4096", "--data.max-prompt-tokens", "4096", "--mle.epochs", "1",
            "--mle.batch-tokens", "4000", "--mle.warmup-steps", "2", "--rl.steps", "1", "--rl.prompts-per-step", "2",
            "--rl.group-size", "2", "--rl.max-new-tokens", "16", "--max-new-tokens", "16", "--eval-limit", "6",
            "--curve-limit", "0", "--rl.reward", "exact"]
    p = subprocess.run([sys.executable, "-m", "rlvr_world.cli", *args], cwd=tmp_path, env=ENV, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    assert res["domain"] == "jsonl" and res["n_test"] == 6 and res["n_test_split"] == 56


def test_a_pretrained_model_on_your_own_records_takes_the_pretrained_settings_not_given(tmp_path):
    """`--domain jsonl --model.init-from DIR`: the jsonl preset's from-scratch MLE settings give way to the pretrained
    presets' (said in one line), except those given; the run trains with them."""
    from conftest import save_tiny_text_model

    from rlvr_world.runconfig import preset

    for split, n, seed in (("train", 40, 0), ("test", 6, 1)):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lamp_world(n, seed)))
    texts = [prompt_text(r) + target_text(r) for r in read_records(tmp_path / "train.jsonl")]
    save_tiny_text_model(tmp_path / "pre", texts, vocab_size=300, max_positions=512)  # a "pretrained" HF directory
    out = tmp_path / "run"
    p = subprocess.run([sys.executable, "-m", "rlvr_world.cli", "run", "--domain", "jsonl", "--data.train-path",
                        "train.jsonl", "--data.test-path", "test.jsonl", "--model.init-from", "pre",
                        "--model.lora-rank", "4", "--mle.warmup-steps", "1", "--out", str(out), "--results",
                        str(out / "results.json"), "--threads", "1", "--rl.steps", "1", "--rl.prompts-per-step", "2",
                        "--rl.group-size", "2", "--rl.max-new-tokens", "16", "--max-new-tokens", "16",
                        "--curve-limit", "0"], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    said = [line for line in p.stderr.splitlines() if "made for a model trained from scratch" in line]
    assert len(said) == 1 and "textgame-pretrained's settings" in said[0], p.stderr[-3000:]
    assert "--mle.lr 0.0003" in said[0] and "--mle.batch-tokens 4096" in said[0]
    assert "--model.lora-rank" not in said[0] and "--mle.warmup-steps" not in said[0]  # given: theirs
    cfg, ref = json.loads((out / "config.json").read_text()), preset("textgame-pretrained")
    assert (cfg["mle"]["lr"], cfg["mle"]["batch_tokens"], cfg["mle"]["epochs"]) == \
        (ref.mle.lr, ref.mle.batch_tokens, ref.mle.epochs)
    assert cfg["model"]["lora_rank"] == 4 and cfg["mle"]["warmup_steps"] == 1 and cfg["rl"]["steps"] == 1
    res = json.loads((out / "results.json").read_text())
    assert res["n_test"] == 6 and "fine-tuned from pre" in json.dumps(res)


def test_a_record_too_long_for_the_model_stops_the_run_before_any_work_and_the_advice_works(tmp_path):
    """One very long record: the run stops before it writes anything, in one line naming what fixes it, and the
    same command with that fix runs. A test record takes more positions (test prompts are never skipped); a training
    record is skipped with --data.max-prompt-tokens; a pretrained model's positions are its own."""
    import re

    from conftest import save_tiny_text_model

    long = {"state": {"lamp": "on", "door": "open", "note": " ".join(f"w{i}" for i in range(300))}, "action": "wait"}
    long["next_state"] = dict(long["state"])
    lines = {name: "".join(json.dumps(r) + "\n" for r in records) for name, records in (
        ("train.jsonl", lamp_world(40, 0)), ("test.jsonl", lamp_world(6, 1)), ("long-test.jsonl", [*lamp_world(6, 1),
                                                                                                   long]),
        ("long-train.jsonl", [*lamp_world(40, 0), long]))}
    for name, text in lines.items():
        (tmp_path / name).write_text(text)

    def run(train, test, out, *extra):
        return subprocess.run([sys.executable, "-m", "rlvr_world.cli", "run", "--domain", "jsonl", "--data.train-path",
                               train, "--data.test-path", test, "--out", str(tmp_path / out), "--results",
                               str(tmp_path / out / "results.json"), "--threads", "1", "--vocab-size", "300",
                               "--model.hidden-size", "64", "--model.num-layers", "2", "--model.num-heads", "2",
                               "--model.max-positions", "256", "--mle.epochs", "1", "--mle.warmup-steps", "1",
                               "--rl.steps", "1", "--rl.prompts-per-step", "2", "--rl.group-size", "2",
                               "--rl.max-new-tokens", "16", "--max-new-tokens", "16", "--curve-limit", "0", *extra],
                              cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=600)

    def refused(p) -> str:
        lines = [line for line in p.stderr.splitlines() if line.strip()]
        assert p.returncode == 2 and lines and lines[-1].startswith("rlvr-world: error: "), p.stderr[-3000:]
        return lines[-1]

    # a test record: more positions for the model from scratch, or the record out of the test file
    p = run("train.jsonl", "long-test.jsonl", "a")
    line = refused(p)
    assert len(p.stderr.strip().splitlines()) == 1 and not (tmp_path / "a").exists()  # one line, nothing written
    assert line.startswith("rlvr-world: error: test example 7 needs ") and "the model has 256" in line
    assert "take test example 7 out of the test data" in line and "--data.max-prompt-tokens" not in line
    positions = re.search(r"give --model\.max-positions (\d+)", line).group(1)
    p = run("train.jsonl", "long-test.jsonl", "a", "--model.max-positions", positions)
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads((tmp_path / "a" / "results.json").read_text())["n_test"] == 7
    # a training record: skipped below the limit the line names (or more positions)
    line = refused(run("long-train.jsonl", "test.jsonl", "b"))
    assert line.startswith("rlvr-world: error: a training example needs ") and not (tmp_path / "b").exists()
    assert "give --model.max-positions " in line
    limit = re.search(r"give --data\.max-prompt-tokens (\d+) \(longer training prompts are skipped\)", line).group(1)
    p = run("long-train.jsonl", "test.jsonl", "b", "--data.max-prompt-tokens", limit)
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads((tmp_path / "b" / "results.json").read_text())["n_train_rl"] == 40  # the long one skipped
    # a pretrained model: its own context, which no option changes
    texts = [prompt_text(r) + target_text(r) for r in read_records(tmp_path / "train.jsonl")]
    save_tiny_text_model(tmp_path / "pre", texts, vocab_size=300, max_positions=256)
    line = refused(run("train.jsonl", "long-test.jsonl", "c", "--model.init-from", "pre"))
    assert "test example 7 needs " in line and "the pretrained model has 256" in line
    assert "--model.max-positions" not in line and "take test example 7 out" in line and not (tmp_path / "c").exists()

"""The command line as a user runs it: a subprocess on the tiny preset."""

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def cli(*args, cwd, check=True, env=None, **kw):
    p = subprocess.run([sys.executable, "-m", "rlvr_world.cli", *args], cwd=cwd, env=env or ENV, capture_output=True,
                       text=True, timeout=600, **kw)
    if check:
        assert p.returncode == 0, p.stderr[-3000:]
    return p


def tiny(out, *extra):
    return ["run", "--preset", "tiny", "--threads", "1", "--out", str(out), "--results", str(out / "results.json"),
            *extra]


def weights(path):
    return load_file(str(Path(path) / "model.safetensors"))


def same_weights(a, b):
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    cli(*tiny(d / "run"), cwd=d)
    return d / "run"


def test_tiny_run_trains_and_reports(tiny_run):
    res = json.loads((tiny_run / "results.json").read_text())
    split = res["split_groups"]  # the whole test split's mix; the 4 evaluated transitions have their own
    shares = {g: n / sum(split.values()) for g, n in split.items()}
    assert res["columns"] == ["unchanged", "changed", "overall", "split_mix"]
    for key in ("mle", "rlvr", "trivial"):
        assert set(res[key]) == {"unchanged", "changed", "overall", "split_mix"}
        assert all(0 <= v <= 100 for v in res[key].values())
        assert res[key]["split_mix"] == pytest.approx(sum(shares[g] * res[key][g] for g in split), abs=1e-3)
        # one game: the mean over games is the examples' own mean
        assert res["per_game"][key]["n_games"] == 1
        assert res["per_game"][key]["mean_over_games"] == pytest.approx(res[key]["overall"], abs=1e-3)
    assert res["significance"]["split_mix"]["test"] == "sign-flip"
    assert res["n_test"] == 4 and res["reward"] == "task_specific" and res["params"] > 0
    assert res["command"].startswith("rlvr-world run --preset tiny")
    assert set(res["phase_s"]) == {"tokenizer", "mle", "eval_mle", "rl", "eval_rlvr", "finish"}
    assert res["wall_s"] == pytest.approx(sum(res["phase_s"].values()), abs=0.2) and res["wall_s"] > 0
    assert res["machine"]["threads"] == 1 and res["machine"]["cores"] >= 1 and "flags" in res["machine"]["cpu"]
    assert (tiny_run / "results.md").is_file() and (tiny_run / "results.png").stat().st_size > 1000
    for answers in res["answers"].values():  # what the greedy answers were: every test answer counted once
        assert sum(a["attempted"] + a["no_change"] + a["invalid"] for a in answers.values()) == 4
    assert "answers (greedy)" in (tiny_run / "results.md").read_text()
    assert "| model | unchanged | changed | overall | split_mix |" in (tiny_run / "results.md").read_text()
    assert "Mean over the games" in (tiny_run / "results.md").read_text()
    for phase in ("mle", "rl"):  # each model carries its card: the prompt format on a real test example
        card = (tiny_run / phase / "model" / "README.md").read_text()
        assert card.startswith("# textgame world model") and "`rlvr-world run --preset tiny" in card
        assert "- Reward: " in card and "`task_specific`" in card and "\nobjects:\n{" in card
    config = json.loads((tiny_run / "config.json").read_text())
    assert config["rl"]["steps"] == 2
    rows = [json.loads(l) for l in (tiny_run / "rl" / "metrics.jsonl").read_text().splitlines()]
    logged = rows[-1]
    for key in ("reward/mean", "loss/kl", "loss/clip_frac", "policy/entropy", "response/length", "adv/flat_group_frac"):
        assert key in logged


def test_mle_lowers_the_loss_and_saves_a_plain_hf_model(tiny_run):
    from transformers import AutoModelForCausalLM

    rows = [json.loads(l) for l in (tiny_run / "mle" / "metrics.jsonl").read_text().splitlines()]
    first, last = sum(r["loss"] for r in rows[:3]) / 3, sum(r["loss"] for r in rows[-3:]) / 3
    assert last < 0.8 * first
    model = AutoModelForCausalLM.from_pretrained(tiny_run / "rl" / "model")  # a plain Hugging Face checkpoint
    from rlvr_world.text import load_tokenizer

    assert model.config.vocab_size == len(load_tokenizer(tiny_run / "rl" / "model"))


def test_eval_command_on_a_saved_model(tiny_run, tmp_path):
    out = tmp_path / "eval.json"
    cli("eval", "--model", str(tiny_run / "rl" / "model"), "--limit", "3", "--max-new-tokens", "8",
        "--out", str(out), "--threads", "1", cwd=tmp_path)
    res = json.loads(out.read_text())
    assert res["n"] == 3 and len(res["records"]) == 3


def test_a_runs_config_json_runs_it_again(tiny_run, tmp_path):
    """`--config RUN/config.json` is the run's own config: printed back as it is, and, with no preset named, it
    continues the finished run in a copy of its directory (every phase's fingerprint the same: nothing retrained)."""
    import shutil

    import yaml

    written = json.loads((tiny_run / "config.json").read_text())
    printed = cli("run", "--config", str(tiny_run / "config.json"), "--print-config", cwd=tmp_path).stdout
    assert yaml.safe_load(printed) == written
    copy = tmp_path / "copy"
    shutil.copytree(tiny_run, copy, ignore=shutil.ignore_patterns(".lock"))
    again = cli("run", "--config", str(tiny_run / "config.json"), "--out", str(copy), "--results",
                str(copy / "results.json"), "--resume", cwd=tmp_path)
    assert "| MLE |" in again.stdout and "made with other options" not in again.stderr
    assert same_weights(copy / "rl" / "model", tiny_run / "rl" / "model")


# in RL, an MLE model trained long enough to earn rewards, so that RL changes the weights and the test can fail
@pytest.mark.parametrize("phase,extra", [("mle", ["--mle.epochs", "1"]),
                                         ("rl", ["--rl.steps", "6", "--mle.epochs", "10", "--curve-limit", "0"])])
def test_resume_after_interrupt_equals_uninterrupted(tmp_path, phase, extra):
    full = tmp_path / "full"
    cli(*tiny(full, *extra), cwd=tmp_path)
    if phase == "rl":
        lines = (full / "rl" / "metrics.jsonl").read_text().splitlines()
        rewards = [json.loads(l).get("reward/mean", 0) for l in lines]
        assert max(rewards) > 0 and not same_weights(full / "mle" / "model", full / "rl" / "model")
    cut = tmp_path / "cut"
    p = subprocess.Popen([sys.executable, "-m", "rlvr_world.cli", *tiny(cut, *extra)], cwd=tmp_path, env=ENV,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log = cut / phase / "metrics.jsonl"
    while p.poll() is None:  # however slow the machine: a run that ends before its phase logs a loss fails below
        if log.exists() and any("loss" in l for l in log.read_text().splitlines()):
            p.send_signal(signal.SIGINT)
            break
        time.sleep(0.01)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 130, err[-2000:]
    assert (cut / phase / "checkpoint" / "trainer_state.pt").is_file()
    assert not (cut / "results.json").exists()
    cli(*tiny(cut, *extra), "--resume", cwd=tmp_path)
    assert same_weights(full / "rl" / "model", cut / "rl" / "model")
    a = json.loads((full / "results.json").read_text())
    b = json.loads((cut / "results.json").read_text())
    assert a["rlvr"] == b["rlvr"] and a["mle"] == b["mle"]


def one_line_error(p):
    """The one line of a user's error; the notice of a pretrained model's settings (said before work) aside."""
    assert p.returncode == 2, p.stderr
    lines = [l for l in p.stderr.splitlines() if l.strip() and "made for a model trained from scratch" not in l]
    assert len(lines) == 1, p.stderr
    return lines[0]


def test_unknown_option(tmp_path):
    line = one_line_error(cli("run", "--no-such-option", "3", cwd=tmp_path, check=False))
    assert "unrecognized arguments" in line


def test_unknown_preset_and_game(tmp_path):
    one_line_error(cli("run", "--preset", "huge", cwd=tmp_path, check=False))
    line = one_line_error(cli(*tiny(tmp_path / "o"), "--data.games", "chess", cwd=tmp_path, check=False))
    assert "chess" in line and not (tmp_path / "o").exists()


def test_a_bad_rl_option_fails_before_any_work(tmp_path):
    line = one_line_error(cli(*tiny(tmp_path / "o"), "--rl.baseline", "best", cwd=tmp_path, check=False))
    assert "unknown baseline 'best'" in line and not (tmp_path / "o").exists()


def test_missing_and_corrupt_data_files(tmp_path):
    line = one_line_error(cli(*tiny(tmp_path / "a"), "--data.train-path", "nope.jsonl.gz", cwd=tmp_path, check=False))
    assert "not found" in line
    bad = tmp_path / "bad.jsonl.gz"
    bad.write_bytes(b"\x1f\x8b this is not gzip")
    one_line_error(cli(*tiny(tmp_path / "b"), "--data.test-path", str(bad), cwd=tmp_path, check=False))
    junk = tmp_path / "junk.jsonl.gz"
    with gzip.open(junk, "wt") as f:
        f.write('{"game": "x"}\n')
    line = one_line_error(cli(*tiny(tmp_path / "c"), "--data.train-path", str(junk), cwd=tmp_path, check=False))
    assert "line 1" in line
    for name in "abc":
        assert not (tmp_path / name).exists()


def test_model_whose_vocabulary_does_not_match_its_tokenizer(tiny_run, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from rlvr_world.text import load_tokenizer

    bad = tmp_path / "badmodel"
    LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2)).save_pretrained(bad)
    load_tokenizer(tiny_run / "tokenizer").save_pretrained(bad)  # hundreds of tokens
    line = one_line_error(cli("eval", "--model", str(bad), cwd=tmp_path, check=False))
    assert "vocabulary" in line
    line = one_line_error(cli(*tiny(tmp_path / "r"), "--model.init-from", str(bad), cwd=tmp_path, check=False))
    assert "vocabulary" in line and not (tmp_path / "r").exists()
    one_line_error(cli("eval", "--model", str(tmp_path / "nothing"), cwd=tmp_path, check=False))


def test_seeds_summarises_runs_that_differ_in_their_seed(tiny_run, tmp_path):
    from scipy.stats import t as student

    res = json.loads((tiny_run / "results.json").read_text())
    paths = []
    for i, gain in enumerate((1.0, 2.0, 6.0)):  # RLVR - MLE on `overall` in three made-up runs
        r = json.loads(json.dumps(res))
        r["rlvr"]["overall"] = r["mle"]["overall"] + gain
        r["significance"]["overall"]["delta"] = gain  # the paired test's difference, which `seeds` prefers
        paths.append(tmp_path / f"s{i}.json")
        paths[-1].write_text(json.dumps(r))
    out = tmp_path / "sum" / "seeds.json"
    p = cli("seeds", *map(str, paths), "--out", str(out), cwd=tmp_path)
    s = json.loads(out.read_text())
    c = s["tables"]["main"]["overall"]
    assert c["delta"] == [1.0, 2.0, 6.0] and c["mean"] == 3.0 and c["n_up"] == 3
    sd = ((4 + 1 + 9) / 2) ** 0.5
    assert abs(c["sd"] - sd) < 1e-6
    assert abs(c["t_test_p"] - 2 * student.sf(3.0 / (sd / 3 ** 0.5), df=2)) < 1e-9
    assert s["same_mle"] and s["command"].startswith("rlvr-world seeds")
    assert "| overall | +1 (" in p.stdout and "from one MLE model" in p.stdout
    assert out.with_suffix(".md").is_file() and out.with_suffix(".png").stat().st_size > 1000
    r = json.loads(paths[0].read_text())
    r["mle"]["overall"] += 0.5  # another MLE model: the spread is no longer the RL seed's alone
    paths[0].write_text(json.dumps(r))
    cli("seeds", *map(str, paths), "--out", str(out), cwd=tmp_path)
    assert not json.loads(out.read_text())["same_mle"]
    r = json.loads(paths[1].read_text())
    r["significance"]["overall"]["delta"] = 2.04  # the paired mean difference, where the rounded means say 2.0
    paths[1].write_text(json.dumps(r))
    cli("seeds", *map(str, paths), "--out", str(out), cwd=tmp_path)
    assert json.loads(out.read_text())["tables"]["main"]["overall"]["delta"][1] == 2.04
    assert "at least two" in one_line_error(cli("seeds", str(paths[0]), cwd=tmp_path, check=False))
    assert "no results file" in one_line_error(cli("seeds", str(paths[0]), "nope.json", cwd=tmp_path, check=False))
    (tmp_path / "junk.json").write_text("[1, 2]")
    assert "not a results file" in one_line_error(cli("seeds", str(paths[0]), str(tmp_path / "junk.json"),
                                                      "--out", str(tmp_path / "x.json"), cwd=tmp_path, check=False))
    assert not (tmp_path / "x.json").exists()


def test_help_and_option_errors_answer_without_loading_torch(tmp_path):
    """The parser is built from the options modules alone: help and bad options come back at once."""
    code = ("import sys\nfrom rlvr_world.cli import parser\n"
            "for argv in (['run', '--preset', 'web', '--help'], ['run', '--domain', 'jsonl', '--nope', '1']):\n"
            "    try:\n        parser(argv).parse_args(argv)\n    except SystemExit:\n        pass\n"
            "heavy = sorted(m for m in ('torch', 'transformers', 'selenium', 'metaworld', 'scipy')\n"
            "               if m in sys.modules)\n"
            "print('HEAVY', heavy)\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    assert "HEAVY []" in p.stdout, p.stdout[-2000:] + p.stderr[-2000:]
    assert "--data.tasks" in p.stdout and "unrecognized arguments: --nope" in p.stderr


def test_torchrun_two_processes_run_the_tiny_preset_and_report_once(tmp_path):
    out = tmp_path / "run"
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                        "-m", "rlvr_world", *tiny(out)], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.count("exact-state accuracy (%) on 4") == 1 and p.stderr.count("RLVR: ") == 1  # process 0 speaks
    res = json.loads((out / "results.json").read_text())
    assert res["n_test"] == 4 and set(res["mle"]) == {"unchanged", "changed", "overall", "split_mix"}
    for name in ("mle", "rlvr"):
        records = json.loads((out / f"eval_{name}.json").read_text())["records"]
        assert sorted(r["index"] for r in records) == [0, 1, 2, 3]  # both processes' answers gathered
    assert not list(out.glob("*.partial*.jsonl"))
    assert [r["step"] for r in map(json.loads, (out / "mle" / "metrics.jsonl").read_text().splitlines())] == \
        list(range(1, len((out / "mle" / "metrics.jsonl").read_text().splitlines()) + 1))  # one writer
    again = cli(*tiny(out, "--resume"), cwd=tmp_path)  # one process continues a finished 2-process run
    assert "| MLE |" in again.stdout

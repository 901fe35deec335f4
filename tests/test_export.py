"""Our data and rewards under the paper-scale engines: exported verl/TRL datasets, verl's `compute_score`, and
steps of TRL's GRPOTrainer on the CPU with our text-game reward and on a user's own JSON-lines records."""

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from conftest import save_tiny_text_model
from test_cli import ENV, cli

from rlvr_world.domains.jsonl.records import prompt_text, read_records, target_text, trivial_text
from rlvr_world.domains.textgame import TextGameData
from rlvr_world.domains.textgame.domain import TextGameDomain
from rlvr_world.integrations import rows as rowmod
from rlvr_world.integrations.trl import completion_text, reward_function
from rlvr_world.integrations.verl import compute_score


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    for engine in ("verl", "trl"):
        cli("export", engine, "--preset", "default", "--limit", "12", "--out", str(root / engine), cwd=root)
    return root


def test_verl_rows_score_as_our_own_reward(exported):
    info = json.loads((exported / "verl" / "export.json").read_text())
    assert info["domain"] == "textgame" and info["reward"] == "task_specific" and info["command"].startswith(
        "rlvr-world export verl")
    train = pq.read_table(exported / "verl" / "train.parquet").to_pylist()
    assert len(train) == 12 and info["splits"]["train"]["rows"] == 12
    test = TextGameDomain.transitions("test", TextGameData())[:12]
    rows = pq.read_table(exported / "verl" / "test.parquet").to_pylist()
    reward = TextGameDomain.rewards["task_specific"]
    for t, r in zip(test, rows):
        assert r["data_source"] == "rlvr_world/textgame" and r["prompt"] == [
            {"role": "user", "content": TextGameDomain.prompt_text(t)}]
        assert r["reward_model"] == {"style": "rule", "ground_truth": TextGameDomain.target_text(t)}
        assert r["extra_info"]["group"] == ("changed" if t.changed else "unchanged")
        for response in (r["reward_model"]["ground_truth"], '{"modified": [], "removed": []}', "not json", ""):
            got = compute_score(r["data_source"], response, r["reward_model"]["ground_truth"], r["extra_info"])
            assert got == pytest.approx(reward(response, t)[0])  # the same value our RL phase would give
    changed = next(r for r in rows if r["extra_info"]["group"] == "changed")
    assert compute_score(changed["data_source"], changed["reward_model"]["ground_truth"], "",
                         changed["extra_info"]) == pytest.approx(1.3)  # all right: 0.09 + 0.01 + 0.2 + 1
    with pytest.raises(ValueError, match="not an rlvr-world row"):
        compute_score("openai/gsm8k", "4", "4", {})


def test_trl_reward_reads_the_exported_columns(exported):
    rows = pq.read_table(exported / "trl" / "test.parquet").to_pylist()
    assert set(rows[0]) == {"domain", "split", "index", "group", "prompt", "ground_truth", "transition", "reward"}
    f = reward_function()
    picked = [r for r in rows if r["group"] == "changed"][:3]
    completions = [r["ground_truth"] for r in picked] + ["garbage"]
    cols = {k: [r[k] for r in picked + picked[:1]] for k in ("domain", "transition", "reward")}
    got = f(prompts=[r["prompt"] for r in picked + picked[:1]], completions=completions, **cols)
    assert got[:3] == [pytest.approx(1.3)] * 3 and got[3] == 0.0
    binary = reward_function("binary")
    assert binary(prompts=[""], completions=[[{"role": "assistant", "content": rows[0]["ground_truth"]}]],
                  domain=["textgame"], transition=[rows[0]["transition"]], reward=["task_specific"]) == [1.0]
    assert completion_text(None) == "" and binary.__name__ == "rlvr_world_binary"
    with pytest.raises(ValueError, match="unknown textgame reward 'nope'"):
        rowmod.score("textgame", "nope", "", rows[0]["transition"])


def test_export_refuses_what_it_cannot_serve(tmp_path):
    p = cli("export", "trl", "--preset", "video-tiny", "--out", str(tmp_path / "x"), cwd=tmp_path, check=False)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "not text" in p.stderr and not (tmp_path / "x").exists()
    p = cli("export", "ray", cwd=tmp_path, check=False)
    assert p.returncode == 2 and "invalid choice: 'ray'" in p.stderr


def grpo_steps(train_parquet, tmp_path, steps: int, model_dir=None):
    """`steps` steps of TRL's GRPOTrainer (one group of 4 a step) on an exported training file with our reward, from
    `model_dir` (default: a tiny random model): the trainer and the rewards it was given, step by step."""
    pytest.importorskip("trl")
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast
    from trl import GRPOConfig, GRPOTrainer

    data = load_dataset("parquet", data_files=str(train_parquet), split="train")
    model_dir = model_dir or save_tiny_text_model(tmp_path / "m", [r["prompt"] + r["ground_truth"] for r in data],
                                                  vocab_size=400, max_positions=8192)
    tok = PreTrainedTokenizerFast.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    calls = []
    reward = reward_function()

    def counted(prompts, completions, **columns):
        out = reward(prompts, completions, **columns)
        calls.append(out)
        return out

    counted.__name__ = "rlvr_world"
    cfg = GRPOConfig(output_dir=str(tmp_path / "trl"), use_cpu=True, bf16=False, report_to=[], save_strategy="no",
                     logging_steps=1, max_steps=steps, per_device_train_batch_size=4, num_generations=4,
                     max_completion_length=8, learning_rate=1e-2, beta=0.001, temperature=1.0, seed=0,
                     disable_tqdm=True, dataloader_num_workers=0)
    trainer = GRPOTrainer(model=model, reward_funcs=counted, args=cfg, train_dataset=data, processing_class=tok)
    trainer.train()
    return trainer, calls


def test_trl_grpo_trainer_runs_two_steps_with_our_reward_on_exported_data(exported, tmp_path):
    trainer, calls = grpo_steps(exported / "trl" / "train.parquet", tmp_path, steps=2)
    assert len(calls) == 2 and all(len(c) == 4 for c in calls)  # one group of 4 per step, scored by our reward
    assert all(0.0 <= v <= 1.3 for c in calls for v in c)
    logged = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    assert logged == [pytest.approx(sum(c) / 4) for c in calls]  # what TRL trained on is what our reward gave


@pytest.fixture(scope="module")
def own_records(tmp_path_factory):
    """A user's own environment as JSON lines (the synthetic household, half the transitions changing), exported
    for TRL as the user would: `rlvr-world export trl --domain jsonl --data.train-path ... --data.test-path ...`."""
    root = tmp_path_factory.mktemp("own")
    p = subprocess.run([sys.executable, "-m", "rlvr_world.domains.jsonl.synthetic", "--out", "data", "--changed",
                        "0.5", "--train", "40", "--test", "10"], cwd=root, env=ENV, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    cli("export", "trl", "--domain", "jsonl", "--data.train-path", "data/train.jsonl", "--data.test-path",
        "data/test.jsonl", "--out", "trl", cwd=root)
    return root


def test_your_own_records_export_for_trl(own_records):
    info = json.loads((own_records / "trl" / "export.json").read_text())
    assert info["domain"] == "jsonl" and info["preset"] == "jsonl" and info["reward"] == "diff_f1"
    assert info["data"]["train_path"] == "data/train.jsonl" and info["command"].startswith("rlvr-world export trl")
    assert {s: n["rows"] for s, n in info["splits"].items()} == {"train": 40, "test": 10}  # RL's share: all of them
    f = reward_function()
    for split, n in (("train", 40), ("test", 10)):
        records = read_records(own_records / "data" / f"{split}.jsonl")
        rows = pq.read_table(own_records / "trl" / f"{split}.parquet").to_pylist()
        assert len(rows) == n and sorted(r["prompt"] for r in rows) == sorted(map(prompt_text, records))
    for r, rec in zip(rows, records):  # the test split keeps the file's order
        assert r["prompt"] == prompt_text(rec) and r["ground_truth"] == target_text(rec)
        assert (r["domain"], r["reward"], r["group"]) == ("jsonl", "diff_f1", "changed" if rec.changed else "unchanged")
    cols = {k: [r[k] for r in rows] for k in ("prompt", "domain", "transition", "reward")}
    cols["prompts"] = cols.pop("prompt")
    assert f(completions=[r["ground_truth"] for r in rows], **cols) == [1.0] * 10
    nothing = f(completions=[trivial_text(rec) for rec in records], **cols)  # wrong where something changes
    assert [v == 1.0 for v in nothing] == [r["group"] == "unchanged" for r in rows]
    p = cli("export", "trl", "--domain", "jsonl", "--preset", "default", cwd=own_records, check=False)
    assert p.returncode == 2 and "--preset default is a textgame preset, not a jsonl one" in p.stderr


def test_trl_grpo_trainer_runs_a_step_on_your_own_exported_records(own_records, tmp_path):
    trainer, calls = grpo_steps(own_records / "trl" / "train.parquet", tmp_path, steps=1)
    assert len(calls) == 1 and len(calls[0]) == 4 and all(0.0 <= v <= 1.0 for v in calls[0])
    assert [h["reward"] for h in trainer.state.log_history if "reward" in h] == [pytest.approx(sum(calls[0]) / 4)]

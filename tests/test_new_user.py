"""A new user's path through docs/your-environment.md, command by command, on records of their own.

The test writes a toy environment's transitions as JSON lines (a kettle, not the synthetic household), then runs
what the page documents as subprocesses, with tiny models and budgets: the trial run of step 2, the preset written
as a config file and run from it with a reward of the user's own (step 3), `eval` on another test file (step 4),
`serve` with a prediction asked over HTTP (docs/serving.md), and `export trl` of the same records with one step of
TRL's GRPOTrainer on them from the trained model.
"""

import http.client
import json
import random
import subprocess
import sys

import pyarrow.parquet as pq
import yaml
from test_cli import ENV, cli
from test_export import grpo_steps

from rlvr_world.domains.jsonl.records import REWARDS, Record, prompt_text

# small enough for seconds of training; every documented command keeps its own options, these come beside them
TINY = ["--threads", "1", "--vocab-size", "300", "--model.hidden-size", "64", "--model.num-layers", "2",
        "--model.num-heads", "2", "--model.max-positions", "512", "--mle.batch-tokens", "2000",
        "--mle.warmup-steps", "2", "--rl.prompts-per-step", "2", "--rl.group-size", "2", "--rl.max-new-tokens", "24",
        "--max-new-tokens", "24", "--curve-limit", "0"]


def kettle(n: int, seed: int) -> list[dict]:
    """A kettle: fill it, pour it out, switch it on (only when full), off, or wait (it warms, boils, then clicks off;
    switched off it cools)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        water = rng.choice(["empty", "full"])
        state = {"water": water, "power": "off" if water == "empty" else rng.choice(["off", "on"]),
                 "temp": "cold" if water == "empty" else rng.choice(["cold", "warm", "boiling"])}
        action = rng.choice(["fill", "pour out", "switch on", "switch off", "wait"])
        s = dict(state)
        if action == "fill":
            s["water"] = "full"
        elif action == "pour out":
            s.update(water="empty", power="off", temp="cold")
        elif action == "switch on" and s["water"] == "full":
            s["power"] = "on"
        elif action == "switch off":
            s["power"] = "off"
        elif action == "wait" and s["power"] == "on":
            s["temp"] = {"cold": "warm", "warm": "boiling", "boiling": "boiling"}[s["temp"]]
            s["power"] = "off" if s["temp"] == "boiling" else "on"
        elif action == "wait" and s["temp"] == "warm":
            s["temp"] = "cold"
        out.append({"state": state, "action": action, "next_state": s})
    return out


def write(path, records) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def post(port: int, path: str, body: dict) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("POST", path, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    return r.status, json.loads(r.read())


def test_a_new_users_path_from_records_to_a_served_model_and_trl(tmp_path):
    # 1. records of their own, split in two files (and a third to evaluate on later)
    write(tmp_path / "train.jsonl", kettle(48, seed=0))
    write(tmp_path / "test.jsonl", kettle(12, seed=1))
    write(tmp_path / "other.jsonl", kettle(6, seed=2))

    # 2. the trial run, as written
    cli("run", "--domain", "jsonl", "--data.train-path", "train.jsonl", "--data.test-path", "test.jsonl",
        "--mle.epochs", "1", "--rl.steps", "2", "--out", "runs/try", "--results", "runs/try/results.json", *TINY,
        cwd=tmp_path)
    tried = json.loads((tmp_path / "runs" / "try" / "results.json").read_text())
    assert tried["domain"] == "jsonl" and tried["n_test"] == 12 and set(tried["mle"]) == {"unchanged", "changed",
                                                                                           "overall", "split_mix"}

    # 3. the preset as a config file, the data paths (and tiny settings) set in it, a reward of their own named
    (tmp_path / "mine.yaml").write_text(cli("run", "--preset", "jsonl", "--print-config", cwd=tmp_path).stdout)
    mine = yaml.safe_load((tmp_path / "mine.yaml").read_text())
    mine["data"].update(train_path="train.jsonl", test_path="test.jsonl")
    mine.update(threads=1, vocab_size=300, max_new_tokens=24, curve_limit=0)
    mine["model"].update(hidden_size=64, num_layers=2, num_heads=2, max_positions=512)
    mine["mle"].update(epochs=4, lr=1e-2, batch_tokens=2000, warmup_steps=2)
    mine["rl"].update(steps=2, prompts_per_step=2, group_size=2, max_new_tokens=24, reward="kettlereward:temp")
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(mine))
    (tmp_path / "kettlereward.py").write_text(
        "def temp(pred, record):\n"
        "    right = float(pred.get('temp') == record.next_state['temp'])\n"
        "    return right, {'temp': right}\n")
    p = cli("run", "--config", "mine.yaml", cwd=tmp_path)
    assert "| MLE |" in p.stdout
    res = json.loads((tmp_path / "results" / "jsonl.json").read_text())  # the preset's --results
    assert res["reward"] == "kettlereward:temp" and res["n_test"] == 12
    rows = [json.loads(line) for line in (tmp_path / "runs/jsonl/rl/metrics.jsonl").read_text().splitlines()]
    assert [("reward/mean" in r, "reward/parsed" in r) for r in rows] == [(True, True)] * 2  # a line per RL step
    model = tmp_path / "runs" / "jsonl" / "rl" / "model"  # where the page says the model is

    # 4. the trained model on another test file
    ev = cli("eval", "--model", "runs/jsonl/rl/model", "--data.test-path", "other.jsonl", "--threads", "1",
             "--max-new-tokens", "24", cwd=tmp_path)
    assert json.loads(ev.stdout)["n"] == 6

    # served, and asked for a prediction over HTTP: the prompt the domain writes, read back as a next state
    record = Record(**kettle(1, seed=3)[0])
    served = subprocess.Popen([sys.executable, "-m", "rlvr_world.cli", "serve", "--model", "runs/jsonl/rl/model",
                               "--port", "0", "--threads", "1"], cwd=tmp_path, env=ENV, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        line = served.stdout.readline()
        assert line.startswith("serving 'runs/jsonl/rl/model' at http://127.0.0.1:"), line + served.stderr.read()
        port = int(line.split("127.0.0.1:")[1].split("/")[0])
        status, r = post(port, "/v1/completions", {"prompt": prompt_text(record), "max_tokens": 32,
                                                   "temperature": 0})
        assert status == 200 and r["choices"][0]["finish_reason"] in ("stop", "length"), r
        value, _ = REWARDS["exact"](r["choices"][0]["text"], record)  # whatever it says, it scores
        assert value in (0.0, 1.0) and r["usage"]["prompt_tokens"] > 10
        assert served.poll() is None
    finally:
        served.terminate()
        served.wait(30)

    # the same records exported for TRL, and one GRPOTrainer step on them from the trained model
    cli("export", "trl", "--domain", "jsonl", "--data.train-path", "train.jsonl", "--data.test-path", "test.jsonl",
        "--out", "runs/export/trl-mine", cwd=tmp_path)
    out = tmp_path / "runs" / "export" / "trl-mine"
    info = json.loads((out / "export.json").read_text())
    assert info["splits"]["train"]["rows"] == 48 and info["splits"]["test"]["rows"] == 12
    assert pq.read_table(out / "test.parquet").to_pylist()[0]["prompt"] == prompt_text(
        Record(**kettle(12, seed=1)[0]))
    _, calls = grpo_steps(out / "train.parquet", tmp_path, steps=1, model_dir=model)
    assert len(calls) == 1 and len(calls[0]) == 4 and all(0.0 <= v <= 1.0 for v in calls[0])

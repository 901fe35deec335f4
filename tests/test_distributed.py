"""Data parallelism: 2 CPU processes (gloo, launched with torchrun) follow 1 process's trajectory, and resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rlvr_world.engine import models

WORKER = Path(__file__).with_name("ddp_worker.py")


def launch(mode, out, processes, *extra, wait=True):
    if processes == 1:
        cmd = [sys.executable, str(WORKER), mode, str(out), *extra]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
               str(WORKER), mode, str(out), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    if not wait:
        return proc
    log, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, log[-3000:]
    return log


def rows(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def assert_same_weights(a, b, atol=1e-5):
    ma, mb = models.load(a / "model"), models.load(b / "model")
    for (name, p), q in zip(ma.named_parameters(), mb.parameters()):
        assert torch.allclose(p, q, atol=atol), (name, (p - q).abs().max().item())


@pytest.mark.parametrize("mode, keys", [
    ("mle", ["loss", "grad_norm", "target_tokens"]),
    ("rl", ["reward/mean", "loss/total", "policy/grad_norm", "response/length"]),
    ("rl-token", ["reward/mean", "loss/total", "policy/grad_norm", "adv/token_reward_rms"]),
])
def test_two_processes_follow_one_process(tmp_path, mode, keys):
    launch(mode, tmp_path / "one", 1)
    launch(mode, tmp_path / "two", 2)
    one, two = rows(tmp_path / "one"), rows(tmp_path / "two")
    assert [r["step"] for r in one] == [r["step"] for r in two] and len(one) >= 8
    for a, b in zip(one, two):
        for k in keys:
            assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-6), (a["step"], k, a[k], b[k])
    assert "sync_s" in two[0] or "time/sync_s" in two[0]  # only the 2-process run all-reduces
    assert_same_weights(tmp_path / "one", tmp_path / "two")


def test_a_stopped_two_process_run_resumes_where_it_stopped(tmp_path):
    launch("rl", tmp_path / "whole", 2)
    cut = tmp_path / "cut"
    proc = launch("rl", cut, 2, "--slow", "0.05", wait=False)  # ~0.8 s a step
    while proc.poll() is None and not (cut / "metrics.jsonl").exists():  # no deadline: a slow machine only waits
        time.sleep(0.1)
    while proc.poll() is None and len(rows(cut)) < 2:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGTERM)  # as a scheduler stops a job: every process gets it
    proc.communicate(timeout=120)
    stopped = torch.load(cut / "checkpoint" / "trainer_state.pt", weights_only=False)["step"]
    assert 2 <= stopped < 8 and not (cut / "model").exists()
    launch("rl", cut, 2, "--resume", "--slow", "0.05")
    assert [r["step"] for r in rows(cut)] == list(range(1, 9))
    assert_same_weights(tmp_path / "whole", cut)


def test_two_processes_share_an_evaluation_and_both_get_the_whole_result(tmp_path):
    launch("eval", tmp_path / "one", 1)
    two = tmp_path / "two"
    two.mkdir()
    # an interrupted 2-process evaluation left examples 6-8 in process 1's file: every process reads every file
    kept = [r for r in json.loads((tmp_path / "one" / "eval.json").read_text())["records"] if r["index"] in (6, 7, 8)]
    (two / "eval.partial.1.jsonl").write_text("".join(json.dumps({**r, "value": -1.0}) + "\n" for r in kept))
    launch("eval", two, 2)
    a, b = (json.loads((d / "eval.json").read_text()) for d in (tmp_path / "one", two))
    assert [r["index"] for r in b["records"]] == list(range(23))
    assert [r["response"] for r in a["records"]] == [r["response"] for r in b["records"]]
    assert [r["value"] for r in b["records"] if r["index"] in (6, 7, 8)] == [-1.0] * 3  # reused, not redone
    assert [r["value"] for r in b["records"] if r["index"] not in (6, 7, 8)] == \
        [r["value"] for r in a["records"] if r["index"] not in (6, 7, 8)]
    assert a["counts"] == b["counts"] == {"g0": 12, "g1": 11}

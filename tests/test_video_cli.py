"""The video domain end to end as a user runs it: simulate -> frame tokenizer -> MLE -> RLVR -> real footage ->
results."""

import json
import os

import pytest
from test_cli import ENV, cli, same_weights


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A video-tiny run made through the command line: (its parent folder, the run, the environment)."""
    tmp_path = tmp_path_factory.mktemp("video")
    env = {**ENV, "RLVR_WORLD_CACHE": str(tmp_path / "cache")}
    out = tmp_path / "run"
    cli("run", "--preset", "video-tiny", "--threads", "1", "--out", str(out), "--results", str(out / "video.json"),
        cwd=tmp_path, env=env)
    return tmp_path, out, env


def test_video_tiny_run_simulates_trains_and_reports(tiny_run):
    tmp_path, out, env = tiny_run
    res = json.loads((out / "video.json").read_text())
    assert res["domain"] == "video" and res["reward"] == "mae_lpips" and res["command"].startswith("rlvr-world run")
    for setting in ("single_step", "multi_step"):
        for model in ("mle", "rlvr"):
            m = res[setting][model]
            assert {"mse", "mae", "psnr", "ssim", "lpips"} <= set(m) and 0 <= m["ssim"] <= 1 and m["mse"] >= 0
            assert m["lpips"] > 0
        assert os.path.isfile(res["pictures"][setting])
    assert "repetition_rate" in res["multi_step"]["mle"] and "repetition_rate" not in res["single_step"]["mle"]
    assert {"sim_test", "bridge_test", "rt1"} <= set(res["tokenizer"])
    real = res["bridge_real"]
    assert {"zero_shot_mle", "finetuned_mle", "finetuned_rlvr"} <= set(real) and real["n_test_episodes"] == 5
    assert "### Multi-step" in (out / "video.md").read_text()
    assert list((tmp_path / "cache" / "video").glob("metaworld-*.npz"))  # simulated once, cached
    assert not same_weights(out / "mle" / "model", out / "rl" / "model")  # RL changed the weights
    rows = [json.loads(line) for line in (out / "rl" / "metrics.jsonl").read_text().splitlines()]
    assert any("reward/ssim" in r and "reward/lpips" in r for r in rows)
    assert list((tmp_path / "cache" / "lpips").glob("alex-*.safetensors"))  # pretrained weights, converted once


def test_video_bad_task_is_one_line_before_anything_runs(tmp_path):
    env = {**ENV, "RLVR_WORLD_CACHE": str(tmp_path / "cache")}
    p = cli("run", "--preset", "video-tiny", "--data.tasks", "no-such-task", "--out", str(tmp_path / "x"),
            cwd=tmp_path, env=env, check=False)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "no-such-task" in p.stderr
    assert not (tmp_path / "x").exists()


def test_policy_eval_on_a_tiny_run_end_to_end_and_resumed(tiny_run):
    tmp_path, run, env = tiny_run
    out = tmp_path / "pe" / "policy-eval.json"
    args = ("policy-eval", "--run", str(run), "--episodes", "2", "--train-episodes", "3", "--test-episodes", "2",
            "--policy-steps", "4", "--detector-steps", "4", "--detector-episodes", "1", "--batch-size", "8",
            "--policies", "bc", "bc-noise-1.0", "random", "--threads", "1", "--out", str(out),
            "--run-dir", str(tmp_path / "pe-run"))
    p = cli(*args, cwd=tmp_path, env=env)
    res = json.loads(out.read_text())
    assert res["tasks"] == ["reach-v3"] and res["policies"] == ["bc", "bc-noise-1.0", "random"]
    assert res["command"].startswith("rlvr-world policy-eval")
    assert {"real", "mle", "rlvr", "hold"} == set(res["estimators"]) and len(res["points"]) == 3
    for point in res["points"]:
        assert all(0 <= point[k] <= 100 for k in ("true", "real", "mle", "rlvr", "hold"))
    assert {"frames_real", "frames_reconstructed", "episodes_real", "episodes_reconstructed"} <= set(res["detector"])
    steps = 5 + 1 - 2  # the tiny run's 6 frames an episode after its 2 context frames
    assert len(res["rollouts"]["mle"]["mae_by_step"]) == steps and "repeat" in res["rollouts"]["rlvr"]
    assert set(res["rollouts"]["mle"]["first_step_mae"]) == {"bc", "bc-noise-1.0", "random"}
    spread = {w: r["policy_spread"] for w, r in res["rollouts"].items()}
    assert spread["mle"]["real"] == spread["rlvr"]["real"] == spread["hold"]["real"] > 0  # the same true episodes
    for e in res["estimators"].values():
        assert e["false_success"] is None or 0 <= e["false_success"] <= 100
    assert os.path.isfile(out.with_suffix(".png")) and os.path.isfile(out.with_name("policy-eval-rollout.png"))
    assert "RLVR world model" in p.stdout
    nets = sorted(f.name for f in (tmp_path / "pe-run" / "policies").iterdir())
    assert nets == ["bc.json", "bc.safetensors"]  # the noisy variant shares the clone's network
    seen = sorted(f.name for f in (tmp_path / "pe-run" / "detector-data").iterdir())
    assert seen == ["bc-noise-1.0.npz", "bc.npz", "random.npz"]  # the policies' own states, for the detector
    assert set(res["per_task"]["reach-v3"]) == {"real", "mle", "rlvr", "hold"}
    # a second run re-reads every phase and gives the same numbers; other settings in the same folder are refused
    before = (tmp_path / "pe-run" / "truth" / "bc.npz").stat().st_mtime_ns
    cli(*args, "--strip", "random:reach-v3", cwd=tmp_path, env=env)  # the strip may change without a new run
    again = json.loads(out.read_text())
    assert again["points"] == res["points"] and again["detector"] == res["detector"]
    assert again["strip"]["policy"] == "random" and set(again["strip"]["verdicts"]) == {"simulator", "mle", "rlvr"}
    bad = cli(*args, "--strip", "random:door-open-v3", cwd=tmp_path, env=env, check=False)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "not among the evaluated tasks" in bad.stderr
    assert (tmp_path / "pe-run" / "truth" / "bc.npz").stat().st_mtime_ns == before
    bad = cli(*args, "--episodes", "3", cwd=tmp_path, env=env, check=False)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "other settings (episodes)" in bad.stderr

"""The video domain end to end as a user runs it: simulate -> frame tokenizer -> MLE -> RLVR -> real footage -> results."""

import json
import os

from test_cli import ENV, cli, same_weights


def test_video_tiny_run_simulates_trains_and_reports(tmp_path):
    env = {**ENV, "RLVR_WORLD_CACHE": str(tmp_path / "cache")}
    out = tmp_path / "run"
    cli("run", "--preset", "video-tiny", "--threads", "1", "--out", str(out), "--results", str(out / "video.json"),
        cwd=tmp_path, env=env)
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

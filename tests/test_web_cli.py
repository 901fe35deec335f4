"""The web domain end to end as a user runs it: real browser collection -> MLE -> RLVR -> results."""

import json
import os

from test_cli import ENV, cli, same_weights


def test_web_tiny_run_collects_trains_and_reports(tmp_path):
    env = {**ENV, "RLVR_WORLD_CACHE": str(tmp_path / "cache")}
    out = tmp_path / "run"
    cli("run", "--preset", "web-tiny", "--threads", "1", "--out", str(out), "--results", str(out / "web.json"),
        cwd=tmp_path, env=env)
    res = json.loads((out / "web.json").read_text())
    assert res["domain"] == "web" and res["reward"] == "f1" and res["n_task_types"] >= 1
    for key in ("mle", "rlvr"):
        assert {"precision", "recall", "f1"} <= set(res[key])
        assert all(0 <= res[key][k] <= 100 for k in ("precision", "recall", "f1"))
    assert set(res["phase_s"]) == {"collect", "tokenizer", "mle", "eval_mle", "rl", "eval_rlvr"}
    assert "| precision | recall | f1 |" in (out / "web.md").read_text()
    assert list((tmp_path / "cache" / "web").glob("miniwob-*.jsonl.gz"))  # collected once, cached
    assert not same_weights(out / "mle" / "model", out / "rl" / "model")  # RL changed the weights
    rows = [json.loads(line) for line in (out / "rl" / "metrics.jsonl").read_text().splitlines()]
    assert any("reward/f1" in r for r in rows)


def test_web_options_need_a_web_preset(tmp_path):
    from rlvr_world.runconfig import preset_for

    assert preset_for(None, "web") == "web"  # --domain web alone runs the web domain's own preset
    p = cli("run", "--preset", "default", "--domain", "web", "--out", str(tmp_path / "x"), cwd=tmp_path, check=False)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "presets (web" in p.stderr
    assert not (tmp_path / "x").exists() or not os.listdir(tmp_path / "x")

"""bench/pretrained.py --quick end to end on a tiny stand-in for SmolLM2: every part runs and the JSON holds what
bench/README.md says it does (the numbers themselves belong to the benchmark, not to a test)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rlvr_world.domains.textgame.domain import TextGameDomain
from rlvr_world.engine import models
from rlvr_world.engine.options import ModelConfig
from rlvr_world.runconfig import preset

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    """An HF directory a `--model.init-from` accepts: a 2-layer Llama and a BPE tokenizer of the quick run's game."""
    d = tmp_path_factory.mktemp("standin")
    TextGameDomain.make_tokenizer(preset("tiny").data, 600).save_pretrained(d)
    tok = TextGameDomain.load_tokenizer(d)
    model = models.build(ModelConfig(hidden_size=64, num_layers=2, num_heads=2, max_positions=2048), len(tok),
                         pad_id=tok.pad_token_id, bos_id=tok.bos_token_id, eos_id=tok.eos_token_id)
    model.save_pretrained(d)
    return d


def test_quick_run_measures_every_part(standin, tmp_path):
    pytest.importorskip("trl")  # the dev extra's; the RL step is raced against TRL's GRPOTrainer
    out = tmp_path / "bench-pretrained.json"
    p = subprocess.run([sys.executable, "bench/pretrained.py", "--quick", "--init-from", str(standin), "--threads", "1",
                        "--out", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["quick"] and r["preset"] == "textgame-pretrained" and r["model"]["lora_rank"] == 32
    m = r["machine"]
    assert {"cpu", "cores", "threads", "torch", "dtype", "versions"} <= set(m) and m["threads"] == 1
    assert m["cpu"]["model"] and r["dtype"] in ("bf16", "fp32") and r["dtype"] in r["matmul_peak_gflops"]
    assert r["read_bandwidth_gb_s"] > 0
    # sampling at both shapes, ours against generate, the quick shapes
    rl, ev = r["sampling"]["rl_shape"], r["sampling"]["eval_shape"]
    assert (rl["prompts"], rl["group"], rl["new_tokens"], ev["prompts"], ev["max_new_tokens"]) == (2, 2, 8, 4, 8)
    assert min(rl["ours_tok_s"], rl["generate_static_tok_s"], ev["ours_tok_s"], ev["generate_static_tok_s"]) > 0
    assert 0 < ev["new_tokens"]["ours"] <= 4 * 8 and 0 <= ev["generate_same_answers"] <= 1
    assert r["decode_floor"]["floor_step_ms"] > 0 and r["decode_floor"]["kv_mb_per_step"] > 0
    # llama.cpp: numbers, or the reason there are none (not installed; no GGUF of an HF directory without a converter)
    ll = r["llama_cpp"]
    if ll["status"] == "measured":
        assert any("rl_shape_tok_s" in ll[k] for k in ("f32", "f16"))
    else:
        assert ll["status"] in ("not installed", "no GGUF") and (ll.get("reason") or ll["f32"]["reason"])
    # one RL step each, and the SFT step against the peak
    step = r["rl_step"]
    assert step["ours_s"] > 0 and step["trl_s"] > 0 and len(step["ours_all_s"]) == 2 and len(step["trl_all_s"]) == 1
    assert step["micro_batch"] == 2 and step["new_tokens"] == 8
    sft = r["sft"]
    assert sft["steps_timed"] == 1 and sft["padded_tok_s"] > 0 and 0 < sft["peak_share"]
    md = out.with_suffix(".md").read_text()
    assert "TRL GRPOTrainer" in md and "generate, static cache" in md

"""How many tokens the language domains cost with a pretrained model's tokenizer, and what its chat template adds.

    python experiments/pretrained_tokens.py [--model smollm2-135m] [--out results/bench-pretrained-tokens.json]

Counts prompt and target tokens per split and group (changed / unchanged) for
the text game (bundled data) and, when its dataset is already collected, the
web domain (web-full's collection settings). The chat-template overhead is the
extra tokens of the model's template around one user turn with the generation
prompt. Tokenizer only: no model is run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from rlvr_world.domains.textgame import TextGameData, TextGameDomain
from rlvr_world.domains.web import WebData, WebDomain
from rlvr_world.engine.atomicwrite import save_json
from rlvr_world.engine.pretrained import resolve
from rlvr_world.text import load_tokenizer


def stats(xs) -> dict:
    a = np.asarray(xs)
    return {"mean": round(float(a.mean()), 1), "median": float(np.median(a)), "p95": float(np.percentile(a, 95)),
            "max": int(a.max()), "n": int(a.size)}


def count(domain_cls, data, tok) -> dict:
    out = {}
    for split in ("train", "test"):
        ts = domain_cls.transitions(split, data)
        p = [len(tok.encode(domain_cls.prompt_text(t), add_special_tokens=False)) for t in ts]
        t_ = [len(tok.encode(domain_cls.target_text(t), add_special_tokens=False)) + 1 for t in ts]  # + end id
        ch = np.array([t.changed for t in ts])
        out[split] = {"prompt": stats(p), "target_changed": stats(np.array(t_)[ch]),
                      "target_unchanged": stats(np.array(t_)[~ch]) if (~ch).any() else None,
                      "n_changed": int(ch.sum())}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--out", default="results/bench-pretrained-tokens.json")
    args = ap.parse_args()
    tok = load_tokenizer(resolve(args.model))
    ids = tok.apply_chat_template([{"role": "user", "content": "x"}], add_generation_prompt=True, tokenize=True)
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    res = {"command": "python " + " ".join(sys.argv), "model": args.model, "vocab": len(tok),
           "chat_template_overhead": len(ids) - len(tok.encode("x", add_special_tokens=False)),
           "textgame": count(TextGameDomain, TextGameData(), tok)}
    web = WebData(episodes_per_task=36)
    res["web"] = count(WebDomain, web, tok) if web.path().is_file() else f"not collected here ({web.path()})"
    save_json(Path(args.out), res)
    print(res)


if __name__ == "__main__":
    main()

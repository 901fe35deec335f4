"""A saved model's README.md: what it reads and answers, so that it can be used without rlvr-world.

The pipeline writes one into each model directory it saves (`RUN/mle/model`,
`RUN/rl/model`), from the run's own config and test data: the domain, how a
prompt and its answer are written (the domain's `prompt_format` and a real
test example, prompt and answer), the reward, the command that made the
model, and how to serve it or load it with transformers alone.
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any

PHASES = {"mle": "MLE (supervised on the training split's answers)", "rl": "RLVR (GRPO from the MLE model)"}


def reward_line(reward: Any) -> str:
    """The first line of a reward's docstring, or "" (a partial's function is read; a lambda has none)."""
    doc = inspect.getdoc(getattr(reward, "func", reward)) if callable(reward) else None
    return doc.splitlines()[0] if doc else ""


def fenced(text: str, lang: str = "text") -> str:
    """`text` in a Markdown code fence longer than any run of backticks inside it."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{text}{'' if text.endswith(chr(10)) else chr(10)}{fence}"


def shell_json(text: str, longest: int = 1000) -> str:
    """`text` as a JSON string to go inside a shell's single quotes; a placeholder when long or quoted."""
    return json.dumps(text, ensure_ascii=False) if len(text) <= longest and "'" not in text \
        else '"<the prompt text, JSON-escaped>"'


def card(*, phase: str, model_dir: Path, domain_cls, cfg, command: str, example: dict[str, str] | None,
         eos_token: str) -> str:
    """The README.md of the model a run's `phase` ("mle" or "rl") saved into `model_dir`."""
    reward = cfg.rl.reward
    doc = reward_line(domain_cls.rewards.get(reward)) if reward in domain_cls.rewards else ""
    data = ", ".join(f"{k}: `{v}`" for k, v in domain_cls.describe(cfg.data).items())
    start = f"`{cfg.model.init_from}`" if cfg.model.init_from else "a model trained from scratch"
    if cfg.model.init_adapter:
        start += f" with the adapter `{cfg.model.init_adapter}`"
    trained = "RL optimised" if phase == "rl" else "the run's RL phase optimises"
    lines = [
        f"# {domain_cls.name} world model, {PHASES[phase]}",
        "",
        f"Trained by rlvr-world: `{command}`, starting from {start}.",
        "",
        f"- Domain: `{domain_cls.name}`" + (f" ({data})" if data else ""),
        f"- Reward: {trained} `{reward}`" + (f": {doc}" if doc else ""),
        f"- Evaluated by {domain_cls.metric_label or domain_cls.metric} on the test split, greedy, up to "
        f"{cfg.max_new_tokens} new tokens (the run's `results.json`)",
        "",
        "## Prompt and answer",
        "",
    ]
    if example is None:
        lines += [domain_cls.prompt_format, ""]
    else:
        lines += [
            "The model reads plain text, tokenised without special tokens and with no chat template (the "
            f"tokenizer's own template, if any, was not used in training), and writes its answer followed by "
            f"its end-of-sequence token `{eos_token}`. {domain_cls.prompt_format}".rstrip(),
            "",
            "A test example where the state changes. The prompt:",
            "",
            fenced(example["prompt"]),
            "",
            "The right answer:",
            "",
            fenced(example["answer"]),
            "",
            "\"Nothing changes\" is answered:",
            "",
            fenced(example["nothing changes"]),
            "",
            "## Use",
            "",
            "Serve it behind an OpenAI-compatible completions endpoint (`POST /v1/completions`, the prompt text as "
            "`prompt`; here the example's):",
            "",
            fenced(f"rlvr-world serve --model {model_dir} --port 8000\n"
                   f"curl -s http://127.0.0.1:8000/v1/completions -H 'Content-Type: application/json' \\\n"
                   f"  -d '{{\"prompt\": {shell_json(example['prompt'])}, \"max_tokens\": {cfg.max_new_tokens}, "
                   f"\"temperature\": 0}}'", "bash"),
            "",
            "or load it with transformers alone:",
            "",
            fenced(USE.format(model_dir=json.dumps(str(model_dir)), max_new_tokens=cfg.max_new_tokens), "python"),
        ]
    return "\n".join(lines) + "\n"


USE = '''from transformers import AutoModelForCausalLM, AutoTokenizer

tok = AutoTokenizer.from_pretrained({model_dir})
model = AutoModelForCausalLM.from_pretrained({model_dir})
ids = tok(prompt, add_special_tokens=False, return_tensors="pt").input_ids
out = model.generate(ids, max_new_tokens={max_new_tokens}, do_sample=False, eos_token_id=tok.eos_token_id,
                     pad_token_id=tok.pad_token_id)
answer = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)'''


def write(model_dir: Path, text: str) -> None:
    """README.md in `model_dir`, written under a temporary name and renamed."""
    tmp = model_dir / "README.md.tmp"
    tmp.write_text(text)
    tmp.replace(model_dir / "README.md")

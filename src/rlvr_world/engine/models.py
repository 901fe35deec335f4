"""Causal LMs: small Llama-style models built from a config, or a local Hugging Face directory.

Nothing is ever downloaded: `load` reads a local directory only. Both return
the model with its linear maps on oneDNN where that applies (`kernels.accelerate`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from .kernels import accelerate


@dataclass
class ModelConfig:
    """Shape of a model trained from scratch (ignored when `init_from` is set)."""

    hidden_size: int = 256  # width of the residual stream
    num_layers: int = 4  # transformer blocks
    num_heads: int = 4  # attention heads (head dim = hidden_size / num_heads)
    intermediate_size: int = 0  # MLP width; 0 picks 8/3 * hidden rounded to 32
    max_positions: int = 2048  # longest prompt + response the model accepts
    init_from: str = ""  # a local Hugging Face causal-LM directory to start from instead


class ModelError(ValueError):
    """A model that cannot be used as asked (missing, or mismatched with its tokenizer)."""


def build(cfg: ModelConfig, vocab_size: int, *, pad_id: int, bos_id: int, eos_id: int) -> LlamaForCausalLM:
    inter = cfg.intermediate_size or (int(cfg.hidden_size * 8 / 3) + 31) // 32 * 32
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=inter,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=cfg.max_positions,
        tie_word_embeddings=True,
        pad_token_id=pad_id,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        attn_implementation="sdpa",
    )
    return accelerate(LlamaForCausalLM(config))


def load(path: str | os.PathLike) -> torch.nn.Module:
    """A causal LM from a local directory, with a one-line error when it is not one."""
    p = Path(path)
    if not (p / "config.json").is_file():
        raise ModelError(f"{p} is not a model directory (no config.json)")
    try:
        model = AutoModelForCausalLM.from_pretrained(p, local_files_only=True, dtype=torch.float32)
    except Exception as e:  # a corrupt or foreign directory
        raise ModelError(f"cannot load a causal LM from {p}: {type(e).__name__}: {str(e).splitlines()[0]}") from e
    return accelerate(model)


def check_vocab(model: torch.nn.Module, vocab_size: int, where: str = "") -> None:
    """Refuse a model whose embedding cannot hold every tokenizer id."""
    n = model.get_input_embeddings().num_embeddings
    if n < vocab_size:
        raise ModelError(
            f"model vocabulary ({n}) is smaller than its tokenizer's ({vocab_size}){' in ' + where if where else ''}"
        )


def num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

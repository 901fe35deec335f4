"""Causal LMs: small Llama-style models built from a config, or a local Hugging Face directory; LoRA adapters.

Nothing is ever downloaded: `load` reads a local directory only (`pretrained.resolve`
turns a model name or a GGUF file into one). Both return the model with its
linear maps on oneDNN where that applies (`kernels.accelerate`).

LoRA (`peft`): `with_lora` wraps a model so that only low-rank adapters on
its linear maps train; the model with its adapter switched off is the
starting model (the RL stage's KL reference, at no extra memory). A trainer
checkpoints the adapter alone; `merged` folds it into the weights, which
gives a plain model that saves and reloads like any other.
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from .errors import UserError
from .kernels import accelerate, forget_packed
from .options import ModelConfig




class ModelError(UserError, ValueError):
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


def with_lora(model: torch.nn.Module, rank: int, alpha: float) -> torch.nn.Module:
    """`model` with fresh LoRA adapters on all its linear maps but the output head; only they train."""
    from peft import LoraConfig, get_peft_model

    with _quiet_peft():
        lora = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules="all-linear")
        return get_peft_model(model, lora)


def load_adapter(model: torch.nn.Module, path: str | os.PathLike, trainable: bool = True) -> torch.nn.Module:
    """`model` with the LoRA adapter saved in `path` (a trainer checkpoint, a phase's `adapter/`, an adapter folder),
    in fp32 whatever it was stored in."""
    from peft import PeftModel

    with _quiet_peft():
        return PeftModel.from_pretrained(model, str(path), is_trainable=trainable)


@contextmanager
def _quiet_peft():
    """peft (0.21) still reads `is_gradient_checkpointing`, which transformers 5.x deprecates: not our users'
    concern."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def is_adapter(path: str | os.PathLike) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def has_lora(model: torch.nn.Module) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "merge_and_unload")


def merged(model: torch.nn.Module) -> torch.nn.Module:
    """The plain model with its LoRA adapter folded into the weights (the model itself when it has none)."""
    if not has_lora(model):
        return model
    model = model.merge_and_unload()
    forget_packed(model)  # the merge rewrote weights in place: packed copies are stale
    return model


def reference_mode(model: torch.nn.Module):
    """A context in which a LoRA model computes as its starting model (adapter off)."""
    return model.disable_adapter()


def check_vocab(model: torch.nn.Module, vocab_size: int, where: str = "") -> None:
    """Refuse a model whose embedding cannot hold every tokenizer id."""
    n = model.get_input_embeddings().num_embeddings
    if n < vocab_size:
        raise ModelError(
            f"model vocabulary ({n}) is smaller than its tokenizer's ({vocab_size}){' in ' + where if where else ''}"
        )


def num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def num_trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

"""The engine's options: a model's shape, MLE training and GRPO, as plain dataclasses.

They import nothing heavy, so the command line can list and check them without
loading torch. Each field's comment is its `--help` text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..optionparsing import choices_of, require, require_choice


@dataclass
class ModelConfig:
    """Shape of a model trained from scratch (ignored when `init_from` is set)."""

    hidden_size: int = 256  # width of the residual stream
    num_layers: int = 4  # transformer blocks
    num_heads: int = 4  # attention heads (head dim = hidden_size / num_heads)
    intermediate_size: int = 0  # MLP width; 0 picks 8/3 * hidden rounded to 32
    max_positions: int = 2048  # longest prompt + response the model accepts
    init_from: str = ""  # start from a pretrained model: a name (smollm2-135m), a .gguf file or an HF directory
    # start from a saved LoRA adapter on init_from's model: a folder written by `rlvr-world adapter save`
    # (adapters/NAME); MLE trains it further, or with --mle.epochs 0 it is the MLE model as it is
    init_adapter: str = ""
    lora_rank: int = 0  # train LoRA adapters of this rank on every linear map instead of all weights (0: full)
    lora_alpha: float = 16.0  # LoRA scale numerator (the update is alpha / rank * B A)

    def __post_init__(self):
        require(self, "model.", hidden_size=">= 1", num_layers=">= 1", num_heads=">= 1", intermediate_size=">= 0",
                max_positions=">= 1", lora_rank=">= 0", lora_alpha="> 0")
        if self.hidden_size % self.num_heads or (self.hidden_size // self.num_heads) % 2:
            raise ValueError(f"--model.hidden-size ({self.hidden_size}) must be an even multiple of --model.num-heads "
                             f"({self.num_heads}): each head's width must be even for rotary positions")


@dataclass
class MLEConfig:
    """Maximum-likelihood training."""

    epochs: float = 1.0  # passes over the training examples (0: none, the MLE model is the model it starts from)
    lr: float = 1e-3  # peak learning rate (AdamW)
    min_lr_ratio: float = 0.1  # cosine decay ends at lr * this
    warmup_steps: int = 30  # linear warm-up steps
    weight_decay: float = 0.1  # AdamW weight decay
    batch_tokens: int = 12288  # padded prompt+target tokens per optimizer step
    grad_clip: float = 1.0  # gradient-norm clipping
    save_every: int = 200  # steps between checkpoints
    seed: int = 0  # data order and initialisation

    def __post_init__(self):
        require(self, "mle.", epochs=">= 0", lr="> 0", min_lr_ratio="in [0, 1]", warmup_steps=">= 0",
                weight_decay=">= 0", batch_tokens=">= 1", grad_clip="> 0", save_every=">= 1")


@dataclass
class RLConfig:
    """GRPO post-training."""

    reward: str = "task_specific"  # which of the domain's rewards to optimise
    steps: int = 100  # optimizer steps (one batch of rollouts each)
    prompts_per_step: int = 8  # B: prompts per step
    group_size: int = 5  # G: samples per prompt
    lr: float = 1e-4  # constant learning rate (AdamW, no weight decay)
    kl_coef: float = 0.001  # weight of the k3 KL penalty to the starting model
    # added to kl_coef on each response's decision tokens (where the domain has a trivial answer: the answer up to
    # where it parts from "nothing changes", all of an answer of no change): holds whether anything changes near the
    # starting model's judgement while the content learns (0: off; docs/grpo.md)
    decision_kl: float = 0.0
    clip_eps: float = 0.2  # PPO clip range
    grad_clip: float = 1.0  # gradient-norm clipping
    temperature: float = 1.0  # sampling temperature for rollouts
    top_k: int = 0  # 0 = no top-k filtering
    top_p: float = 1.0  # 1 = no nucleus filtering
    max_new_tokens: int = 512  # longest response sampled
    micro_batch_size: int = 20  # responses per forward/backward pass (rounded down to whole groups)
    eval_every: int = 20  # steps between greedy evaluations on the eval subset (0: never)
    save_every: int = 20  # steps between checkpoints
    seed: int = 0  # prompt order and sampling
    # "sequence": an advantage per response (the paper); "token": per token (the domain's token_rewards)
    credit: Literal["sequence", "token"] = "sequence"
    # "group": rewards against the group mean (GRPO); "greedy": against the greedy response's (ReMax), and with token
    # credit only the tokens that depart from the greedy response's are credited
    baseline: Literal["group", "greedy"] = "group"
    # what divides the deviations from the baseline: each group's spread (GRPO, the paper), the whole batch's, or
    # nothing (Dr. GRPO): "batch" and "none" keep a group with near-equal rewards from pushing as hard as any other
    scale: Literal["group", "batch", "none"] = "group"
    # "decision": where the domain has a trivial answer ("nothing changes"), the tokens up to where a response parts
    # from it are credited by whether that decision was right, the rest by the reward against the group's other
    # attempts (docs/grpo.md: plain GRPO collapses toward "nothing changes"); "grpo": one group-relative reward.
    # Token credit and the greedy baseline are estimators of their own: with either, this option is not read
    advantage: Literal["decision", "grpo"] = "decision"
    # with the decision split: scale each stratum's decision credit (nothing changes / something does) to the smaller
    # stratum's total, so that the two pull equally on what they share and only telling them apart is learned
    # (unbalanced, the stratum whose decisions are less certain moves the other's: docs/grpo.md)
    balance_strata: bool = True
    # with the decision split: shift every decision's credit so that the batch's net pull toward the trivial answer is
    # zero (punishing an unreadable answer to a changed example otherwise pulls toward "nothing changes" as punishing
    # an attempt to an unchanged one does); measured in docs/grpo.md, not better beyond noise, so off
    balance_axis: bool = False

    @property
    def estimator(self) -> str:
        """The advantage estimator these options choose."""
        if self.credit == "token":
            return "token"
        return "grpo" if self.baseline == "greedy" else self.advantage

    def __post_init__(self):
        require_choice(self, "rl.", **choices_of(self))
        require(self, "rl.", steps=">= 1", prompts_per_step=">= 1", group_size=">= 2", lr="> 0", kl_coef=">= 0",
                decision_kl=">= 0", clip_eps="> 0", grad_clip="> 0", temperature="> 0", top_k=">= 0", top_p="in (0, 1]",
                max_new_tokens=">= 1", micro_batch_size=">= 1", eval_every=">= 0", save_every=">= 1")

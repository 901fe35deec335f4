"""RLVR on the text game with TRL's GRPOTrainer, using our exported data and our reward function.

    rlvr-world export trl --preset full --out runs/export/trl-textgame
    python examples/trl_textgame.py --model /path/to/sft-model            # one GPU, or the CPU with --cpu
    accelerate launch --num_processes 8 examples/trl_textgame.py --model /path/to/sft-model   # 8 GPUs

The model: an SFT'd causal LM in Hugging Face format (e.g. runs/textgame-pretrained/mle/model). The
paper's settings (GRPO, groups of 5 at temperature 1.0, lr 1e-6 constant, eps 0.2, token-mean loss, k3 KL
to the start model at 0.001, one epoch per batch, gradient clipping 1.0) map onto GRPOConfig as below;
batch sizes and lengths are ours. Prompts are plain text, as our own runs feed them (no chat template).
"""

import argparse

from datasets import load_dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import GRPOConfig, GRPOTrainer

from rlvr_world.integrations.trl import reward_function


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="the SFT model's directory (Hugging Face format)")
    p.add_argument("--data", default="runs/export/trl-textgame", help="what `rlvr-world export trl` wrote")
    p.add_argument("--out", default="runs/trl-textgame", help="checkpoints and logs")
    p.add_argument("--steps", type=int, default=500, help="optimiser steps")
    p.add_argument("--cpu", action="store_true", help="train on the CPU (slow; for a first try)")
    args = p.parse_args()

    train = load_dataset("parquet", data_files=f"{args.data}/train.parquet", split="train")
    cfg = GRPOConfig(
        output_dir=args.out, use_cpu=args.cpu, max_steps=args.steps,
        num_generations=5, temperature=1.0, max_completion_length=1024,  # groups of 5 at temperature 1.0
        per_device_train_batch_size=10, gradient_accumulation_steps=1,  # 2 prompts x 5 answers per device
        learning_rate=1e-6, lr_scheduler_type="constant", warmup_steps=0, max_grad_norm=1.0,
        loss_type="dapo",  # token-mean over the batch's response tokens
        epsilon=0.2, beta=0.001,  # clipped surrogate; k3 KL to the reference model as a loss term
        num_iterations=1, scale_rewards="group",  # one epoch per batch; (r - mean) / std within each group
        logging_steps=1, save_steps=100, report_to=[],
    )
    trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(args.model),
                          processing_class=AutoTokenizer.from_pretrained(args.model),
                          reward_funcs=reward_function(), args=cfg, train_dataset=train)
    trainer.train()
    trainer.save_model(f"{args.out}/model")


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# RLVR on the text game with verl (Ray + vLLM + FSDP), the engine the paper trained with, using our data and reward.
#   examples/verl_textgame.sh /path/to/sft-model [GPUS]
# The model: an SFT'd causal LM in Hugging Face format (e.g. `rlvr-world run --preset textgame-pretrained`'s
# runs/textgame-pretrained/mle/model, or your own). Needs `pip install verl vllm` on GPU machines (not installed here).
# The paper's settings (../shared/PAPER.md): GRPO, groups of 5 at temperature 1.0, lr 1e-6 constant, clipped
# surrogate eps 0.2, token-mean loss, k3 KL to the start model as a loss term (0.001), one epoch per batch,
# gradient clipping 1.0. Batch sizes and lengths are ours: the prompts are ~770 tokens of SmolLM2's tokenizer
# (p95 ~1,000), the answers ~180 on changed transitions (p95 340).
set -euo pipefail
MODEL=${1:?usage: examples/verl_textgame.sh MODEL_DIR [GPUS]}
GPUS=${2:-8}
DATA=runs/export/verl-textgame
rlvr-world export verl --preset full --out "$DATA"   # train: what our RL phase samples; test: the whole split
REWARD=$(python -c "import rlvr_world.integrations.verl as m; print(m.__file__)")
python -m verl.trainer.main_ppo \
  algorithm.adv_estimator=grpo \
  algorithm.use_kl_in_reward=False \
  data.train_files="$DATA/train.parquet" \
  data.val_files="$DATA/test.parquet" \
  data.prompt_key=prompt \
  data.train_batch_size=64 \
  data.max_prompt_length=2048 \
  data.max_response_length=1024 \
  data.filter_overlong_prompts=True \
  data.truncation=error \
  actor_rollout_ref.model.path="$MODEL" \
  actor_rollout_ref.actor.optim.lr=1e-6 \
  actor_rollout_ref.actor.ppo_mini_batch_size=64 \
  actor_rollout_ref.actor.ppo_epochs=1 \
  actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4 \
  actor_rollout_ref.actor.clip_ratio=0.2 \
  actor_rollout_ref.actor.loss_agg_mode=token-mean \
  actor_rollout_ref.actor.use_kl_loss=True \
  actor_rollout_ref.actor.kl_loss_coef=0.001 \
  actor_rollout_ref.actor.kl_loss_type=low_var_kl \
  actor_rollout_ref.actor.grad_clip=1.0 \
  actor_rollout_ref.actor.entropy_coeff=0 \
  actor_rollout_ref.rollout.name=vllm \
  actor_rollout_ref.rollout.n=5 \
  actor_rollout_ref.rollout.temperature=1.0 \
  actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=8 \
  actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=8 \
  custom_reward_function.path="$REWARD" \
  custom_reward_function.name=compute_score \
  trainer.n_gpus_per_node="$GPUS" \
  trainer.nnodes=1 \
  trainer.total_epochs=1 \
  trainer.test_freq=20 \
  trainer.save_freq=50 \
  trainer.logger='["console"]' \
  trainer.project_name=rlvr-world \
  trainer.experiment_name=textgame-grpo

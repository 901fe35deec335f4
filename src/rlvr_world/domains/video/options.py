"""The video domain's data options: which episodes to simulate and how to cut them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from ...optionparsing import require

# the names `--rl.reward` takes (the domain's `rewards`, listed here for `--help`, which loads no domain)
REWARDS = ("mae_ssim", "mae_lpips")


@dataclass
class VideoData:
    """Which episodes to simulate and how to cut them into examples."""

    tasks: list[str] = field(default_factory=list)  # Meta-World tasks (empty: the simulator's default set)
    episodes_per_task: int = 20  # simulated episodes per task
    steps: int = 20  # recorded actions per episode (frames = steps + 1)
    sim_seed: int = 0  # task variations and policy noise
    dataset: str = ""  # a generated .npz to use (default: generated once into $RLVR_WORLD_CACHE or ~/.cache/rlvr-world)
    test_fraction: float = 0.2  # share of each task's episodes held out for testing
    context: int = 2  # context frames (each followed by its action) in a prompt
    horizon: int = 3  # frames predicted in the multi-step setting (single-step predicts 1)
    stride: int = 1  # steps between the starts of consecutive examples of an episode
    action_bins: int = 32  # bins per action dimension over [-1, 1]
    grid: int = 8  # frame tokens per side (64x64 frame -> grid x grid tokens)
    levels: str = "8,5,5,5"  # FSQ levels per latent channel (codebook = their product)
    tokenizer_steps: int = 2000  # frame-tokenizer training steps
    bridge_finetune_epochs: float = 10.0  # MLE epochs on the 20 real Bridge training episodes (0: no fine-tuning)
    rl_settings: str = "single_step,multi_step"  # which settings' training examples RL samples prompts from
    bridge_rl_steps: int = 0  # RLVR steps on the real Bridge training episodes after that fine-tuning (0: none)
    lpips: str = "vgg"  # LPIPS network for the lpips metric and the mae_lpips reward: vgg, alex or a weights file

    def __post_init__(self):
        require(self, "data.", episodes_per_task=">= 1", steps=">= 1", test_fraction="in (0, 1)", context=">= 1",
                horizon=">= 1", stride=">= 1", action_bins=">= 2", grid=">= 1", tokenizer_steps=">= 1",
                bridge_finetune_epochs=">= 0", bridge_rl_steps=">= 0")
        self.rl_setting_list()
        self.level_list()

    def sim_config(self):
        from .simulate import SimConfig

        base = SimConfig()
        return SimConfig(**{**asdict(base), "tasks": self.tasks or base.tasks,
                            "episodes_per_task": self.episodes_per_task, "steps": self.steps, "seed": self.sim_seed})

    def path(self) -> Path:
        """The simulated dataset: the file given, or the cache file for these simulation settings."""
        from ...cache import cache_file

        if self.dataset:
            return Path(self.dataset)
        return cache_file("video", "metaworld", asdict(self.sim_config()), ".npz")

    def rl_setting_list(self) -> list[str]:
        kinds = [k.strip() for k in self.rl_settings.split(",") if k.strip()]
        if not kinds or set(kinds) - {"single_step", "multi_step"}:
            raise ValueError(f"rl_settings must name single_step and/or multi_step, got {self.rl_settings!r}")
        return kinds

    def level_list(self) -> list[int]:
        try:
            levels = [int(x) for x in self.levels.split(",")]
        except ValueError:
            raise ValueError(f"levels must be comma-separated integers, got {self.levels!r}") from None
        if not levels or min(levels) < 2:
            raise ValueError(f"every FSQ level must be at least 2, got {self.levels!r}")
        return levels

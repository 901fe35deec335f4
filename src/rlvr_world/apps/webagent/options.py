"""`rlvr-world agent`'s options (light: the command line reads them before anything heavy is imported)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ...optionparsing import choices_of, require, require_choice

# MiniWoB++ tasks where the proposal policy sometimes succeeds and sometimes fails within 6 steps
# (measured: 4 seeded episodes of each of the collector's 44 tasks, docs/webagent.md), so a choice can matter
TASKS = ["click-button", "click-checkboxes-soft", "click-collapsible-nodelay", "click-dialog-2", "click-menu",
         "click-option", "click-tab", "click-tab-2-hard", "click-test-2", "enter-password", "focus-text-2",
         "navigate-tree"]


@dataclass
class AgentConfig:
    """A MiniWoB++ agent planning with web world models, beside its proposal policy alone and an oracle world."""

    tasks: list[str] = field(default_factory=lambda: list(TASKS))  # MiniWoB task names
    episodes: int = 30  # test episodes per task, seeded: every agent meets the same problems
    seeds: str = "test"  # which seeded episodes: "test" (the reported ones), or another name (e.g. "dev") to try
    # settings on episodes of their own
    k: int = 4  # candidate actions the policy proposes at each step
    max_steps: int = 6  # actions per episode at most
    # the MLE world model: a web run's mle/model directory, an adapter folder, or a completions URL (http://.../v1)
    mle: str = ""
    rlvr: str = ""  # the RLVR world model: a web run's rl/model directory, an adapter folder, or a completions URL
    oracle: bool = True  # also plan with the real next page (replayed in a second browser page): the ceiling
    value: str = ""  # a saved value function (value.json); empty: fit one on value_episodes
    value_episodes: int = 20  # policy episodes per task to fit the value function on (a quarter held out)
    # "ends": regress pages that end the episode on their own reward, the rest are worth carrying on
    # (value.LearnedValue); "all": regress every step on its episode's outcome
    value_target: Literal["ends", "all"] = "ends"
    judge: str = ""  # also measure a pretrained LM (e.g. smollm2-135m) as the value function; the higher AUC plans
    out: str = "results/mpc-web.json"  # the results (a .png plot goes beside it)
    run_dir: str = "runs/mpc-web"  # per-episode records: a stopped run continues where it stopped
    settle_s: float = 0.15  # wait after an action before reading the page
    max_tokens: int = 256  # longest predicted difference
    device: str = "auto"  # auto, cpu, cuda, ... (in-process world models)
    dtype: Literal["auto", "bf16", "fp32"] = "auto"  # auto, bf16 or fp32
    threads: int = 0  # torch CPU threads (0: one per core)

    def __post_init__(self):
        require_choice(self, "", **choices_of(self))
        if self.seeds == "value":
            raise ValueError("--seeds value: those episodes fit the value function; name another set")
        require(self, "", episodes=">= 1", k=">= 1", max_steps=">= 1", value_episodes=">= 0", settle_s=">= 0",
                max_tokens=">= 1", threads=">= 0")
        if not self.value and self.value_episodes < 2:
            raise ValueError("--value-episodes must be >= 2 to fit a value function (or give one with --value)")

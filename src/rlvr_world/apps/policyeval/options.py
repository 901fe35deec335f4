"""`rlvr-world policy-eval`'s options (light: the command line reads them before anything heavy is imported)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...optionparsing import require


@dataclass(frozen=True)
class PolicySpec:
    """How one policy of the set is made."""

    name: str
    data: float = 1.0  # share of the training episodes it clones (per task)
    steps: float = 1.0  # share of the training steps
    noise: float = 0.0  # std of Gaussian noise added to its actions
    random: bool = False  # uniformly random actions (no network)
    net: str = ""  # the network it shares (a noisy variant reuses a trained one); default: its own name


SPECS = [
    PolicySpec("bc"),
    PolicySpec("bc-tenth-data", data=0.1),
    PolicySpec("bc-tenth-steps", steps=0.1),
    PolicySpec("bc-noise-0.5", noise=0.5, net="bc"),
    PolicySpec("bc-noise-1.0", noise=1.0, net="bc"),
    PolicySpec("random", random=True),
]
SPEC = {s.name: s for s in SPECS}


@dataclass
class PolicyEvalConfig:
    """Frame-based robot policies evaluated inside video world models, against their true success in Meta-World."""

    run: str = "runs/video"  # a video run (`rlvr-world run --domain video`): its mle/model and rl/model are compared
    mle: str = ""  # the MLE world model's directory (default: RUN/mle/model)
    rlvr: str = ""  # the RLVR world model's directory (default: RUN/rl/model)
    tasks: list[str] = field(default_factory=list)  # Meta-World tasks (default: the run's own)
    policies: list[str] = field(default_factory=lambda: list(SPEC))  # which policies of the set (policies.SPECS)
    episodes: int = 50  # evaluation episodes per policy and task (fixed seeds), in the simulator and imagined
    train_episodes: int = 100  # labelled expert episodes per task that the policies and the detector learn from
    test_episodes: int = 20  # held-out labelled episodes per task that measure the detector
    policy_steps: int = 3000  # training steps of a behaviour-cloning policy (batches of `batch_size` frames)
    detector_steps: int = 3000  # training steps of the success detector
    detector_episodes: int = 10  # episodes per policy and task, on seeds of their own, added to the detector's data
    # (the states the policies visit, which the expert's episodes miss)
    batch_size: int = 64  # frames per training step
    lr: float = 1e-3  # peak AdamW learning rate of the policies and the detector
    detector_frames: int = 2  # an episode succeeds where this many consecutive frames look successful
    temperature: float = 0.0  # the world models' sampling temperature (0: greedy)
    seed: int = 0  # network initialisation and batch order
    strip: str = ""  # POLICY or POLICY:TASK whose rollout the -rollout.png strip shows (default: the first policy);
    # it shows the first episode in which a world model's verdict differs from the simulator's, else the first success
    out: str = "results/policy-eval.json"  # the results (plots go beside it: .png scatter, -rollout.png strip)
    run_dir: str = "runs/policy-eval"  # simulated data, networks and rollouts: a stopped run continues from them
    device: str = "auto"  # auto, cpu, cuda, ... (the world models)
    threads: int = 0  # torch CPU threads (0: one per core)

    def __post_init__(self):
        require(self, "", episodes=">= 2", train_episodes=">= 2", test_episodes=">= 1", policy_steps=">= 1",
                detector_episodes=">= 0", detector_steps=">= 1", batch_size=">= 1", lr="> 0", detector_frames=">= 1",
                temperature=">= 0", threads=">= 0")
        policy, _, task = self.strip.partition(":")
        if policy and policy not in self.policies:
            raise ValueError(f"--strip {self.strip}: {policy!r} is not among the evaluated policies "
                             f"({', '.join(self.policies)})")
        if self.strip and (not policy or (":" in self.strip and not task)):
            raise ValueError(f"--strip {self.strip!r}: give POLICY or POLICY:TASK")
        bad = [p for p in self.policies if p not in SPEC]
        if bad or not self.policies:
            raise ValueError(f"unknown polic{'ies' if len(bad) > 1 else 'y'} {', '.join(map(repr, bad))}; "
                             f"known: {', '.join(SPEC)}" if bad else "no policy given")

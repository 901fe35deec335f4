"""Simulated Meta-World episodes for the policies, the success detector and the true success rates.

Axes: E episodes, T actions per episode (T+1 frames), H×W pixels.

Every episode comes from the video domain's simulator with the world model's
own settings (camera, frame size, action repeat, episode length), so the
frames look like the ones it was trained on. Seeds are drawn per (purpose,
task, episode) and never meet the world model's training episodes, whose
seeds come from `simulate.episode_seed`.

- `labelled`: the noisy expert acts, exactly as in the world model's data
  (noise levels cycling, occasional random actions), and each step also
  records the clean expert action at that state: behaviour cloning learns
  the clean action over the spread of states the noise visits. Every frame
  carries Meta-World's success flag for the state it shows.
- `run_policy`: a frame-based policy acts in the simulator; Meta-World's own
  success flag (at any simulator step) is the truth a world model's estimate
  is measured against.
"""

from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...domains.video import simulate
from ...domains.video.simulate import Sim, SimConfig
from ...progress import advance, bar


@dataclass
class Rollouts:
    """Episodes of one or more tasks (arrays over E episodes)."""

    frames: np.ndarray  # (E, T+1, H, W, 3) uint8
    actions: np.ndarray  # (E, T, 4) float32, the actions applied
    success: np.ndarray  # (E,) bool, Meta-World's flag at any simulator step
    frame_success: np.ndarray  # (E, T+1) bool, the flag in the state each frame shows
    task: np.ndarray  # (E,) int, index into the task list
    seed: np.ndarray  # (E,) int64
    expert: np.ndarray | None = None  # (E, T, 4) float32, the clean expert action at each step (labelled data)

    def __len__(self) -> int:
        return len(self.frames)

    def subset(self, idx) -> Rollouts:
        idx = np.asarray(idx, dtype=np.int64)
        return Rollouts(**{k: (v[idx] if v is not None else None) for k, v in vars(self).items()})


def save_arrays(path: Path, obj) -> None:
    """A dataclass of arrays (None fields left out) as one compressed .npz, written whole (`path.part`, renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a name
        np.savez_compressed(f, **{k: v for k, v in vars(obj).items() if v is not None})
    tmp.replace(path)


def load_arrays(cls, path: Path):
    """What `save_arrays` wrote, as `cls` (plain arrays only: nothing is unpickled)."""
    with np.load(path, allow_pickle=False) as d:
        return cls(**{k: d[k] for k in d.files})


def seed_of(purpose: str, task: str, episode: int) -> int:
    """The reset seed of episode `episode` of `task` for `purpose` ("train", "test", "eval")."""
    return int(np.random.SeedSequence([zlib.crc32(b"policy-eval"), zlib.crc32(purpose.encode()),
                                       zlib.crc32(task.encode()), episode]).generate_state(1)[0])


def simulate_episodes(cfg: SimConfig, tasks: list[str], episodes: int, purpose: str, make_act, description: str,
                      ) -> Rollouts:
    """`episodes` episodes per task; `make_act(sim, task_index, episode)` gives the episode's
    `act(obs, frame, rng) -> (4,)` and optionally a list to which it appends the expert's labels."""
    rows = []
    with warnings.catch_warnings(), bar(description, total=len(tasks) * episodes) as progress:
        warnings.filterwarnings("ignore", message="Constant.*too high")  # the experts' own gains, clipped anyway
        for k, task in enumerate(tasks):
            sim = Sim(task, cfg)
            try:
                wins = 0
                for i in range(episodes):
                    act, labels = make_act(sim, k, i)
                    seed = seed_of(purpose, task, i)
                    ep = simulate.rollout(sim, seed, act)
                    rows.append((ep, k, seed, labels))
                    wins += ep.success
                    advance(progress, 1, f"{task}: success {wins}/{i + 1}")
            finally:
                sim.close()
    return Rollouts(
        frames=np.stack([ep.frames for ep, *_ in rows]), actions=np.stack([ep.actions for ep, *_ in rows]),
        success=np.array([ep.success for ep, *_ in rows]),
        frame_success=np.stack([ep.frame_success for ep, *_ in rows]),
        task=np.array([k for _, k, _, _ in rows]), seed=np.array([s for _, _, s, _ in rows], dtype=np.int64),
        expert=np.stack([np.stack(lab) for *_, lab in rows]).astype(np.float32) if rows[0][3] is not None else None)


def labelled(cfg: SimConfig, tasks: list[str], episodes: int, purpose: str) -> Rollouts:
    """The noisy expert's episodes (as in the world model's data), with the clean expert action at every step."""

    def make_act(sim: Sim, k: int, i: int):
        noise = float(cfg.noise[i % len(cfg.noise)])
        labels: list[np.ndarray] = []

        def act(obs, frame, rng):
            labels.append(np.clip(np.asarray(sim.policy.get_action(obs), dtype=np.float32), -1.0, 1.0))
            return simulate.choose_action(sim, obs, noise, rng, cfg.random_prob)

        return act, labels

    return simulate_episodes(cfg, tasks, episodes, purpose, make_act, f"simulate ({purpose})")


def run_policy(cfg: SimConfig, tasks: list[str], episodes: int, policy, name: str, purpose: str = "eval"
               ) -> Rollouts:
    """A frame-based policy (`policies.Policy`) in the simulator, on the `purpose` seeds ("eval": the true
    success the estimates are measured against; "detector": frames for the detector to learn from)."""

    def make_act(sim: Sim, k: int, i: int):
        return (lambda obs, frame, rng: policy.act(frame[None], np.array([k]), [rng])[0]), None

    return simulate_episodes(cfg, tasks, episodes, purpose, make_act, f"{name} in the simulator ({purpose})")


def concat(parts: list[Rollouts]) -> Rollouts:
    """Episode sets one after the other (expert labels kept only where every part has them)."""
    fields = {k: np.concatenate([getattr(r, k) for r in parts]) for k in ("frames", "actions", "success",
                                                                          "frame_success", "task", "seed")}
    experts = [r.expert for r in parts]
    return Rollouts(**fields, expert=None if any(e is None for e in experts) else np.concatenate(experts))

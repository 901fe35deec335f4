"""Robot-manipulation videos from Meta-World, for training the video world model.

Meta-World (the `metaworld` package, v3 tasks) puts a simulated Sawyer arm in
front of a table with one object per task (a puck, a drawer, a button, a
door...) and ships a scripted expert policy for each task. An episode here
resets a task to a fresh variation (object and goal positions drawn by
Meta-World's own seeded sampler), then records `steps` actions and the
`steps + 1` frames around them. Every episode has exactly `steps` actions: it
goes on after a success, so the data also shows the arm after the job is done.

Actions are the expert's plus Gaussian noise, one noise level per episode
(cycling through `noise`, so each level gets the same share), and with chance
`random_prob` per step a uniformly random action instead. Low noise mostly
succeeds, high noise mostly fails or nearly succeeds. The recorded action is
the one actually applied (clipped to [-1, 1]); it is held for `action_repeat`
simulator steps, so that consecutive frames differ visibly at 64x64.
`success` is Meta-World's `info["success"]` at any simulator step of the episode.

Departures from the usual Meta-World setup:
- frames are 64x64 RGB (Meta-World's default is 480x480) from one fixed camera;
- actions are Meta-World's 4-D ones (end-effector xyz delta + gripper effort),
  recorded once per `action_repeat` simulator steps;
- the goal position is in the expert's observation (as in Meta-World's MT1
  benchmark); the goal marker sphere is drawn in the frames.

Rendering: MuJoCo renders offscreen through EGL (`MUJOCO_GL=egl`, set here
unless the user chose another backend; it must be set before mujoco is first
imported). Without a GPU, Mesa renders in software, so the scene is made cheap:
the offscreen buffer is sized to the frame instead of 640x480, multisampling
is off (`offsamples = 0`) and so are shadows and reflections. Measured on 2
CPU cores: 93 frames/s instead of 6 with the defaults, at the cost of shadows
and smooth edges, which matter little at 64x64; a simulator step costs about 0.4 ms, so a recorded step
(6 simulator steps and a frame) takes about 12 ms and the default dataset
(5 tasks x 20 episodes x 20 steps) about 25 s.

Camera: `corner4` (from the robot's right, level with its base, looking across
the table) shows the whole arm, the table and each default task's object,
whose motion (a drawer sliding, a door swinging) stays visible at 64x64;
`corner` is closer but the arm hides more of the scene.

Image orientation: `mujoco.Renderer` already turns OpenGL's bottom-up rows
into top-down ones, but Meta-World's corner cameras are mounted upside down
(their image-up axis points below the horizon), so their frames come out
upside down. Such frames are rotated by 180 degrees (a rotation, not a
vertical flip, which would mirror the scene) so that the floor is at the bottom.

`generate` writes one compressed .npz (written to `<path>.part`, renamed when
complete); `load` reads it back.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # headless offscreen rendering; must precede the first mujoco import

import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import metaworld
import mujoco
import numpy as np
from metaworld.policies import ENV_POLICY_MAP
from rich.progress import Progress

from ...progress import advance, bar, console

DEFAULT_TASKS = ["reach-v3", "push-v3", "drawer-open-v3", "button-press-topdown-v3", "door-open-v3"]


@dataclass
class SimConfig:
    """What to simulate."""

    tasks: list[str] = field(default_factory=lambda: list(DEFAULT_TASKS))  # Meta-World task names (v3)
    episodes_per_task: int = 20  # episodes simulated per task
    steps: int = 20  # recorded actions per episode (frames = steps + 1)
    action_repeat: int = 6  # simulator steps per recorded action (the same action repeated)
    size: int = 64  # frame height and width in pixels
    camera: str = "corner4"  # Meta-World camera (corner4: from the right, whole arm, table and object in view)
    noise: tuple[float, ...] = (0.0, 0.3, 0.6, 1.0)  # Gaussian action-noise levels (std); episodes cycle through them
    random_prob: float = 0.1  # per-step chance of a uniformly random action instead of the noisy expert's
    seed: int = 0  # task variations, noise and random actions


@dataclass
class Episode:
    """One simulated episode."""

    frames: np.ndarray  # (T+1, H, W, 3) uint8, upright
    actions: np.ndarray  # (T, 4) float32 in [-1, 1]
    success: bool  # info["success"] at any simulator step
    frame_success: np.ndarray | None = None  # (T+1,) bool: info["success"] in the state each frame shows


def check_tasks(tasks: list[str]) -> None:
    """A one-line ValueError for names that are not Meta-World tasks with an expert policy."""
    known = [t for t in metaworld.MT1.ENV_NAMES if t in ENV_POLICY_MAP]
    bad = [t for t in tasks if t not in known]
    if bad or not tasks:
        what = f"unknown Meta-World task(s) {', '.join(map(repr, bad))}" if bad else "no Meta-World task given"
        raise ValueError(f"{what}; known tasks include {', '.join(DEFAULT_TASKS)} ({len(known)} in all)")


class Sim:
    """One task's environment, its expert and an offscreen renderer sized to the frames."""

    def __init__(self, task: str, cfg: SimConfig):
        self.task, self.cfg = task, cfg
        bench = metaworld.MT1(task, seed=cfg.seed)  # its tasks put the goal into the expert's observation
        self.env = bench.train_classes[task]()
        self.env.set_task(bench.train_tasks[0])
        self.env.seeded_rand_vec = True  # each reset draws a new variation from the env's seeded generator
        self.env._freeze_rand_vec = False  # (set_task froze it to the MT1 task's variation)
        self.env.max_path_length = max(self.env.max_path_length, cfg.steps * cfg.action_repeat)
        self.policy = ENV_POLICY_MAP[task]()
        self.camera = mujoco.mj_name2id(self.env.model, mujoco.mjtObj.mjOBJ_CAMERA, cfg.camera)
        if self.camera < 0:
            cams = [self.env.model.camera(i).name for i in range(self.env.model.ncam)]
            self.env.close()
            raise ValueError(f"unknown camera {cfg.camera!r}; Meta-World's cameras: {', '.join(cams)}")
        self.renderer = make_renderer(self.env.model, cfg.size)
        self.rotate = False  # whether frames need turning by 180 degrees (decided at reset)

    def reset(self, seed: int) -> np.ndarray:
        """A new task variation drawn from `seed`; the expert's first observation."""
        self.env.seed(seed)
        obs, _ = self.env.reset()
        up_z = self.env.data.cam_xmat[self.camera].reshape(3, 3)[2, 1]  # world-z component of the image-up axis
        self.rotate = bool(up_z < 0)  # camera mounted upside down (Meta-World's corner cameras)
        return obs

    def frame(self) -> np.ndarray:
        """The camera's view now, upright: (H, W, 3) uint8."""
        self.renderer.update_scene(self.env.data, camera=self.camera)
        img = self.renderer.render()  # (H, W, 3), rows already top-down
        return np.ascontiguousarray(img[::-1, ::-1]) if self.rotate else img  # rotate 180 degrees, not mirror

    def close(self) -> None:
        self.renderer.close()
        self.env.close()


def make_renderer(model: mujoco.MjModel, size: int) -> mujoco.Renderer:
    """An offscreen renderer set up for cheap software rendering (see the module docstring)."""
    model.vis.global_.offwidth = model.vis.global_.offheight = size  # buffer = frame: less to clear and read back
    model.vis.quality.offsamples = 0  # no multisampling
    try:
        renderer = mujoco.Renderer(model, height=size, width=size)
    except Exception as e:
        raise RuntimeError(f"MuJoCo cannot render offscreen (MUJOCO_GL={os.environ.get('MUJOCO_GL')}): {e}; "
                           "EGL needs Debian's libegl1 libegl-mesa0 libopengl0 libgl1-mesa-dri (install.sh)") from e
    renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
    renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
    return renderer


def choose_action(sim: Sim, obs: np.ndarray, noise: float, rng: np.random.Generator, random_prob: float) -> np.ndarray:
    """The action applied: a random one with chance `random_prob`, else the expert's plus noise; (4,) in [-1, 1]."""
    if rng.random() < random_prob:
        return rng.uniform(-1.0, 1.0, 4).astype(np.float32)
    expert = np.asarray(sim.policy.get_action(obs), dtype=np.float64)
    return np.clip(expert + rng.normal(0.0, noise, 4), -1.0, 1.0).astype(np.float32)


def run_episode(sim: Sim, noise: float, seed: int) -> Episode:
    """Reset to the variation drawn from `seed`, then record `steps` actions of the noisy expert and
    `steps + 1` frames."""
    cfg = sim.cfg
    return rollout(sim, seed, lambda obs, frame, rng: choose_action(sim, obs, noise, rng, cfg.random_prob))


def rollout(sim: Sim, seed: int, act, steps: int | None = None) -> Episode:
    """Reset to the variation drawn from `seed`, then record `steps` (default: the config's) actions chosen by
    `act(obs, frame, rng) -> (4,)` (the expert's observation, the frame it shows, the episode's generator) and
    the frames around them; each action is clipped to [-1, 1] and held for `action_repeat` simulator steps."""
    cfg = sim.cfg
    rng = np.random.default_rng(seed)
    obs = sim.reset(int(rng.integers(2**31)))
    frames, actions, flags, success = [sim.frame()], [], [False], False
    for _ in range(cfg.steps if steps is None else steps):
        action = np.clip(np.asarray(act(obs, frames[-1], rng), dtype=np.float32), -1.0, 1.0)
        for _ in range(cfg.action_repeat):
            obs, _, _, _, info = sim.env.step(action)
            success |= bool(info["success"])
        if not np.all(np.isfinite(obs)):
            raise RuntimeError("simulation diverged (non-finite state)")
        frames.append(sim.frame())
        actions.append(action)
        flags.append(bool(info["success"]))
    # (T+1, H, W, 3), (T, 4), (T+1,)
    return Episode(np.stack(frames), np.stack(actions).reshape(-1, 4), success, np.array(flags))


def episode_seed(cfg: SimConfig, task: str, episode: int) -> int:
    """A seed per (run seed, task, episode): the same episode whatever other tasks are simulated."""
    return int(np.random.SeedSequence([cfg.seed, zlib.crc32(task.encode()), episode]).generate_state(1)[0])


def simulate_task(task: str, cfg: SimConfig, progress: Progress, retries: int = 1) -> list[tuple[Episode, float]]:
    """All of one task's episodes with their noise levels; a failing episode is retried on a fresh env, then skipped."""
    sim: Sim | None = Sim(task, cfg)  # configuration errors (a bad camera) surface here, before any episode
    done: list[tuple[Episode, float]] = []
    try:
        for i in range(cfg.episodes_per_task):
            noise = float(cfg.noise[i % len(cfg.noise)])
            for attempt in range(retries + 1):
                try:
                    sim = sim or Sim(task, cfg)
                    done.append((run_episode(sim, noise, episode_seed(cfg, task, i)), noise))
                    break
                except Exception as e:  # MuJoCo errors, diverged states, policy failures
                    reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
                    verdict = "retrying with a fresh simulator" if attempt < retries else "skipped"
                    console.print(f"[yellow]{task} episode {i}: {reason[:120]} ({verdict})")
                    close_quietly(sim)
                    sim = None
            wins = sum(ep.success for ep, _ in done)
            advance(progress, info=f"{task}, success {wins}/{len(done)}")
    finally:
        close_quietly(sim)
    return done


def close_quietly(sim: Sim | None) -> None:
    if sim is not None:
        try:
            sim.close()
        except Exception:  # a broken simulator may fail to close; it is dropped either way
            pass


def generate(cfg: SimConfig, path: str | Path) -> None:
    """Simulate every task's episodes into one compressed .npz at `path` (written atomically)."""
    check_tasks(cfg.tasks)
    if cfg.steps < 1 or cfg.episodes_per_task < 1 or cfg.action_repeat < 1 or not cfg.noise:
        raise ValueError("steps, episodes_per_task and action_repeat must be at least 1, and noise non-empty")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, Episode, float]] = []
    with warnings.catch_warnings(), bar("simulate", total=len(cfg.tasks) * cfg.episodes_per_task) as progress:
        warnings.filterwarnings("ignore", message="Constant.*too high")  # the experts' own gains, clipped anyway
        for task in cfg.tasks:
            rows += [(task, ep, noise) for ep, noise in simulate_task(task, cfg, progress)]
    if not rows:
        n = len(cfg.tasks) * cfg.episodes_per_task
        raise RuntimeError(f"every simulated episode failed ({n} of {n}); see the messages above")
    save(rows, path)


def save(rows: list[tuple[str, Episode, float]], path: Path) -> None:
    """(task, episode, noise) rows -> one compressed .npz, written to `<path>.part` and renamed when complete."""
    tmp = path.with_name(path.name + ".part")
    try:
        with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a name
            np.savez_compressed(
                f,
                frames=np.stack([ep.frames for _, ep, _ in rows]),  # (E, T+1, H, W, 3)
                actions=np.stack([ep.actions for _, ep, _ in rows]),  # (E, T, 4)
                task=np.array([task for task, _, _ in rows]),  # (E,) str
                success=np.array([ep.success for _, ep, _ in rows]),  # (E,) bool
                noise=np.array([noise for _, _, noise in rows], dtype=np.float32),  # (E,)
            )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load(path: str | Path) -> dict[str, np.ndarray]:
    """A generated dataset: frames (E, T+1, H, W, 3) uint8 (upright), actions (E, T, 4) float32 in [-1, 1],
    task (E,) str, success (E,) bool, noise (E,) float32."""
    with np.load(path, allow_pickle=False) as d:
        return {k: d[k] for k in ("frames", "actions", "task", "success", "noise")}

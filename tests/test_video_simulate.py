"""The Meta-World video simulator: a tiny real dataset (MuJoCo, software rendering), its format and reproducibility."""

from __future__ import annotations

import numpy as np
import pytest

from rlvr_world.domains.video import simulate
from rlvr_world.domains.video.simulate import SimConfig, generate, load

TASKS = ["reach-v3", "drawer-open-v3"]


def tiny(seed: int = 0) -> SimConfig:
    return SimConfig(tasks=list(TASKS), episodes_per_task=2, steps=3, action_repeat=6, seed=seed)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim")
    generate(tiny(), root / "a.npz")
    generate(tiny(), root / "b.npz")
    return root


def test_format(generated):
    d = load(generated / "a.npz")
    E, T, S = 2 * len(TASKS), 3, 64
    assert d["frames"].shape == (E, T + 1, S, S, 3) and d["frames"].dtype == np.uint8
    assert d["actions"].shape == (E, T, 4) and d["actions"].dtype == np.float32
    assert np.abs(d["actions"]).max() <= 1.0
    assert d["task"].tolist() == [t for t in TASKS for _ in range(2)]
    assert d["success"].dtype == bool and d["success"].shape == (E,)
    assert d["noise"].dtype == np.float32
    np.testing.assert_allclose(d["noise"], [0.0, 0.3] * len(TASKS))  # the first two levels, per task
    assert sorted(p.name for p in generated.iterdir()) == ["a.npz", "b.npz"]  # no .part left behind


def test_frames_show_the_scene_moving(generated):
    frames = load(generated / "a.npz")["frames"].astype(np.int16)  # (E, T+1, H, W, 3)
    assert frames.std(axis=(2, 3, 4)).min() > 10  # a scene, not a blank image
    step_change = np.abs(np.diff(frames, axis=1)).mean(axis=(2, 3, 4))  # (E, T)
    assert step_change.min() > 0.1  # every action moves something visibly
    assert np.abs(frames[0, 0] - frames[2, 0]).mean() > 1  # different tasks look different


def test_same_seed_same_data(generated, tmp_path):
    a, b = load(generated / "a.npz"), load(generated / "b.npz")
    for k in ("actions", "frames", "task", "success", "noise"):
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    generate(SimConfig(tasks=["reach-v3"], episodes_per_task=1, steps=3, seed=1), tmp_path / "c.npz")
    assert not np.array_equal(load(tmp_path / "c.npz")["actions"], a["actions"][:1])


def test_bad_task_fails_before_simulating(tmp_path):
    with pytest.raises(ValueError, match="unknown Meta-World task.*'no-such-task'.*reach-v3"):
        generate(SimConfig(tasks=["reach-v3", "no-such-task"]), tmp_path / "x.npz")
    assert not list(tmp_path.iterdir())


def test_failing_episodes_are_retried_then_skipped(tmp_path, monkeypatch):
    real, calls = simulate.run_episode, []

    def flaky(sim, noise, seed):  # episode 0 fails once, episode 1 always
        calls.append(noise)
        if len(calls) == 1 or noise == 0.3:
            raise RuntimeError("simulated MuJoCo error")
        return real(sim, noise, seed)

    monkeypatch.setattr(simulate, "run_episode", flaky)
    generate(SimConfig(tasks=["reach-v3"], episodes_per_task=2, steps=2), tmp_path / "x.npz")
    assert calls == [0.0, 0.0, 0.3, 0.3]
    assert load(tmp_path / "x.npz")["noise"].tolist() == [0.0]

    monkeypatch.setattr(simulate, "run_episode", lambda *a: 1 / 0)
    with pytest.raises(RuntimeError, match="every simulated episode failed"):
        generate(SimConfig(tasks=["reach-v3"], episodes_per_task=1, steps=2), tmp_path / "y.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npz"]

"""Runs that never lie: a run directory holds one run, bad options and damaged files are one line, NaN stops.

Each test reproduces a failure found by trying the tool as a careful user
would (issue #22) and checks that it is now refused or handled.
"""

import gzip
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rlvr_world import rundir
from rlvr_world.cli import main
from rlvr_world.engine.checkpoint import CheckpointError, TrainingDiverged, load_trainer_state, save_model
from rlvr_world.engine.metriclog import MetricLog

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
FAST = ["--mle.epochs", "0.5", "--rl.steps", "1", "--eval-limit", "2", "--curve-limit", "0"]


def tiny(out, *extra):
    return ["run", "--preset", "tiny", "--threads", "1", "--out", str(out), "--results", str(out / "results.json"),
            *extra]


def one_line(capsys, argv, after_work=False) -> str:
    """Run the command line in this process; it must fail with exit 2 and one line on stderr.

    `after_work`: the progress lines of the work done before the failure may precede it; the error is the last.
    """
    code = main(argv)
    err = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    errors = [l for l in err if l.startswith("rlvr-world: error:")]
    assert code == 2 and len(errors) == 1 and err[-1] == errors[0], (code, err)
    assert len(err) == 1 or after_work, err
    assert not any("Traceback" in l for l in err), err
    return err[-1]


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "rlvr_world.cli", *args], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny run (half an MLE epoch, one RL step), logging to TensorBoard too."""
    d = tmp_path_factory.mktemp("finished") / "run"
    p = cli(*tiny(d, *FAST, "--log", "tensorboard"), cwd=d.parent)
    assert p.returncode == 0, p.stderr[-2000:]
    return d


# ---- 1. a run directory holds one run ---------------------------------------------------------------------------

def test_resume_refuses_work_made_with_other_options(finished, capsys):
    def files():
        return {p: p.stat().st_mtime_ns for p in finished.rglob("*") if p.is_file() and p.name != ".lock"}

    before = files()
    line = one_line(capsys, tiny(finished, *FAST, "--resume", "--mle.lr", "5e-3"))
    assert "mle.lr=0.01 (now 0.005)" in line and "--overwrite" in line
    line = one_line(capsys, tiny(finished, *FAST, "--resume", "--model.hidden-size", "32", "--model.num-layers", "1"))
    assert "model.hidden_size=64 (now 32)" in line and "model.num_layers=2 (now 1)" in line
    line = one_line(capsys, tiny(finished, *FAST[:-4], "--eval-limit", "3", "--curve-limit", "0", "--resume"))
    assert "eval_mle" in line and "eval_limit=2 (now 3)" in line
    # a finished RL phase is held to its step count too
    assert "rl.steps=1 (now 2)" in one_line(capsys, tiny(finished, *FAST, "--rl.steps", "2", "--resume"))
    # other data: another game's transitions
    line = one_line(capsys, tiny(finished, *FAST, "--resume", "--data.games", "bath-tub-water-temperature"))
    assert "data.games" in line
    # a fresh run never mixes with the old one
    assert "already holds a run" in one_line(capsys, tiny(finished, *FAST))
    assert files() == before  # nothing touched


def test_resume_with_the_same_options_and_overwrite(finished, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    assert all(any((run / phase / "tensorboard").iterdir()) for phase in ("mle", "rl"))
    assert main(tiny(run, *FAST, "--resume")) == 0  # everything finished: re-reads it (the log option is harmless)
    assert json.loads((run / "results.json").read_text())["mle"] == json.loads(
        (finished / "results.json").read_text())["mle"]
    (run / "notes.txt").write_text("mine")
    assert "notes.txt" in one_line(capsys, tiny(run, *FAST, "--overwrite"))  # files no run writes: left alone
    (run / "notes.txt").unlink()
    assert "give one of them" in one_line(capsys, tiny(run, *FAST, "--overwrite", "--resume"))


def test_compare_adds_another_runs_models_on_the_same_test_examples(finished, tmp_path, capsys):
    import shutil

    run, other = tmp_path / "run", tmp_path / "other"
    shutil.copytree(finished, run)
    shutil.copytree(finished, other)
    assert main(tiny(run, *FAST, "--resume", "--compare", str(other))) == 0
    res = json.loads((run / "results.json").read_text())
    c = res["compared"]
    assert c["run"] == str(other) and c["mle"] == res["mle"] and c["rlvr"] == res["rlvr"]
    assert c["rlvr_vs_rlvr"]["overall"]["delta"] == 0 and c["mle_vs_mle"]["overall"]["p"] == 1.0
    assert f"(`{other}`)" in (run / "results.md").read_text()
    assert "not a finished run directory" in one_line(capsys, tiny(run, *FAST, "--resume", "--compare",
                                                                   str(tmp_path / "nowhere")))
    # a run that evaluated more of the split (one more transition, first) is scored on this run's examples alone
    theirs = json.loads((other / "results.json").read_text())
    extra = next(p for p in range(theirs["n_test_split"]) if p not in theirs["test_indices"])
    (other / "results.json").write_text(json.dumps({**theirs, "test_indices": [extra, *theirs["test_indices"]]}))
    for name in ("mle", "rlvr"):
        ev = json.loads((other / f"eval_{name}.json").read_text())
        ev["records"] = [{"index": 0, "group": "changed", "value": 1.0, "response": "{}"},
                         *({**r, "index": r["index"] + 1} for r in ev["records"])]
        (other / f"eval_{name}.json").write_text(json.dumps(ev))
    assert main(tiny(run, *FAST, "--resume", "--compare", str(other))) == 0
    c2 = json.loads((run / "results.json").read_text())["compared"]
    assert c2["n_evaluated_there"] == 3 and c2["mle"] == res["mle"] and c2["rlvr_vs_rlvr"] == c["rlvr_vs_rlvr"]
    # one that lacks some of this run's examples is refused
    theirs = json.loads((other / "results.json").read_text())
    (other / "results.json").write_text(json.dumps({**theirs, "test_indices": [extra, extra + 1, extra + 2]}))
    line = one_line(capsys, tiny(run, *FAST, "--resume", "--compare", str(other)), after_work=True)
    assert "other test examples" in line


def test_overwrite_starts_over(finished, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    (run / "rl" / "metrics.jsonl").write_text('{"step": 99, "old": true}\n')
    p = cli(*tiny(run, "--mle.epochs", "0.25", "--rl.steps", "1", "--eval-limit", "2", "--curve-limit", "0",
                  "--overwrite"), cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "old" not in (run / "rl" / "metrics.jsonl").read_text()
    assert json.loads((run / "config.json").read_text())["mle"]["epochs"] == 0.25
    assert json.loads((run / "phases.json").read_text())["mle"]["mle.epochs"] == 0.25


def test_an_interrupted_phase_may_change_its_rl_steps_only():
    fp = {"rl.steps": 8, "rl.lr": 1e-3}
    extendable = rundir.PHASES["rl"].extendable
    assert rundir.differences(fp, {**fp, "rl.steps": 12}, extendable) == []
    assert rundir.differences(fp, {**fp, "rl.steps": 12}) == ["rl.steps=8 (now 12)"]
    assert rundir.differences(fp, {**fp, "rl.lr": 1e-4}, extendable) == ["rl.lr=0.001 (now 0.0001)"]


def test_an_option_added_later_holds_its_old_behaviour_for_runs_recorded_before_it(tmp_path):
    d = rundir.RunDir(tmp_path)
    before = {"rl.lr": 1e-3, "rl.steps": 8}  # recorded before rl.scale existed, when every run scaled by group
    d.record({"rl": before})
    d.check("rl", {**before, "rl.scale": "group"}, finished=True)
    with pytest.raises(rundir.RunDirError, match="rl.scale='group' \\(now 'batch'\\)"):
        d.check("rl", {**before, "rl.scale": "batch"}, finished=True)


def test_rl_data_options_bind_rl_alone_so_rl_reruns_from_a_finished_mle_model(tmp_path):
    from rlvr_world.domains.textgame.presets import default

    cfg = default()
    cfg.data.rl_unchanged_ratio = 0.25
    mle, rl = rundir.fingerprint(cfg, "mle"), rundir.fingerprint(cfg, "rl")
    assert "data.rl_unchanged_ratio" not in mle and "data.mle_unchanged_ratio" in mle
    assert rl["data.rl_unchanged_ratio"] == 0.25 and "data.rl_unchanged_ratio" in rundir.fingerprint(cfg, "eval_rlvr")
    d = rundir.RunDir(tmp_path)
    d.record({"mle": {**mle, "data.rl_unchanged_ratio": 0.25}, "rl": rl})  # as runs recorded the MLE phase before
    d.check("mle", mle, finished=True)
    with pytest.raises(rundir.RunDirError, match="data.rl_unchanged_ratio=0.25 \\(now 1.0\\)"):
        d.check("rl", {**rl, "data.rl_unchanged_ratio": 1.0}, finished=False)
    with pytest.raises(rundir.RunDirError, match="data.mle_unchanged_ratio"):
        d.check("mle", {**mle, "data.mle_unchanged_ratio": mle["data.mle_unchanged_ratio"] + 0.5}, finished=True)


def test_a_phase_declared_once_is_fingerprinted_resumed_timed_and_overwritten(finished, tmp_path, capsys,
                                                                               monkeypatch):
    """A domain's toy stage, registered by its declaration alone, gets everything the engine's phases get."""
    import shutil

    from rlvr_world.domains.textgame.domain import TextGameDomain

    calls = []

    def toy_run(stage):  # after the evaluations: writes a file, and what it returns joins the results
        calls.append(stage.got["eval_rlvr"]["n"])
        (stage.out / "toy").mkdir(exist_ok=True)
        (stage.out / "toy" / "done.json").write_text(json.dumps({"toy": len(calls)}))
        return {"toy": len(calls)}

    toy = rundir.Phase("toy", after=("eval_rlvr",), options=("curve_limit",), finished="toy/done.json", run=toy_run,
                       load=lambda stage: json.loads((stage.out / "toy" / "done.json").read_text()))
    engine_only = TextGameDomain.stages
    monkeypatch.setattr(TextGameDomain, "stages", (*engine_only, toy))
    run = tmp_path / "run"
    shutil.copytree(finished, run)  # a finished run from before the toy stage existed: only the toy stage runs
    mle_made = (run / "mle" / "model" / "config.json").stat().st_mtime_ns

    def phases():
        return json.loads((run / "phases.json").read_text())

    assert main(tiny(run, *FAST, "--resume")) == 0 and calls == [2]
    assert phases()["toy"]["curve_limit"] == 0 and phases()["toy"]["examples"] == phases()["eval_rlvr"]["examples"]
    assert "curve_limit" not in phases()["eval_rlvr"]  # the toy's own option binds the toy alone
    assert "toy" in json.loads((run / "timings.json").read_text())
    assert json.loads((run / "results.json").read_text())["toy"] == 1
    (run / "results.json").unlink()
    assert main(tiny(run, *FAST, "--resume")) == 0 and calls == [2]  # finished: loaded, not run
    assert json.loads((run / "results.json").read_text())["toy"] == 1
    line = one_line(capsys, tiny(run, *FAST[:-2], "--curve-limit", "1", "--resume"))  # its option changed
    assert "holds toy work made with other options: curve_limit=0 (now 1)" in line and calls == [2]
    shutil.rmtree(run / "toy")  # without its outputs, the toy stage alone runs again with the new option
    assert main(tiny(run, *FAST[:-2], "--curve-limit", "1", "--resume")) == 0 and len(calls) == 2
    assert phases()["toy"]["curve_limit"] == 1
    assert (run / "mle" / "model" / "config.json").stat().st_mtime_ns == mle_made
    (run / "toy" / "stale.txt").write_text("from the run before")
    monkeypatch.setattr(TextGameDomain, "stages", engine_only)  # undeclared, its folder is no run's
    assert "(toy)" in one_line(capsys, tiny(run, *FAST, "--overwrite"))
    monkeypatch.setattr(TextGameDomain, "stages", (*engine_only, toy))
    assert main(tiny(run, *FAST, "--overwrite")) == 0 and len(calls) == 3
    assert not (run / "toy" / "stale.txt").exists() and phases()["toy"]["curve_limit"] == 0


def test_a_second_run_into_a_locked_directory_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    with rundir.Lock(out):
        line = one_line(capsys, tiny(out, *FAST))
        assert f"pid {os.getpid()}" in line and "another run" in line
    assert sorted(p.name for p in out.iterdir()) == [".lock"]  # the refused run wrote nothing
    # a lock left by a process that died is not held by anyone: the next run takes it
    subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; from rlvr_world import rundir;"
                    "rundir.Lock(Path(sys.argv[1])).__enter__(); import os; os._exit(0)", str(out)], check=True)
    with rundir.Lock(out):
        pass


# ---- 2. NaN stops training ---------------------------------------------------------------------------------------

def test_mle_that_diverges_stops_and_saves_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    line = one_line(capsys, tiny(out, *FAST, "--mle.lr", "1e3", "--mle.save-every", "1000"), after_work=True)
    assert "MLE diverged at step" in line and "lower --mle.lr" in line
    assert not (out / "mle" / "model").exists() and not (out / "results.json").exists()


def test_rl_that_diverges_stops_and_saves_nothing(tmp_path):
    from test_rl_loop import EXAMPLES, TOK, ToyDomain, cfg, toy_model

    torch.set_num_threads(1)
    with pytest.raises(TrainingDiverged, match="RL diverged at step"):
        checkpoint_steps = cfg(steps=30, lr=1e3, save_every=1)
        from rlvr_world.engine.rl import train_rl

        train_rl(toy_model(), TOK, ToyDomain(), EXAMPLES, checkpoint_steps, tmp_path)
    assert not (tmp_path / "model").exists()
    state = load_trainer_state(tmp_path / "checkpoint")
    assert state is None or all(torch.isfinite(v).all() for s in state["optimizer"]["state"].values()
                                for v in s.values() if torch.is_tensor(v))


def test_non_finite_weights_are_never_saved(tmp_path):
    from test_rl_loop import TOK, toy_model

    model = toy_model()
    save_model(tmp_path / "m", model, TOK)
    with torch.no_grad():
        next(model.parameters())[0, 0] = math.nan
    with pytest.raises(TrainingDiverged, match="not finite"):
        save_model(tmp_path / "m", model, TOK)
    assert (tmp_path / "m" / "model.safetensors").is_file() and not (tmp_path / "m.tmp").exists()


# ---- 4, 5. every bad option is one line, before any work -------------------------------------------------------

BAD_OPTIONS = [
    (["--rl.steps", "-1"], "--rl.steps must be >= 1"),
    (["--rl.group-size", "1"], "--rl.group-size must be >= 2"),
    (["--rl.group-size", "0"], "--rl.group-size must be >= 2"),
    (["--rl.temperature", "-1"], "--rl.temperature must be > 0"),
    (["--eval-limit", "-1"], "--eval-limit must be >= 0"),
    (["--device", "tpu:7"], "unknown device 'tpu:7'"),
    (["--model.num-heads", "3"], "must be an even multiple of --model.num-heads"),
    (["--mle.save-every", "0"], "--mle.save-every must be >= 1"),
    (["--mle.epochs", "-1"], "--mle.epochs must be >= 0"),
    (["--model.init-adapter", "nowhere"], "nowhere is not an adapter folder (no manifest.json)"),
    (["--rl.save-every", "0"], "--rl.save-every must be >= 1"),
    (["--rl.prompts-per-step", "0"], "--rl.prompts-per-step must be >= 1"),
    (["--mle.lr", "nan"], "--mle.lr must be > 0, got nan"),
    (["--rl.lr", "inf"], "--rl.lr must be > 0, got inf"),
    (["--rl.top-p", "0"], "--rl.top-p must be in (0, 1]"),
    (["--data.mle-unchanged-ratio", "-2"], "--data.mle-unchanged-ratio must be >= 0, or -1 for all"),
]
if not torch.cuda.is_available():
    BAD_OPTIONS.append((["--device", "cuda"], "no CUDA GPU"))


@pytest.mark.parametrize("extra,message", BAD_OPTIONS, ids=[" ".join(e) for e, _ in BAD_OPTIONS])
def test_bad_options_are_refused_before_any_work(tmp_path, capsys, extra, message):
    assert message in one_line(capsys, tiny(tmp_path / "run", *extra))
    assert not (tmp_path / "run").exists()


def test_unusable_paths_are_refused_before_any_work(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert "is a file" in one_line(capsys, tiny(tmp_path / "afile"))
    line = one_line(capsys, ["run", "--preset", "tiny", "--out", str(tmp_path / "afile" / "run")])
    assert "cannot write" in line
    line = one_line(capsys, ["run", "--preset", "tiny", "--out", str(tmp_path / "r"), "--results", "/proc/x/r.json"])
    assert "--results" in line and "cannot write" in line
    assert not (tmp_path / "r").exists()
    line = one_line(capsys, ["run", "--preset", "tiny", "--out", str(tmp_path / "r"), "--results", str(tmp_path)])
    assert "is a directory" in line and not (tmp_path / "r").exists()


def test_data_of_the_wrong_types_is_one_line_naming_the_line(tmp_path, capsys):
    src = Path(__file__).parents[1] / "src/rlvr_world/domains/textgame/data/train.jsonl.gz"
    with gzip.open(src, "rt") as f:
        row = json.loads(f.readline())
    for mutate in (lambda r: r["current_state"].update(objects="a string"),
                   lambda r: r["tick_state"]["objects"].__setitem__(0, 7),
                   lambda r: r.update(current_score_state=[1]),
                   lambda r: r["action_state"].update(lastAction=3)):
        bad = json.loads(json.dumps(row))
        mutate(bad)
        path = tmp_path / "bad.jsonl"
        path.write_text(json.dumps(row) + "\n" + json.dumps(bad) + "\n")
        line = one_line(capsys, tiny(tmp_path / "run", "--data.train-path", str(path)))
        assert "line 2" in line and "bad.jsonl" in line
        assert not (tmp_path / "run").exists()


# ---- 6. checkpoints survive their own crashes --------------------------------------------------------------------

def test_damaged_trainer_state_is_one_line(tmp_path):
    d = tmp_path / "checkpoint"
    d.mkdir()
    for content in (b"", b"PK\x03\x04 truncated"):
        (d / "trainer_state.pt").write_bytes(content)
        with pytest.raises(CheckpointError, match="is damaged"):
            load_trainer_state(d)


def test_trainer_state_is_loaded_without_unpickling_code(tmp_path):
    d = tmp_path / "checkpoint"
    d.mkdir()
    torch.save({"step": 3, "evil": Path("x")}, d / "trainer_state.pt")  # any object beyond tensors and plain values
    with pytest.raises(CheckpointError):
        load_trainer_state(d)
    w = torch.nn.Parameter(torch.ones(2))
    opt = torch.optim.AdamW([w])
    w.sum().backward()
    opt.step()
    torch.save({"step": 3, "optimizer": opt.state_dict()}, d / "trainer_state.pt")
    assert load_trainer_state(d)["step"] == 3


def test_an_interrupted_save_is_recovered(tmp_path):
    from test_rl_loop import TOK, toy_model

    path = tmp_path / "checkpoint"
    save_model(path, toy_model(), TOK, {"step": 1})
    path.rename(tmp_path / "checkpoint.old")  # a crash between the two renames
    assert load_trainer_state(path)["step"] == 1  # the previous checkpoint is put back
    save_model(path, toy_model(), TOK, {"step": 2})
    (tmp_path / "checkpoint.old").mkdir()  # a leftover beside a good checkpoint no longer blocks saving
    (tmp_path / "checkpoint.old" / "junk").write_text("x")
    save_model(path, toy_model(), TOK, {"step": 3})
    assert load_trainer_state(path)["step"] == 3 and not (tmp_path / "checkpoint.old").exists()


def test_a_torn_metrics_line_is_skipped(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n{"step": 3, "lo')
    log = MetricLog(path, resume_step=2)
    assert [r["step"] for r in log.rows()] == [1, 2]
    log.write({"step": 3, "loss": 1.0})
    assert [r["step"] for r in log.rows()] == [1, 2, 3]


def test_resume_survives_damaged_timings_and_checks_the_vocabulary(finished, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    (run / "timings.json").write_text('{"tokenizer": 0.3, "ml')
    assert main(tiny(run, *FAST, "--resume")) == 0
    assert "damaged" in capsys.readouterr().err
    # a tokenizer replaced by a larger one: the saved models cannot embed its ids
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(run / "tokenizer" / "tokenizer.json"))
    tok.add_tokens([f"extra{i}" for i in range(200)])
    tok.save(str(run / "tokenizer" / "tokenizer.json"))
    assert "vocabulary" in one_line(capsys, tiny(run, *FAST, "--resume"))


# ---- 9. dependencies within the versions we know work --------------------------------------------------------------

def test_installed_dependencies_satisfy_the_declared_bounds():
    import tomllib
    from importlib.metadata import version

    from packaging.requirements import Requirement

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    bounded = [Requirement(r) for r in project["dependencies"] if "<" in r]
    assert {r.name for r in bounded} >= {"transformers", "torch", "peft"}
    for r in bounded:
        assert r.specifier.contains(version(r.name), prereleases=True), (r, version(r.name))


def test_tensorboard_logs_hold_the_same_numbers_as_the_jsonl(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = MetricLog(tmp_path / "metrics.jsonl", tensorboard=True)
    for step in (1, 2, 3):
        log.write({"step": step, "loss": 1.0 / step, "reward/mean": 0.1 * step, "why": "text is skipped"})
    log = MetricLog(tmp_path / "metrics.jsonl", resume_step=2, tensorboard=True)  # resumed after step 2
    log.write({"step": 3, "loss": 0.25, "reward/mean": 0.5})
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert set(events.Tags()["scalars"]) == {"loss", "reward/mean"}
    loss = {e.step: e.value for e in events.Scalars("loss")}
    assert loss == pytest.approx({1: 1.0, 2: 0.5, 3: 0.25})  # the interrupted run's step 3 is purged
    assert [r["loss"] for r in log.rows()] == pytest.approx([1.0, 0.5, 0.25])


def test_the_memory_trimmer_trims_only_after_the_resident_set_outgrew_its_warm_size(monkeypatch):
    from rlvr_world import device

    sizes = iter([5, 8, 6, 8.7, 9.0, 10.0, 10.5, 11.2, 12.0])  # GB read by each call: 2 warm-up calls, then 7
    calls = []
    monkeypatch.setattr(device, "resident_bytes", lambda: next(sizes))
    monkeypatch.setattr(device, "_malloc_trim", lambda: calls.append)
    trim = device.MemoryTrimmer(growth=1.1, warmup=2)
    for _ in range(9):
        trim()
    # working set 8 GB after warm-up: 9.0 trims; the step after it holds 10.0, the real working set, so 10.5 does
    # not trim (not above 11.0) and 11.2 does; the step after it (12.0) raises the working set again
    assert trim.baseline == 12.0 and calls == [0, 0] and trim.trims == 2


def test_the_memory_trimmer_is_real_here_and_can_be_turned_off(monkeypatch):
    from rlvr_world import device

    assert device.resident_bytes() > 10 * 2**20  # this Python with torch holds more than 10 MB
    trim = device.MemoryTrimmer(growth=0.0, warmup=0)
    trim()  # glibc's malloc_trim really runs
    assert trim.trim is not None or not sys.platform.startswith("linux")
    assert trim.trims == (0 if trim.trim is None else 1)
    monkeypatch.setenv("RLVR_WORLD_MALLOC_TRIM", "0")
    off = device.MemoryTrimmer(growth=0.0, warmup=0)
    off()
    assert off.trim is None and off.trims == 0


def test_an_interrupted_evaluation_keeps_its_finished_batches(tmp_path, monkeypatch):
    from rlvr_world.domains.textgame import TextGameData
    from rlvr_world.domains.textgame.domain import TextGameDomain
    from rlvr_world.engine import evaluate as ev
    from rlvr_world.engine.models import ModelConfig, build
    from rlvr_world.text import train_bpe

    data = TextGameData(games=["lit-lightbulb"])
    ts = TextGameDomain.transitions("test", data)[:7]
    tok = train_bpe([TextGameDomain.prompt_text(t) + TextGameDomain.target_text(t) for t in ts], 300)
    torch.manual_seed(0)
    model = build(ModelConfig(hidden_size=32, num_layers=1, num_heads=2, max_positions=4096), len(tok),
                  pad_id=tok.pad_token_id, bos_id=tok.bos_token_id, eos_id=tok.eos_token_id).eval()
    domain = TextGameDomain(tok, data)
    examples = [domain.example(t) for t in ts]
    partial = tmp_path / "eval.partial.jsonl"
    whole = ev.evaluate(model, domain, examples, batch_size=3, max_new_tokens=6, partial=partial, show_progress=False)
    lines = partial.read_text().splitlines()
    assert len(lines) == 7  # every batch's records, as it finished
    partial.write_text("\n".join(lines[:3]) + "\n" + lines[3][:20])  # the first batch, then a torn line
    seen = []
    real = ev.sample
    monkeypatch.setattr(ev, "sample", lambda m, prompts, **kw: seen.append(len(prompts)) or real(m, prompts, **kw))
    again = ev.evaluate(model, domain, examples, batch_size=3, max_new_tokens=6, partial=partial, show_progress=False)
    assert seen == [3, 1]  # only the batches not on record ran again
    assert again.records == whole.records and again.overall == whole.overall
    assert [json.loads(line)["index"] for line in partial.read_text().splitlines()] == [r["index"] for r in
                                                                                      map(json.loads, lines)]

"""`run`'s configuration surface as a user meets it: config files, `--print-config`, `--help` and `--version`.

Every command runs as a subprocess; `--print-config` resolves a run's config without running (or loading torch).
"""

import dataclasses
import importlib
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from rlvr_world import __version__, domains
from rlvr_world.optionparsing import field_help
from rlvr_world.runconfig import preset, preset_summaries, presets

ROOT = Path(__file__).parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def cli(*args, cwd=ROOT, check=True):
    p = subprocess.run([sys.executable, "-m", "rlvr_world.cli", *args], cwd=cwd, env=ENV, capture_output=True,
                       text=True, timeout=300)
    if check:
        assert p.returncode == 0, p.stderr[-3000:]
    return p


def resolved(*args, cwd=ROOT) -> dict:
    """The config `run` would start with these arguments, as `--print-config` prints it (parsed)."""
    return yaml.safe_load(cli("run", *args, "--print-config", cwd=cwd).stdout)


def one_line_error(p) -> str:
    assert p.returncode == 2, p.stdout[-2000:] + p.stderr[-2000:]
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, p.stderr
    return lines[0]


# ------------------------------------------------------------------------------------- config files


@pytest.mark.parametrize("name", list(presets()))
def test_each_shipped_config_is_its_preset_as_print_config_writes_it(name):
    path = ROOT / "configs" / f"{name}.yaml"
    assert path.is_file(), f"configs/{name}.yaml is missing: rlvr-world run --preset {name} --print-config > {path}"
    printed = cli("run", "--preset", name, "--print-config").stdout
    assert path.read_text() == printed, f"configs/{name}.yaml is stale: rlvr-world run --preset {name} " \
                                        f"--print-config > configs/{name}.yaml"
    assert printed.startswith(f"# written by: rlvr-world run --preset {name} --print-config\n")
    from_file = resolved("--config", f"configs/{name}.yaml")
    assert from_file == yaml.safe_load(printed) == json.loads(json.dumps(dataclasses.asdict(preset(name))))


def test_options_given_override_the_config_file_and_the_file_the_preset(tmp_path):
    (tmp_path / "mine.yaml").write_text(
        "# a newcomer's file: the jsonl domain's preset under it\n"
        "domain: jsonl\n"
        "out: runs/mine\n"
        "data:\n  train_path: train.jsonl\n  test_path: test.jsonl\n"
        "mle:\n  lr: 1e-3  # YAML reads this as text; it is read as the option would be\n  epochs: 2\n"
        "rl:\n  steps: 3\n  reward: exact\n  balance_strata: false\n")
    cfg = resolved("--config", "mine.yaml", cwd=tmp_path)
    jsonl = dataclasses.asdict(preset("jsonl"))
    assert cfg["domain"] == "jsonl" and cfg["out"] == "runs/mine" and cfg["results"] == jsonl["results"]
    assert cfg["data"] == {**jsonl["data"], "train_path": "train.jsonl", "test_path": "test.jsonl"}
    assert cfg["mle"] == {**jsonl["mle"], "lr": 0.001, "epochs": 2.0}
    assert cfg["rl"] == {**jsonl["rl"], "steps": 3, "reward": "exact", "balance_strata": False}
    over = resolved("--config", "mine.yaml", "--rl.steps", "9", "--data.test-path", "other.jsonl",
                    "--rl.balance-strata", "--out", "runs/x", cwd=tmp_path)
    assert over["rl"] == {**cfg["rl"], "steps": 9, "balance_strata": True}
    assert over["data"]["test_path"] == "other.jsonl" and over["data"]["train_path"] == "train.jsonl"
    assert over["out"] == "runs/x" and over["mle"] == cfg["mle"]
    # a file may name the preset it starts from; --preset given names another
    (tmp_path / "tiny.yaml").write_text("preset: tiny\nrl:\n  steps: 5\n")
    assert resolved("--config", "tiny.yaml", cwd=tmp_path) == {**dataclasses.asdict(preset("tiny")),
                                                                "rl": {**dataclasses.asdict(preset("tiny").rl),
                                                                       "steps": 5}}
    assert resolved("--config", "tiny.yaml", "--preset", "full", cwd=tmp_path)["mle"] == \
        dataclasses.asdict(preset("full").mle)
    # the options `run --help` offers are the file's domain's, with the file's values as their defaults
    helped = option_helps(cli("run", "--config", "mine.yaml", "--help", cwd=tmp_path).stdout)
    assert "--data.games" not in helped and helped["--data.train-path"].endswith("(default: 'train.jsonl')")


def test_a_runs_config_json_is_a_config_file_as_it_is(tmp_path):
    from rlvr_world.engine.atomicwrite import save_config

    cfg = preset("web-tiny")  # config.json as a run writes it (`Pipeline.run`), with values no preset has
    cfg.out, cfg.rl.lr, cfg.rl.scale, cfg.data.tasks, cfg.mle.epochs = "runs/w", 1e-05, "none", ["enter-text"], 3
    save_config(tmp_path / "run", cfg)
    written = json.loads((tmp_path / "run" / "config.json").read_text())
    assert resolved("--config", "run/config.json", cwd=tmp_path) == written
    # an older run's config.json, without the options added since, takes the preset's values for those
    del written["rl"]["balance_strata"]
    (tmp_path / "old.json").write_text(json.dumps(written))
    assert resolved("--config", "old.json", cwd=tmp_path)["rl"]["balance_strata"] == preset("web").rl.balance_strata


@pytest.mark.parametrize("text,says", [
    ("rl:\n  stpes: 3\n", "unknown key rl.stpes (did you mean rl.steps?)"),
    ("rl.steps: 3\n", "unknown key rl.steps (in a file, steps goes nested under rl:)"),
    ("data:\n  tasks: [a]\n", "unknown key data.tasks (known: data.games,"),
    ("rl:\n  steps: ten\n", "rl.steps must be an integer, got 'ten'"),
    ("rl:\n  steps: 2.5\n", "rl.steps must be an integer, got 2.5"),
    ("eval_balanced: 3\n", "eval_balanced must be true or false, got 3"),
    ("data:\n  games: lit-lightbulb\n", "data.games must be a list of text, got 'lit-lightbulb'"),
    ("rl: 3\n", "rl must be a mapping of its options"),
    ("rl:\n  steps: 0\n", "--rl.steps must be >= 1, got 0"),
    ("rl:\n  scale: groups\n", "unknown scale 'groups' (--rl.scale); known: group, batch, none"),
    ("domain: chess\n", "unknown domain 'chess'"),
    ("preset: huge\n", "unknown preset 'huge'"),
    ("domain: jsonl\npreset: web\n", "domain 'jsonl' is not preset web's (web)"),
    ("[1, 2]\n", "must hold a mapping of options"),
    ("rl:\n steps: 3\n  lr: 2\n", "is not valid YAML (line 3, column 5)"),
])
def test_a_config_file_that_cannot_be_used_is_one_line_naming_the_key(tmp_path, text, says):
    (tmp_path / "bad.yaml").write_text(text)
    for args in (("--print-config",), ("--out", "o")):  # refused before any work
        line = one_line_error(cli("run", "--config", "bad.yaml", *args, cwd=tmp_path, check=False))
        assert line.startswith("rlvr-world: error: ") and "bad.yaml" in line and says in line, line
    assert not (tmp_path / "o").exists()


def test_missing_and_malformed_files_and_bad_options_beside_a_file(tmp_path):
    assert "cannot read config file nope.yaml" in one_line_error(
        cli("run", "--config", "nope.yaml", "--print-config", cwd=tmp_path, check=False))
    (tmp_path / "bad.json").write_text('{"rl": {"steps": 3,}}')
    assert "bad.json is not valid JSON" in one_line_error(
        cli("run", "--config", "bad.json", "--print-config", cwd=tmp_path, check=False))
    (tmp_path / "ok.yaml").write_text("rl:\n  steps: 3\n")
    assert "--rl.steps must be >= 1, got 0" in one_line_error(
        cli("run", "--config", "ok.yaml", "--rl.steps", "0", "--print-config", cwd=tmp_path, check=False))
    (tmp_path / "empty.yaml").write_text("# nothing set: the preset as it is\n")
    assert resolved("--config", "empty.yaml", cwd=tmp_path) == json.loads(json.dumps(dataclasses.asdict(preset(
        "default"))))


def test_print_config_loads_nothing_heavy(tmp_path):
    code = ("import sys\nfrom rlvr_world.cli import main\n"
            "assert main(['run', '--config', 'configs/video.yaml', '--rl.steps', '3', '--print-config']) == 0\n"
            "heavy = sorted(m for m in ('torch', 'transformers', 'selenium', 'metaworld', 'scipy')\n"
            "               if m in sys.modules)\n"
            "print('HEAVY', heavy, file=sys.stderr)\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert "HEAVY []" in p.stderr, p.stderr[-2000:]
    assert yaml.safe_load(p.stdout)["rl"]["steps"] == 3


# ------------------------------------------------------------------------------------- a pretrained model on any preset


def test_the_pretrained_presets_agree_on_the_settings_a_pretrained_model_takes():
    """`PRETRAINED_OPTIONS` are the model's settings, which both pretrained presets share but for RL's lr."""
    from rlvr_world.runconfig import PRETRAINED_OPTIONS, pretrained_preset

    def get(cfg, key):
        for part in key.split("."):
            cfg = getattr(cfg, part)
        return cfg

    text, web = preset("textgame-pretrained"), preset("web-pretrained")
    assert [k for k in PRETRAINED_OPTIONS if get(text, k) != get(web, k)] == ["rl.lr"]
    assert (pretrained_preset("textgame"), pretrained_preset("web"), pretrained_preset("jsonl")) == \
        ("textgame-pretrained", "web-pretrained", "textgame-pretrained")


def test_a_pretrained_model_on_a_from_scratch_preset_takes_the_pretrained_settings_not_given(tmp_path):
    from rlvr_world.runconfig import PRETRAINED_OPTIONS

    def get(cfg: dict, key: str):
        for part in key.split("."):
            cfg = cfg[part]
        return cfg

    p = cli("run", "--domain", "jsonl", "--model.init-from", "smollm2-135m", "--mle.lr", "1e-3", "--print-config",
            cwd=tmp_path)
    cfg, ref = yaml.safe_load(p.stdout), json.loads(json.dumps(dataclasses.asdict(preset("textgame-pretrained"))))
    assert get(cfg, "mle.lr") == 1e-3  # given: kept
    assert all(get(cfg, k) == get(ref, k) for k in PRETRAINED_OPTIONS if k != "mle.lr")
    assert cfg["mle"]["batch_tokens"] == 4096 and cfg["model"]["lora_rank"] == 32 and cfg["mle"]["epochs"] == 1
    jsonl = json.loads(json.dumps(dataclasses.asdict(preset("jsonl"))))  # the domain's data and budget stay
    assert cfg["data"] == jsonl["data"] and cfg["rl"]["steps"] == jsonl["rl"]["steps"]
    assert cfg["rl"]["max_new_tokens"] == jsonl["rl"]["max_new_tokens"] and cfg["curve_limit"] == jsonl["curve_limit"]
    line = p.stderr.strip()
    assert "\n" not in line and line.startswith("rlvr-world: preset jsonl is made for a model trained from scratch")
    assert "textgame-pretrained's settings" in line and "--mle.batch-tokens 4096" in line
    assert "--model.lora-rank 32" in line and "--mle.lr" not in line
    assert "--mle.batch-tokens 4096" in p.stdout.split("\n\n")[0]  # the printed file's header says so too
    # a config file's options win as the command line's do; --print-config's output runs as printed
    (tmp_path / "mine.yaml").write_text("domain: jsonl\nmodel:\n  init_from: smollm2-135m\n"
                                        "mle:\n  batch_tokens: 8192\n")
    from_file = resolved("--config", "mine.yaml", cwd=tmp_path)
    assert from_file["mle"]["batch_tokens"] == 8192 and from_file["mle"]["lr"] == 3e-4
    (tmp_path / "printed.yaml").write_text(p.stdout)
    again = cli("run", "--config", "printed.yaml", "--print-config", cwd=tmp_path)
    assert yaml.safe_load(again.stdout) == cfg and again.stderr == ""
    # the web domain takes its own pretrained preset's; a pretrained preset, or no pretrained model, is left alone
    web = resolved("--preset", "web", "--model.init-from", "smollm2-135m")
    assert web["rl"]["lr"] == preset("web-pretrained").rl.lr
    for name, args in (("textgame-pretrained", ()), ("textgame-pretrained", ("--model.init-from", "x.gguf")),
                       ("jsonl", ())):
        p = cli("run", "--preset", name, *args, "--print-config", cwd=tmp_path)
        assert p.stderr == "" and yaml.safe_load(p.stdout)["mle"]["lr"] == preset(name).mle.lr


# ------------------------------------------------------------------------------------- --help and --version


def option_helps(text: str) -> dict[str, str]:
    """Each option of a `--help` text with its help (argparse puts it beside the option or on the lines below)."""
    out, name = {}, None
    for line in text.splitlines():
        m = re.match(r"^  (-[-\w.]+(?:, --[-\w.]+)?)(?: [A-Z]+| \[[^]]*\])*(?:  +(.*))?$", line)
        if m:
            name = m.group(1).split(", ")[-1]
            out[name] = m.group(2) or ""
        elif name and line.startswith(" " * 24):
            out[name] = (out[name] + " " + line.strip()).strip()
        else:
            name = None
    return out


@pytest.mark.parametrize("args", [("run", "--domain", d) for d in domains.DOMAINS]
                         + [("eval",), ("serve",), ("agent",), ("policy-eval",), ("export", "verl"), ("seeds",)])
def test_every_option_has_help(args):
    helps = option_helps(cli(*args, "--help").stdout)
    assert "--help" in helps
    undescribed = [k for k, v in helps.items() if not v or v.startswith("(")]  # "(default: ...)" alone
    assert not undescribed, undescribed


def test_run_help_groups_options_lists_choices_and_presets():
    text = cli("run", "--help").stdout
    titles = [line for line in text.splitlines() if re.match(r"^\S.*:$", line)]
    assert titles[:5] == ["options:", "data options:", "model options:", "mle options:", "rl options:"], titles
    helps = option_helps(text)
    assert {k.split(".")[0] for k in helps} == {"--help", "--preset", "--config", "--print-config", "--domain",
                                                "--out", "--results", "--resume", "--overwrite", "--device", "--dtype",
                                                "--threads", "--vocab-size", "--eval-batch-size", "--max-new-tokens",
                                                "--eval-limit", "--eval-balanced", "--curve-limit", "--log",
                                                "--compare", "--data", "--model", "--mle", "--rl"}
    for option, choices in [("--rl.scale", "group, batch, none"), ("--rl.baseline", "group, greedy"),
                            ("--rl.credit", "sequence, token"), ("--rl.advantage", "decision, grpo"),
                            ("--dtype", "auto, bf16, fp32"), ("--log", "jsonl, tensorboard"),
                            ("--domain", ", ".join(domains.DOMAINS)), ("--rl.reward", "binary, task_specific")]:
        assert f"(choices: {choices}; default: " in helps[option], (option, helps[option])
    assert "GRPO post-training" in text and "Maximum-likelihood training" in text
    for domain, summaries in preset_summaries().items():
        assert f"\n  {domain}:\n" in text
        for name, about in summaries.items():
            assert re.search(rf"\n    {re.escape(name)} +{re.escape(about.split()[0])}", text), name
    flat = " ".join(text.split())
    assert all(" ".join(about.split()) in flat for s in preset_summaries().values() for about in s.values())


@pytest.mark.parametrize("domain", list(domains.DOMAINS))
def test_reward_choices_are_the_domains_own(domain):
    helps = option_helps(cli("run", "--domain", domain, "--help").stdout)
    names = importlib.import_module(f"rlvr_world.domains.{domain}.options").REWARDS
    assert f"(choices: {', '.join(names)}; default: " in helps["--rl.reward"]
    domain_cls = domains.get(domain)
    built_in = [n for n in dict.keys(domain_cls.rewards) if ":" not in n]  # not a reward of the user's own
    assert [n for n in names if ":" not in n] == built_in  # listed apart, as `--help` loads no domain


def test_version():
    p = cli("--version")
    assert p.stdout.strip() == f"rlvr-world {__version__}"


def test_field_help_reads_comments_beside_and_above_a_field():
    @dataclass
    class Options:
        """Options."""

        a: int = 1  # beside
        # the comment above a field without one of its own
        b: int = 2
        c: int = 3  # beside, and
        # continued below
        d: int = 4  # its own

        def method(self):
            e: int = 5  # noqa: F841  (not a field)

    assert field_help(Options) == {"a": "beside", "b": "the comment above a field without one of its own",
                                   "c": "beside, and continued below", "d": "its own"}

"""The domain contract: every registered domain is a `Domain`, with its options and presets beside it."""

import dataclasses
import importlib
import re
from pathlib import Path

import pytest

from rlvr_world import domains
from rlvr_world.engine.domain import Domain
from rlvr_world.runconfig import preset, presets

SRC = Path(__file__).parents[1] / "src" / "rlvr_world"


@pytest.mark.parametrize("name", list(domains.DOMAINS))
def test_each_domain_keeps_the_contract(name):
    cls = domains.get(name)
    data_cls, make_tokenizer = cls.data_options, cls.make_tokenizer
    assert issubclass(cls, Domain) and cls.name == name
    assert cls.rewards and cls.metric in cls.rewards and cls.metric_label
    assert set(cls.groups) <= set(cls.columns) and "overall" in cls.columns or cls.metric in cls.columns
    assert cls.load_tokenizer is not Domain.load_tokenizer and make_tokenizer is not Domain.make_tokenizer
    assert dataclasses.is_dataclass(data_cls)
    own = importlib.import_module(f"rlvr_world.domains.{name}.presets").PRESETS
    assert own, f"{name} has no preset"
    for p in own:
        cfg = preset(p)
        assert cfg.domain == name and isinstance(cfg.data, data_cls)


def test_presets_are_unique_and_all_known():
    names = [p for name in domains.DOMAINS
             for p in importlib.import_module(f"rlvr_world.domains.{name}.presets").PRESETS]
    assert len(names) == len(set(names)) and list(presets()) == names


def test_the_engine_and_the_pipeline_do_not_probe_domains():
    probing = re.compile(r"(getattr|hasattr)\((self\.)?domain(_cls)?\b")
    files = [*(SRC / "engine").glob("*.py"), SRC / "pipeline.py", SRC / "report.py", SRC / "cli.py"]
    found = [f"{f.name}: {line.strip()}" for f in files for line in f.read_text().splitlines() if probing.search(line)]
    assert not found, found
    engine_imports = [f"{f.name}: {line}" for f in (SRC / "engine").glob("*.py") for line in f.read_text().splitlines()
                      if line.startswith(("from ", "import ")) and "domains" in line]
    assert not engine_imports  # the engine imports no domain

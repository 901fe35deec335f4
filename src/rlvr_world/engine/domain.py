"""The small interface through which a domain plugs into the engine.

A domain turns (state, action) into prompt token ids and the real next state
into target token ids, decodes a generated response into a prediction, and
scores that prediction against the real next state. The engine sees only the
token ids, the rewards and a group label used to break evaluation down.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..rundir import Phase

# A reward is a pure function: (response text or decoded prediction, example
# payload) -> (value, parts). `parts` holds the components worth logging.
Reward = Callable[[Any, Any], "tuple[float, dict[str, float]]"]


@dataclass
class Example:
    """One transition, as the engine sees it."""

    prompt_ids: list[int]
    target_ids: list[int]  # ends with the end-of-sequence id
    group: str = "all"  # evaluation breakdown, e.g. "changed" / "unchanged"
    payload: Any = field(default=None, repr=False)  # what the domain needs to score
    # per target token: 1 = the model predicts it, 0 = the data gives it (e.g. a real action between
    # predicted frames): left out of every loss and written in by the sampler. None: all predicted.
    loss_mask: list[int] | None = None
    # the trivial answer "nothing changes" (a difference with nothing in it, or the state itself), ending with the
    # end-of-sequence id like the target; None where the domain has none. RL's decision split and the diagnostics
    # of a collapse toward it read it (`RLConfig.advantage`).
    trivial_ids: list[int] | None = None

    def forced(self) -> list[int] | None:
        """Per target position, the id the sampler must write (-1: the model samples); None when nothing is given."""
        if self.loss_mask is None or all(self.loss_mask):
            return None
        return [-1 if m else t for t, m in zip(self.target_ids, self.loss_mask)]


@dataclass
class StageContext:
    """What a domain's own stage (`Domain.stages`) gets from the run: no pipeline object."""

    out: Path  # the run directory (the stage writes there what its declaration names)
    results: Path  # the results file (pictures may go beside it)
    mle: Any  # the run's MLEConfig and RLConfig, for training of its own
    rl: Any
    autocast: Any  # the run's mixed-precision context factory
    evaluate: Callable  # (model, domain, examples, description) -> the engine's evaluation result, run's settings
    data: Any = None  # the run's data options
    domain: Any = None  # the domain, once the tokenizer exists
    test: Sequence[Example] = ()  # the final evaluations' examples, once read
    # what each phase run so far returned, by name: "tokenizer", the "mle" and "rl" models, their evaluations
    # "eval_mle" and "eval_rlvr" (summaries with every record), and a stage's own
    got: dict[str, Any] = field(default_factory=dict)


def collect_stage(prepare: Callable[[Any], None]) -> Phase:
    """A domain's `prepare` as the stage `collect`, before the tokenizer: under torchrun process 0 alone makes the
    data (into the cache: nothing in the run directory) and the others wait."""
    return Phase("collect", options=("data",), on_main=True, run=lambda stage: prepare(stage.data))


def finish_stage(**declared) -> Phase:
    """A domain's `finish` as the stage `finish`, after both evaluations; `declared`: what else its declaration says
    (`rundir.Phase`, e.g. a folder it writes into the run directory)."""
    def run(stage: StageContext) -> dict:
        got = stage.got
        return stage.domain.finish(stage, stage.test, got["mle"], got["rl"], got["eval_mle"], got["eval_rlvr"])

    return Phase("finish", after=("eval_mle", "eval_rlvr"), run=run, **declared)


class Domain:
    """Everything the engine, the pipeline and the report ask of a domain, with its defaults.

    A domain subclasses this (the language domains through `domains.textdomain.TextDomain`) and overrides what
    differs; nothing is looked up by name. Required: the class attributes `name`, `data_options`, `rewards` and
    `metric`, an `eos_id` and a `pad_id` on each instance, and `examples`, `decode`, `score`, `make_tokenizer` and
    `load_tokenizer`.
    """

    name: str = ""
    data_options: type  # the dataclass of its data options (its folder's options.py), which `RunConfig.data` holds
    rewards: dict[str, Reward] = {}  # named rewards the RL stage can choose from
    metric: str = ""  # the reward whose mean is the reported accuracy-like metric
    metric_label: str = ""  # how the results name it
    metric_scale: float = 100.0  # the metric's mean times this is reported (100: per cent of a 0/1 metric)
    binary_metric: bool = True  # 0/1 per example (McNemar's test) or graded (Wilcoxon's)
    groups: tuple[str, ...] = ("unchanged", "changed")  # the `Example.group` labels the evaluation breaks down by
    columns: tuple[str, ...] = ("unchanged", "changed", "overall")  # of the results table
    reported_parts: tuple[str, ...] = ()  # reward parts averaged into the results besides the metric
    reference: dict[str, dict[str, float]] = {}  # facts from papers, shown beside the results
    token_credit: bool = False  # `token_rewards` splits the reward over the response's tokens
    eos_id: int  # ends every response
    pad_id: int  # fills padded positions
    suppressed_ids: list[int] | None = None  # ids the sampler never draws (given tokens are still written in)
    # The domain's own phases beside the engine's (`rundir.Phase`, run with a `StageContext`; e.g. `collect_stage`,
    # `finish_stage`): each declares the options it depends on and what it leaves in the run directory, which
    # phases.json, --resume, --overwrite and timings.json then treat like the engine's. A stage runs once the phases
    # it starts from have (one that starts from none runs first); a dict it returns joins the results.
    stages: tuple[Phase, ...] = ()
    prompt_format: str = ""  # how a prompt and its answer are written, in a few sentences (for the model card)

    # ---- data ----------------------------------------------------------------------------------------------------
    @staticmethod
    def check_data(data: Any) -> None:
        """Raise a one-line error when the domain's data cannot be read (before anything is written)."""

    @classmethod
    def check_reward(cls, name: str, data: Any) -> None:
        """Raise a one-line error when the named reward cannot score this data (e.g. a reward of the user's own
        that fails on a true next state); after `check_data`, before anything is written."""

    @staticmethod
    def prepare(data: Any) -> None:
        """Make the data exist (e.g. collect or simulate it once into the cache); after the checks, before training
        (where `stages` holds a `collect_stage`) and before an export."""

    @staticmethod
    def describe(data: Any) -> dict:
        """What the results should say about the data used."""
        return {}

    @staticmethod
    def make_tokenizer(data: Any, vocab_size: int):
        """A tokenizer trained (or built) for this data."""
        raise NotImplementedError

    @staticmethod
    def load_tokenizer(path):
        """A tokenizer saved with `save_pretrained`."""
        raise NotImplementedError

    def examples(self, split: str, stage: str = "", seed: int = 0) -> list[Example]:
        """The examples of a split ("train" or "test"); `stage` ("mle", "rl") may select differently."""
        raise NotImplementedError

    # ---- predictions ---------------------------------------------------------------------------------------------
    def decode(self, response_ids: Sequence[int]) -> Any:
        """Response token ids -> the domain's prediction (never raises)."""
        raise NotImplementedError

    def score(self, reward: str, response_ids: Sequence[int], example: Example) -> tuple[float, dict[str, float]]:
        """Decode the response and score it with the named reward (never raises)."""
        raise NotImplementedError

    def answer_kind(self, response_ids: Sequence[int], example: Example) -> str:
        """What a response predicts: "no_change", a "change", or nothing readable ("invalid"); for an example with
        a trivial answer (`Example.trivial_ids`). By default its ids are compared with the trivial answer's."""
        return "no_change" if list(response_ids) == list(example.trivial_ids or ()) else "change"

    def card_example(self, example: Example) -> dict[str, str] | None:
        """An example as a model card shows it: {"prompt", "answer", "nothing changes"} as text; None where the
        prompts are not text."""
        return None

    def token_rewards(self, reward: str, response_ids: Sequence[int], example: Example) -> list[float]:
        """The reward split over the response's tokens (their mean is the reward), for `RLConfig.credit = "token"`."""
        raise NotImplementedError

    # ---- results -------------------------------------------------------------------------------------------------
    def finish(self, stage: StageContext, test, mle_model, rl_model, mle_eval: dict, rl_eval: dict) -> dict:
        """A stage of the domain's own after both evaluations (e.g. the video domain's real footage), run where
        `stages` holds a `finish_stage`; what it returns is added to the results."""
        return {}

    @staticmethod
    def notes_markdown(res: dict) -> str:
        """Markdown to add below the results table (e.g. what the answers were); empty for none."""
        return ""

    @staticmethod
    def markdown(res: dict) -> str | None:
        """The results as Markdown, for a domain whose results are not one table of groups (None: that table)."""
        return None

    @staticmethod
    def compare_models(a: dict, b: dict) -> dict | None:
        """Paired tests of model b against model a on the same examples (their evaluations, with records), for a
        domain that reports several metrics; None: the metric alone is tested."""
        return None

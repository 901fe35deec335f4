"""The ByteSized32 text-game domain: predict the next game state as a JSON difference."""

from __future__ import annotations

from ...engine.domain import finish_stage
from ...engine.evaluate import trivial_eval
from ..textdomain import TextDomain
from . import reward
from .data import Transition, load_split, select_games
from .options import TextGameData
from .serialize import prompt_text, target_text, trivial_text




class TextGameDomain(TextDomain):
    """Serialises transitions into token ids and scores decoded responses."""

    name = "textgame"
    data_options = TextGameData
    rewards = reward.REWARDS
    transition_type = Transition  # what a reward scores against (a dataclass of JSON values)
    metric = "binary"  # exact-state accuracy, the benchmark's metric
    metric_label = "exact-state accuracy"
    prompt_format = ("The prompt is the lines `task: `, `action: `, `score: ` (JSON), `uuid base: ` (the number new "
                     "objects count up from), `objects:`, one compact JSON object a line, and `next:`. The answer is "
                     "the JSON difference `{\"modified\":[objects that changed or appeared],\"removed\":[uuids],"
                     "\"score\":{...}}`, `score` empty when the score does not change.")
    columns = ("unchanged", "changed", "overall")  # of the results table
    binary_metric = True  # 0/1 per example (McNemar's test) or graded (Wilcoxon's)
    reported_parts = ()  # reward parts averaged into the results besides the metric
    stages = (finish_stage(),)  # what the greedy answers were (`finish`)
    # facts from the RLVR-World paper (text game, 1.5B model, task-specific reward) and its GPT-4 baseline; their
    # overall is the whole test split's (0.59 x unchanged + 0.41 x changed in every row), our column split_mix
    reference = {
        "paper 1.5B MLE": {"unchanged": 38.9, "changed": 24.2, "split_mix": 32.9},
        "paper 1.5B RLVR": {"unchanged": 83.7, "changed": 33.8, "split_mix": 63.2},
        "GPT-4 (benchmark paper)": {"split_mix": 64.8},
    }

    def __init__(self, tokenizer, data: TextGameData | None = None):
        super().__init__(tokenizer, data or TextGameData())

    @staticmethod
    def check_data(data: TextGameData) -> None:
        """Read both splits once, so bad data fails before anything is written."""
        TextGameDomain.transitions("train", data)
        TextGameDomain.transitions("test", data)

    @staticmethod
    def describe(data: TextGameData) -> dict:
        return {"games": data.games or "all"}

    @staticmethod
    def transitions(split: str, data: TextGameData) -> list[Transition]:
        path = data.train_path if split == "train" else data.test_path
        return select_games(load_split(split, path), data.games)

    prompt_text = staticmethod(prompt_text)
    target_text = staticmethod(target_text)
    trivial_text = staticmethod(trivial_text)

    @staticmethod
    def kind_of(text: str, t: Transition) -> str:
        kind = reward.answer_kind(text)
        return "change" if kind == "attempted" else kind

    # ---- results -------------------------------------------------------------------------------------------------
    def finish(self, stage, test, mle_model, rl_model, mle_eval: dict, rl_eval: dict) -> dict:
        """Each model's accuracy per game and its mean over the games (`per_game`)."""
        trivial = trivial_eval(self, test)["records"]
        games = [e.payload.game for e in test]
        return {"per_game": {key: per_game(records, games)
                             for key, records in (("mle", mle_eval["records"]), ("rlvr", rl_eval["records"]),
                                                  ("trivial", trivial))}}

    @staticmethod
    def notes_markdown(res: dict) -> str:
        games = res.get("per_game")
        if not games:
            return ""
        return ("Mean over the games of each game's accuracy on these transitions (how the benchmark's tables "
                f"average; {games['mle']['n_games']} game{'s' if games['mle']['n_games'] != 1 else ''}): " + ", ".join(
                    f"{name} {games[key]['mean_over_games']}" for name, key in
                    (("MLE", "mle"), ("RLVR", "rlvr"), ("trivial", "trivial"))) + ".\n")


def per_game(records: list[dict], games: list[str]) -> dict:
    """Accuracy (%) per game of the records (`index` into `games`) and its mean over the games."""
    by_game: dict[str, list[float]] = {}
    for r in records:
        by_game.setdefault(games[r["index"]], []).append(float(r["value"]))
    acc = {g: 100.0 * sum(v) / len(v) for g, v in sorted(by_game.items())}
    return {"mean_over_games": round(sum(acc.values()) / max(1, len(acc)), 4), "n_games": len(acc),
            "games": {g: round(a, 2) for g, a in acc.items()}}

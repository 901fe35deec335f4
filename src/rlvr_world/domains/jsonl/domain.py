"""Bring your own transitions: a world model of any environment whose states are text or JSON objects.

`rlvr-world run --domain jsonl --data.train-path train.jsonl --data.test-path test.jsonl`
reads `{"state": ..., "action": ..., "next_state": ...}` records (`records`),
trains on them with no code, and reports exact-match accuracy on the test
file, on the transitions that change the state and on those that do not.
RL optimises `--rl.reward`: `exact`, `field_accuracy`, `diff_f1` (default),
`line_f1`, or `module:function`, a reward of your own.
"""

from __future__ import annotations

from ..textdomain import TextDomain
from .options import JsonlData
from .records import (REWARDS, DataError, Record, RewardTable, check_user_reward, kind_of, prompt_text, read_records,
                      target_text, trivial_text)

__all__ = ["DataError", "JsonlData", "JsonlDomain"]




class JsonlDomain(TextDomain):
    """Serialises records into token ids and scores decoded predictions."""

    name = "jsonl"
    data_options = JsonlData
    rewards = RewardTable(REWARDS)
    transition_type = Record  # what a reward scores against (a dataclass of JSON values)
    metric = "exact"
    metric_label = "exact-match accuracy"
    prompt_format = ("The prompt is `state:`, the state on the next line (a JSON object as compact JSON, or the "
                     "string itself), `action: ` and the action, then `next:`, each line ending in a newline. The "
                     "answer to a JSON-object state is the difference of its top-level fields, "
                     "`{\"set\":{field:new value,...},\"unset\":[removed field,...]}`, applied to the state to get "
                     "the next one; to a string state, the whole next state.")
    columns = ("unchanged", "changed", "overall")  # of the results table
    binary_metric = True  # 0/1 per example (McNemar's test)
    reported_parts = ()
    reference: dict = {}

    def __init__(self, tokenizer, data: JsonlData | None = None):
        super().__init__(tokenizer, data or JsonlData())

    @staticmethod
    def check_data(data: JsonlData) -> None:
        """Both files given, readable and of one kind of state, before anything is written."""
        for option, path in (("--data.train-path", data.train_path), ("--data.test-path", data.test_path)):
            if not path:
                raise DataError(f"the jsonl domain needs {option} (a JSON-lines file of state, action, next_state)")
        train, test = read_records(data.train_path), read_records(data.test_path)
        if train[0].structured != test[0].structured:
            raise DataError("the train and test files hold different kinds of states (strings and JSON objects)")

    @classmethod
    def check_reward(cls, name: str, data: JsonlData) -> None:
        reward = cls.rewards[name]
        if hasattr(reward, "raw"):  # a reward of the user's own
            check_user_reward(reward, read_records(data.train_path))

    @staticmethod
    def describe(data: JsonlData) -> dict:
        return {"train": data.train_path, "test": data.test_path}

    @staticmethod
    def transitions(split: str, data: JsonlData) -> list[Record]:
        return read_records(data.train_path if split == "train" else data.test_path)

    prompt_text = staticmethod(prompt_text)
    target_text = staticmethod(target_text)
    trivial_text = staticmethod(trivial_text)
    kind_of = staticmethod(kind_of)

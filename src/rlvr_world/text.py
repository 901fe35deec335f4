"""Language-model plumbing shared by the text domains: a byte-level BPE tokenizer.

The tokenizer is trained with the `tokenizers` library on a domain's training
texts and saved next to the model (`save_pretrained`), so a checkpoint
directory is self-contained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"


def train_bpe(texts: Iterable[str], vocab_size: int, split_digits: bool = False) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with pad/bos/eos specials, trained on `texts`.

    With `split_digits` every digit is a token of its own (as in Llama and
    Qwen), so a number is the same token sequence wherever it appears; merged
    digits make "[645]" one split in a page line and another after a space.
    """
    tok = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.pre_tokenizer = (pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
                         if split_digits else byte_level)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, bos_token=BOS, eos_token=EOS)


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    p = Path(path)
    if not (p / "tokenizer.json").is_file():
        raise FileNotFoundError(f"no tokenizer.json in {p}")
    return PreTrainedTokenizerFast.from_pretrained(str(p), local_files_only=True)

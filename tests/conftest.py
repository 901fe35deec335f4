import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)


def save_tiny_text_model(out, texts, vocab_size: int, max_positions: int, split_digits: bool = False):
    """A random 2-layer Llama (hidden 32) and a BPE tokenizer trained on `texts`, saved together in `out`."""
    from rlvr_world.engine.models import ModelConfig, build
    from rlvr_world.text import train_bpe

    tok = train_bpe(texts, vocab_size, split_digits=split_digits)
    torch.manual_seed(0)
    model = build(ModelConfig(hidden_size=32, num_layers=2, num_heads=2, max_positions=max_positions), len(tok),
                  pad_id=tok.pad_token_id, bos_id=tok.bos_token_id, eos_id=tok.eos_token_id)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture
def tiny_lm():
    """A random 2-layer Llama with a 50-token vocabulary (fp32)."""
    from rlvr_world.engine.models import ModelConfig, build

    torch.manual_seed(0)
    model = build(ModelConfig(hidden_size=32, num_layers=2, num_heads=2, max_positions=256), 50,
                  pad_id=0, bos_id=1, eos_id=2)
    return model.eval()

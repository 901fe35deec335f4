import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)


@pytest.fixture
def tiny_lm():
    """A random 2-layer Llama with a 50-token vocabulary (fp32)."""
    from rlvr_world.engine.models import ModelConfig, build

    torch.manual_seed(0)
    model = build(ModelConfig(hidden_size=32, num_layers=2, num_heads=2, max_positions=256), 50, pad_id=0, bos_id=1, eos_id=2)
    return model.eval()

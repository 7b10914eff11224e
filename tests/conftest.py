import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def tiny():
    """A tiny random LoRA policy with the byte tokenizer."""
    from reasonrl.config import LoraConfig, ModelConfig
    from reasonrl.model import load_policy
    return load_policy(ModelConfig(path="tiny:llama", dtype="float32"), LoraConfig(rank=4))

import atexit
import os
import shutil
import tempfile

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Cached start evaluations (eval.before=auto) go to a directory of this test session's own (subprocesses too),
# so no test reuses one from another session or from the user's runs.
os.environ["REASONRL_EVAL_CACHE"] = tempfile.mkdtemp(prefix="reasonrl-test-evals-")
atexit.register(shutil.rmtree, os.environ["REASONRL_EVAL_CACHE"], True)
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def tiny():
    """A tiny random LoRA policy with the byte tokenizer."""
    from reasonrl.config import LoraConfig, ModelConfig
    from reasonrl.model import load_policy

    return load_policy(ModelConfig(path="tiny:llama", dtype="float32"), LoraConfig(rank=4))

"""model.dtype=auto: bfloat16 where bf16 products are native (GPU, AVX-512 CPUs), float32 on other CPUs."""

import pytest
import torch

from reasonrl.config import load_config
from reasonrl.config.dtype import auto_dtype, resolve_auto_dtype, slow_bf16_warning
from reasonrl.model import torch_dtype


@pytest.fixture
def cpu(monkeypatch):
    """Pretend this CPU dispatches with the given capability (and there is no GPU)."""

    def pretend(capability: str) -> None:
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    return pretend


@pytest.mark.parametrize(
    ("capability", "dtype"),
    [("AVX512", "bfloat16"), ("AVX2", "float32"), ("DEFAULT", "float32"), ("SVE256", "float32")],
)
def test_auto_picks_bfloat16_only_where_the_cpu_multiplies_it_natively(cpu, capability, dtype):
    cpu(capability)
    assert auto_dtype("cpu") == dtype
    data = {"model": {"path": "tiny:llama"}}
    resolve_auto_dtype(data)
    assert data["model"]["dtype"] == dtype
    assert load_config(None, ["model.path=tiny:llama"]).model.dtype == dtype  # the default is auto
    assert load_config(None, ["model.dtype=auto"]).model.dtype == dtype


def test_an_explicit_dtype_is_kept_and_bfloat16_on_an_emulating_cpu_warns(cpu, capsys):
    cpu("AVX2")
    cfg = load_config(None, ["model.path=tiny:llama", "model.dtype=bfloat16"])
    assert cfg.model.dtype == "bfloat16"
    assert load_config(None, ["model.dtype=float32"]).model.dtype == "float32"
    warning = slow_bf16_warning("bfloat16", "cpu")
    assert warning is not None and "AVX2" in warning and "model.dtype=auto" in warning
    assert slow_bf16_warning("float32", "cpu") is None
    cpu("AVX512")
    assert slow_bf16_warning("bfloat16", "cpu") is None


def test_gpu_gets_bfloat16_when_it_supports_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert auto_dtype("cuda") == auto_dtype("cuda:1") == auto_dtype("auto") == "bfloat16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert auto_dtype("cuda") == "float32"


def test_the_run_config_records_the_resolved_dtype(cpu, tmp_path):
    from reasonrl.config import save_config

    cpu("AVX2")
    cfg = load_config(None, ["model.path=tiny:llama"])
    save_config(cfg, tmp_path / "config.yaml")
    assert "dtype: float32" in (tmp_path / "config.yaml").read_text()
    from reasonrl.config import ModelConfig

    assert torch_dtype(ModelConfig(path="tiny:llama", dtype="auto")) == torch.float32

"""The memory plan: parameter and activation counts against real models, the verdict, --fit, the CLI, and the
refusal at the start of a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from reasonrl.cli import main
from reasonrl.config import load_config
from reasonrl.plan import GiB, Arch, Device, fit, make_plan, parse_device, plan_for, resolve_arch, saved_bytes
from reasonrl.plan.table import ARCHS, arch_key

# distinct sizes, so a term counted with the wrong width shows
H, INTER, NH, KV, HD, V, R = 40, 88, 4, 2, 24, 101, 8


def tiny_hf(model_type: str, layers: int = 3, tied: bool = False) -> torch.nn.Module:
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(
        model_type,
        vocab_size=V,
        hidden_size=H,
        intermediate_size=INTER,
        num_hidden_layers=layers,
        num_attention_heads=NH,
        num_key_value_heads=KV,
        head_dim=HD,
        tie_word_embeddings=tied,
    )
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32)


def arch_of(model: torch.nn.Module) -> Arch:
    return Arch.from_config(model.config.to_dict(), "test")


def saved_tensor_bytes(model: torch.nn.Module, tokens: torch.Tensor, mask: torch.Tensor, groups) -> int:
    """Bytes of the distinct storages autograd saves in a forward pass (parameters excluded)."""
    from reasonrl.model import policy_logprobs

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        policy_logprobs(model, tokens, mask, groups, 1.0)
    return sum(saved.values())


@pytest.mark.parametrize("model_type", ["llama", "qwen2", "qwen3"])
@pytest.mark.parametrize("lora", [True, False])
@pytest.mark.parametrize("path", ["plain", "shared"])
def test_saved_activations_match_a_real_forward(model_type: str, lora: bool, path: str) -> None:
    from peft import LoraConfig, get_peft_model

    model = tiny_hf(model_type)
    arch = arch_of(model)
    if lora:
        model = get_peft_model(model, LoraConfig(r=R, lora_alpha=32, target_modules="all-linear"))
    rows, prompt, completion, group = 6, 9, 7, 3
    tokens = torch.randint(3, V, (rows, prompt + completion))
    mask = torch.zeros(rows, prompt + completion - 1, dtype=torch.bool)
    mask[:, prompt - 1 :] = True
    groups = torch.arange(rows) // group if path == "shared" else None
    real = saved_tensor_bytes(model, tokens, mask, groups)
    planned, scored = saved_bytes(arch, 4, R if lora else None, rows, prompt, completion, group, path)
    planned += scored * V * 4  # the logits, which TokenLogprobs keeps
    assert planned == pytest.approx(real, rel=0.03), (real, planned)


def test_checkpointing_keeps_each_layers_input() -> None:
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_hf("llama", layers=4), LoraConfig(r=R, lora_alpha=32, target_modules="all-linear"))
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    arch = arch_of(model.get_base_model())
    rows, length = 4, 12
    tokens = torch.randint(3, V, (rows, length + 1))
    real = saved_tensor_bytes(model, tokens, torch.ones(rows, length, dtype=torch.bool), None)
    planned, scored = saved_bytes(arch, 4, R, rows, length + 1, 0, 1, "checkpointed")
    recompute = rows * length * (arch.saved_per_token(4, R) + 2 * arch.kv * 4)  # one layer, during the backward
    assert planned - recompute + scored * V * 4 == pytest.approx(real, rel=0.05)


@pytest.mark.parametrize("model_type,tied", [("llama", False), ("qwen2", True), ("qwen3", True)])
def test_parameter_counts_match_the_model(model_type: str, tied: bool) -> None:
    from peft import LoraConfig, get_peft_model

    model = tiny_hf(model_type, tied=tied)
    arch = arch_of(model)
    assert arch.params() == sum(p.numel() for p in model.parameters())
    peft = get_peft_model(model, LoraConfig(r=R, lora_alpha=32, target_modules="all-linear"))
    assert arch.lora_params(R, "all-linear") == sum(p.numel() for p in peft.parameters() if p.requires_grad)


@pytest.mark.parametrize("key", sorted(ARCHS))
def test_table_architectures_count_like_transformers(key: str) -> None:
    """Every shipped shape, built on the meta device (no memory): the same parameter count."""
    from transformers import AutoModelForCausalLM

    from reasonrl.plan.table import hf_config

    config = hf_config(key)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    assert Arch.from_table(key).params() == sum(p.numel() for p in model.parameters())


def test_arch_names_and_devices() -> None:
    assert arch_key("Qwen/Qwen2.5-7B-Instruct") == "qwen2.5-7b"
    assert arch_key("/models/Llama-3.1-8B-Instruct/") == "llama-3.1-8b"
    assert arch_key("/models/my-model") is None
    cfg = load_config(None, ["model.path=tiny:llama"])
    assert parse_device("cuda:80GB", cfg) == Device("cuda", 80 * GiB, "cuda with 80 GiB")
    assert parse_device("cpu:0.5", cfg).capacity == GiB // 2
    assert parse_device("cpu", cfg).capacity > 0
    with pytest.raises(ValueError, match="expected cpu, cuda"):
        parse_device("tpu", cfg)
    with pytest.raises(ValueError, match="--arch"):
        resolve_arch(load_config(None, ["model.path=/nowhere/my-model"]))
    assert resolve_arch(load_config(None, ["model.path=/nowhere/Qwen3-8B"])).name == "qwen3-8b"


def test_plan_grows_with_the_batch_and_shrinks_with_checkpointing() -> None:
    base = ["model.path=/nowhere/qwen2.5-1.5b", "model.dtype=bfloat16", "optim.micro_batch_tokens=null"]
    device = Device("cuda", 80 * GiB, "test")
    arch = Arch.from_table("qwen2.5-1.5b")

    def update(*extra: str) -> int:
        return make_plan(load_config(None, [*base, *extra]), device, arch, 200).phase_peak("update")

    assert update("optim.micro_batch_size=8") > update("optim.micro_batch_size=4")
    assert update("optim.micro_batch_size=8", "model.gradient_checkpointing=true") < update("optim.micro_batch_size=8")
    assert update("lora.enabled=false") > update()  # gradients and AdamW state of every weight


def test_fit_picks_settings_that_fit_and_says_when_nothing_does() -> None:
    cfg = load_config(None, ["model.path=/nowhere/qwen2.5-7b", "model.dtype=bfloat16", "optim.micro_batch_size=32"])
    arch = Arch.from_table("qwen2.5-7b")
    small = Device("cuda", 24 * GiB, "24 GiB")
    assert not make_plan(cfg, small, arch, 256).fits
    found = fit(cfg, small, arch, 256)
    assert found is not None
    overrides, plan = found
    assert plan.fits and plan.peak <= 0.9 * small.capacity
    assert overrides["engine.hf.merge_lora"] is False  # the merged copy of 7B weights did not fit beside them
    assert fit(cfg, Device("cuda", 8 * GiB, "8 GiB"), arch, 256) is None  # 14 GiB of weights


def test_cli_plan_prints_the_parts_and_writes_a_fitted_recipe(tmp_path: Path, capsys) -> None:
    out = tmp_path / "fitted.yaml"
    main(["plan", "model.path=tiny:llama", "--device", "cpu:4GB", "--fit", "--out", str(out)])
    text = capsys.readouterr().out
    for part in ("base weights", "LoRA + grads + AdamW", "KV cache", "activations", "peak in update", "fits"):
        assert part in text
    cfg = load_config(out)
    assert cfg.optim.micro_batch_tokens is not None and cfg.model.path == "tiny:llama"
    with pytest.raises(SystemExit) as stop:
        main(["plan", "model.path=tiny:llama", "--device", "cpu:0.1GB"])
    assert stop.value.code == 1
    assert "does NOT fit" in capsys.readouterr().out


def test_a_run_that_does_not_fit_stops_before_writing(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr("reasonrl.plan.model.available_memory", lambda: GiB // 10)
    with pytest.raises(SystemExit) as stop:
        main(["train", "model.path=tiny:llama", "task.name=arithmetic", f"output_dir={tmp_path}", "name=big"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "memory plan's peak" in err and "memory_check=warn" in err
    assert not (tmp_path / "big").exists()


def test_plan_json_of_grid_script_is_importable() -> None:
    """bench/plan_grid.py's point list names only known shapes and recipes that load."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("plan_grid", Path(__file__).parents[2] / "bench" / "plan_grid.py")
    grid = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(grid)
    for name, *_ in grid.GRID:
        assert name in ("tiny:llama", "bundled") or name.removeprefix("shape:") in ARCHS
    assert json.loads(json.dumps(grid.overrides(grid.GRID[0], "cpu", 1)))[0] == "model.path=tiny:llama"
    cfg = load_config(None, grid.overrides(grid.GRID[0], "cpu", 1))
    assert plan_for(cfg, "cpu:100").fits


def test_out_of_memory_names_the_phase_and_the_prediction() -> None:
    from reasonrl.errors import RunFailure
    from reasonrl.plan import named_phase

    cfg = load_config(None, ["model.path=tiny:llama", "task.name=arithmetic"])
    with pytest.raises(RunFailure, match=r"out of memory in the update phase of step 3 .*predicted a peak of"):
        with named_phase(cfg, "update", 2):
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")
    with pytest.raises(ValueError, match="not memory"):  # other errors pass through untouched
        with named_phase(cfg, "update", 2):
            raise ValueError("not memory")

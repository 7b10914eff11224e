"""Typed, frozen run configuration: defaults < YAML recipe < dotted CLI overrides, validated once at load.

    cfg = load_config("recipes/quickstart.yaml", ["algo.kl.coef=0.01", "lora.rank=8"])

Unknown keys fail with the closest valid key, wrong types name the field, and every registry name (advantage,
loss, engine, environment, task, rewards) is looked up at load, so a typo fails before anything starts. The
resolved config is written into every run directory (config.yaml) and is what `--resume` reloads.

One module per part of the run, each importing only the sections it needs:
    model.py   model.*, lora.*              task.py    task.*, rewards.*, env.*
    engine.py  sampling.*, engine.*         optim.py   optim.*, eval.*
    algo.py    algo.* (losses, kl, critic)  stages.py  forget.*, log.*, sft.*, pretrain.*
    run.py     RunConfig, load_config       names.py   registry names resolved at load
    placement.py  placement.* (local or Ray)
"""

from reasonrl.config.algo import (
    AlgoConfig,
    CISPOLoss,
    CriticConfig,
    DynamicSamplingConfig,
    GSPOLoss,
    KLConfig,
    OverlongConfig,
    PolicyLossConfig,
    PPOClipLoss,
    ReinforceLoss,
)
from reasonrl.config.engine import EngineConfig, HFConfig, SamplingConfig, VLLMConfig
from reasonrl.config.model import LoraConfig, ModelConfig
from reasonrl.config.optim import EvalConfig, OptimConfig
from reasonrl.config.placement import PlacementConfig
from reasonrl.config.run import RunConfig, apply_overrides, load_config, save_config
from reasonrl.config.stages import (
    SINKS,
    ForgetConfig,
    LogConfig,
    PretrainConfig,
    RMConfig,
    SFTConfig,
)
from reasonrl.config.task import FILE_TASKS, EnvConfig, RewardConfig, TaskConfig
from reasonrl.utils.config_io import build, config_to_dict

__all__ = [
    "FILE_TASKS",
    "SINKS",
    "AlgoConfig",
    "CISPOLoss",
    "CriticConfig",
    "DynamicSamplingConfig",
    "EngineConfig",
    "EnvConfig",
    "EvalConfig",
    "ForgetConfig",
    "GSPOLoss",
    "HFConfig",
    "KLConfig",
    "LogConfig",
    "LoraConfig",
    "ModelConfig",
    "OptimConfig",
    "OverlongConfig",
    "PPOClipLoss",
    "PlacementConfig",
    "PolicyLossConfig",
    "PretrainConfig",
    "ReinforceLoss",
    "RewardConfig",
    "RunConfig",
    "RMConfig",
    "SFTConfig",
    "SamplingConfig",
    "TaskConfig",
    "VLLMConfig",
    "apply_overrides",
    "build",
    "config_to_dict",
    "load_config",
    "save_config",
]

"""Metric sinks: metrics.jsonl always, TensorBoard and W&B (offline) when log.sinks names them; config checks."""

import importlib.util
import json
from pathlib import Path

import pytest

from reasonrl.config import load_config
from reasonrl.utils import log
from reasonrl.utils.log import MetricSinks, finite_scalars

has_tensorboard = importlib.util.find_spec("tensorboard") is not None
has_wandb = importlib.util.find_spec("wandb") is not None


def config(tmp_path: Path, *sinks: str):
    return load_config(None, [f"output_dir={tmp_path}", "name=run", f"log.sinks=[{', '.join(sinks)}]"])


def test_unknown_sink_is_rejected_when_the_config_loads(tmp_path):
    with pytest.raises(ValueError, match="unknown sink 'tensorbord'; known: tensorboard, wandb"):
        config(tmp_path, "tensorbord")


def test_finite_scalars_drops_nan_inf_bools_and_text():
    metrics = {"a": 1, "b": 0.5, "c": float("nan"), "d": float("inf"), "e": True, "f": "x", "g": None}
    assert finite_scalars(metrics) == {"a": 1.0, "b": 0.5}


def test_jsonl_is_always_written_and_nan_becomes_null(tmp_path):
    sinks = MetricSinks(tmp_path, config(tmp_path), start=0)
    sinks.log(1, {"rollout/reward": 0.5, "loss/kl": float("nan")})
    sinks.close()
    assert [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [
        {"step": 1, "rollout/reward": 0.5, "loss/kl": None}
    ]
    assert len(sinks.sinks) == 1


def test_a_missing_sink_package_names_the_install(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(log.importlib.util, "find_spec", lambda name: None if name == "wandb" else real(name))
    with pytest.raises(ValueError, match="pip install wandb"):
        MetricSinks(tmp_path, config(tmp_path, "wandb"), start=0)
    assert not (tmp_path / "metrics.jsonl").exists()


@pytest.mark.skipif(not has_tensorboard, reason="the tensorboard package is not installed (pip install tensorboard)")
def test_tensorboard_events_read_back_and_a_resume_replaces_the_steps_after_its_checkpoint(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sinks = MetricSinks(tmp_path, config(tmp_path, "tensorboard"), start=0)
    for step in range(1, 5):
        sinks.log(step, {"rollout/reward": float(step), "loss/kl": float("nan")})
    sinks.close()
    resumed = MetricSinks(tmp_path, config(tmp_path, "tensorboard"), start=2)  # checkpoint at step 2
    for step in (3, 4):
        resumed.log(step, {"rollout/reward": 10.0 * step})
    resumed.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert events.Tags()["scalars"] == ["rollout/reward"]
    assert [(e.step, e.value) for e in events.Scalars("rollout/reward")] == [(1, 1.0), (2, 2.0), (3, 30.0), (4, 40.0)]


@pytest.mark.skipif(
    not has_wandb,
    reason="the wandb package is not installed (pip install wandb); the sink was "
    "checked by hand against wandb 0.31.0 offline",
)
def test_wandb_offline_run_is_written_locally_and_resumed_with_the_same_id(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    sinks = MetricSinks(tmp_path, config(tmp_path, "wandb"), start=0)
    sinks.log(0, {"eval/accuracy": 0.25, "bad": float("nan")})
    first_id = sinks.sinks[1].run.id
    sinks.close()
    resumed = MetricSinks(tmp_path, config(tmp_path, "wandb"), start=1)
    resumed.log(2, {"rollout/reward": 0.5})
    assert resumed.sinks[1].run.id == first_id == (tmp_path / "wandb" / "run_id").read_text()
    resumed.close()
    records = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(records) == 2
    assert any(b"eval/accuracy" in r.read_bytes() for r in records)
    assert any(b"rollout/reward" in r.read_bytes() for r in records)

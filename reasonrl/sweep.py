"""`reasonrl sweep RECIPE --space SPACE.yaml`: a hyperparameter search on Optuna, each trial an ordinary run.

    reasonrl sweep recipes/quickstart.yaml --space recipes/sweeps/lr_rank.yaml --trials 8 [overrides]
    reasonrl sweep recipes/quickstart.yaml --space ... --resume      # after a crash or Ctrl-C

The space file (YAML):
    objective: eval/accuracy        # any metric logged at evaluations (default eval/accuracy)
    direction: maximize             # or minimize
    params:                         # any dotted config key
      optim.lr: {type: float, low: 5.0e-5, high: 5.0e-4, log: true}
      lora.rank: {type: int, low: 4, high: 32, step: 4}
      algo.loss.clip_high: {type: categorical, choices: [0.2, 0.28]}
    enqueue: [{optim.lr: 2.0e-4, lora.rank: 16}]   # tried first, e.g. the recipe's own values
    kl_budget: 0.5                  # optional: stop a trial whose forget/kl_forward exceeds it (forget.enabled)

The sweep directory <output_dir>/<name> holds sweep.db (Optuna's study in SQLite, unless --storage names an
RDB such as postgresql://... that several processes or machines share), the space, trials/trial_NNN (each a
run directory with its report and adapter) and trials.json. Trials report every evaluation of the objective to
Optuna's pruner (median by default, hyperband, or none), which stops the hopeless ones; those end PRUNED, a
trial whose run raises ends FAIL with its error, and the sweep goes on. --resume continues the study: a trial
left RUNNING by a process that is gone (same host) is resumed from its last checkpoint, not run again.
"""

from __future__ import annotations

import json
import math
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from reasonrl.config import RunConfig, apply_overrides
from reasonrl.utils.files import atomic_write_text
from reasonrl.utils.log import read_metrics

if TYPE_CHECKING:
    import optuna

KINDS = ("float", "int", "categorical")


@dataclass
class Space:
    params: dict[str, dict[str, Any]]
    objective: str = "eval/accuracy"
    direction: str = "maximize"
    enqueue: list[dict[str, Any]] = field(default_factory=list)
    kl_budget: float | None = None


def load_space(path: str, cfg: RunConfig) -> Space:
    """Read and check a space file: every key must be a config key that takes the values it ranges over."""
    where = Path(path)
    if not where.is_file():
        raise ValueError(f"--space {path}: no such file; write one (see docs/tuning.md)")
    raw = yaml.safe_load(where.read_text()) or {}
    unknown = set(raw) - {"params", "objective", "direction", "enqueue", "kl_budget"}
    if not isinstance(raw.get("params"), dict) or not raw["params"] or unknown:
        raise ValueError(
            f"{path}: expected a mapping with params (and optionally objective, direction, enqueue, kl_budget)"
            + (f"; unknown keys: {', '.join(sorted(unknown))}" if unknown else "")
        )
    space = Space(**raw)
    if space.direction not in ("maximize", "minimize"):
        raise ValueError(f"{path}: direction must be maximize or minimize, got {space.direction!r}")
    if space.kl_budget is not None and not cfg.forget.enabled:
        raise ValueError(f"{path}: kl_budget needs the forgetting monitor: add forget.enabled=true")
    for key, spec in space.params.items():
        kind = spec.get("type") if isinstance(spec, dict) else None
        if kind not in KINDS:
            raise ValueError(f"{path}: params.{key}: give type: float, int or categorical, got {spec!r}")
        needs = {"categorical": {"choices"}}.get(kind, {"low", "high"})
        if not needs <= set(spec):
            raise ValueError(f"{path}: params.{key} ({kind}) needs {', '.join(sorted(needs))}")
        for value in spec["choices"] if kind == "categorical" else [spec["low"], spec["high"]]:
            check_override(cfg, key, value, f"{path}: params.{key}")
    for i, row in enumerate(space.enqueue):
        for key, value in row.items():
            if key not in space.params:
                raise ValueError(f"{path}: enqueue[{i}].{key} is not in params")
            check_override(cfg, key, value, f"{path}: enqueue[{i}].{key}")
    return space


def check_override(cfg: RunConfig, key: str, value: Any, where: str) -> None:
    try:
        apply_overrides(cfg, [f"{key}={json.dumps(value)}"])
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


def as_choice(value: Any) -> Any:
    """Optuna stores categorical choices of None, bool, int, float and str; anything else (a dict of reward
    weights, a list) goes in as its JSON text and comes out decoded (suggest)."""
    return value if value is None or isinstance(value, bool | int | float | str) else json.dumps(value)


def decoded(space: Space, params: dict[str, Any]) -> dict[str, Any]:
    """A stored trial's params with JSON-encoded categorical choices turned back into their values."""
    out = dict(params)
    for key, value in params.items():
        spec = space.params.get(key, {})
        if spec.get("type") == "categorical":
            out[key] = next((c for c in spec["choices"] if as_choice(c) == value), value)
    return out


def suggest(trial: optuna.Trial, space: Space) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, spec in space.params.items():
        if spec["type"] == "float":
            out[key] = trial.suggest_float(key, spec["low"], spec["high"], log=bool(spec.get("log", False)))
        elif spec["type"] == "int":
            step, log = int(spec.get("step", 1)), bool(spec.get("log", False))
            out[key] = trial.suggest_int(key, int(spec["low"]), int(spec["high"]), step=step, log=log)
        else:
            choices = [as_choice(c) for c in spec["choices"]]
            encoded = [c for c, raw in zip(choices, spec["choices"]) if c is not raw]
            picked = trial.suggest_categorical(key, choices)
            out[key] = json.loads(picked) if picked in encoded else picked
    return out


def make_sampler(name: str, space: Space, seed: int) -> optuna.samplers.BaseSampler:
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        if any(spec["type"] != "categorical" for spec in space.params.values()):
            raise ValueError("--sampler grid needs every param to be categorical (give the grid's values as choices)")
        return optuna.samplers.GridSampler({k: s["choices"] for k, s in space.params.items()}, seed=seed)
    raise ValueError(f"--sampler {name!r}: one of tpe, random, grid")


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"--pruner {name!r}: one of median, hyperband, none")


def trial_config(cfg: RunConfig, sweep_dir: Path, number: int, params: dict[str, Any]) -> RunConfig:
    overrides = [f"{k}={json.dumps(v)}" for k, v in params.items()]
    return apply_overrides(cfg, [*overrides, f"output_dir={sweep_dir / 'trials'}", f"name=trial_{number:03d}"])


def owner_alive(attrs: dict[str, Any]) -> bool:
    """Whether the process that runs a trial still does (another host's trials are taken to be alive)."""
    from reasonrl.run import process_alive

    if attrs.get("host") != socket.gethostname():
        return True
    pid = attrs.get("pid")  # none: its process died before it recorded itself
    return isinstance(pid, int) and pid > 0 and pid != os.getpid() and process_alive(pid)


def run_trial(study: optuna.Study, trial: optuna.Trial, cfg: RunConfig, space: Space, resume: bool, quiet: bool) -> str:
    """Train one trial and tell Optuna how it ended: COMPLETE with the objective, PRUNED, or FAIL."""
    from optuna.trial import TrialState

    from reasonrl.train import train

    trial.set_user_attr("pid", os.getpid())
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("run_dir", str(Path(cfg.output_dir) / cfg.name))

    def watch(step: int, metrics: dict[str, float]) -> str | None:
        kl = metrics.get("forget/kl_forward")
        if space.kl_budget is not None and kl is not None and kl > space.kl_budget:
            return f"pruned by the sweep: forget/kl_forward {kl:.3g} > kl_budget {space.kl_budget:g}"
        value = metrics.get(space.objective)
        if value is None or not math.isfinite(value):
            return None
        trial.report(float(value), step)
        if trial.should_prune():
            return f"pruned by the sweep: {space.objective} {value:.4g} at step {step} (Optuna's pruner)"
        return None

    run_dir = Path(cfg.output_dir) / cfg.name
    try:
        if not (run_dir / "summary.json").is_file():  # else it finished before its process died: just tell
            train(cfg, resume=resume and (run_dir / "config.yaml").is_file(), quiet=quiet, watchers=[watch])
    except Exception as e:  # a crashing trial is recorded and the sweep goes on
        trial.set_user_attr("error", f"{type(e).__name__}: {e}")
        study.tell(trial.number, state=TrialState.FAIL)
        return f"trial {trial.number} failed: {type(e).__name__}: {e}"
    summary = json.loads((run_dir / "summary.json").read_text())
    if str(summary.get("stopped_early", "")).startswith("pruned by the sweep"):
        trial.set_user_attr("pruned", summary["stopped_early"])
        study.tell(trial.number, state=TrialState.PRUNED)
        return f"trial {trial.number} {summary['stopped_early']}"
    rows = [r for r in read_metrics(run_dir / "metrics.jsonl") if space.objective in r]
    if not rows:
        trial.set_user_attr("error", f"the run logged no {space.objective}")
        study.tell(trial.number, state=TrialState.FAIL)
        return f"trial {trial.number} failed: the run logged no {space.objective} (check objective)"
    value = float(rows[-1][space.objective])
    study.tell(trial.number, value)
    return f"trial {trial.number}: {space.objective} = {value:.4g}"


def open_study(
    cfg: RunConfig, space: Space, sweep_dir: Path, storage: str | None, resume: bool, sampler: str, pruner: str
) -> optuna.Study:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = storage or f"sqlite:///{sweep_dir / 'sweep.db'}"
    name = sweep_dir.name
    exists = name in optuna.get_all_study_names(url) if (storage or (sweep_dir / "sweep.db").exists()) else False
    if exists and not resume:
        raise ValueError(f"sweep {name!r} exists in {url}: continue it with --resume, or pick another --name")
    if resume and not exists:
        raise ValueError(f"--resume: no sweep {name!r} in {url}; start it without --resume")
    study = optuna.create_study(
        study_name=name,
        storage=url,
        load_if_exists=True,
        direction="maximize" if space.direction == "maximize" else "minimize",
        sampler=make_sampler(sampler, space, cfg.seed),
        pruner=make_pruner(pruner),
    )
    if not exists:
        for row in space.enqueue:
            study.enqueue_trial(
                {k: as_choice(v) if space.params[k]["type"] == "categorical" else v for k, v in row.items()}
            )
    return study


def sweep(
    cfg: RunConfig,
    space_file: str,
    trials: int,
    name: str | None = None,
    storage: str | None = None,
    resume: bool = False,
    sampler: str = "tpe",
    pruner: str = "median",
    quiet: bool = False,
) -> Path:
    """Run the sweep until it has `trials` finished trials (all processes sharing it together)."""
    try:
        import optuna
        from optuna.trial import TrialState
    except ImportError:
        raise ValueError("reasonrl sweep needs Optuna: pip install 'optuna>=5,<6' (or the tune extra)") from None

    if trials < 1:
        raise ValueError(f"--trials {trials}: give at least 1")
    space = load_space(space_file, cfg)
    make_sampler(sampler, space, cfg.seed), make_pruner(pruner)  # bad names fail before anything is written
    sweep_dir = Path(cfg.output_dir) / (name or f"{cfg.name}-sweep")
    sweep_dir.mkdir(parents=True, exist_ok=True)
    study = open_study(cfg, space, sweep_dir, storage, resume, sampler, pruner)
    atomic_write_text(sweep_dir / "space.yaml", Path(space_file).read_text())
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if owner_alive(frozen.user_attrs):
            continue
        trial = optuna.trial.Trial(study, frozen._trial_id)  # the dead process's trial: finish it, do not redo it
        print(f"resuming trial {frozen.number} (its process is gone)", flush=True)
        print(
            run_trial(
                study,
                trial,
                trial_config(cfg, sweep_dir, frozen.number, decoded(space, frozen.params)),
                space,
                True,
                quiet,
            )
        )
    started = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)  # not WAITING (enqueued)
    while len(study.get_trials(deepcopy=False, states=started)) < trials:
        trial = study.ask()
        params = suggest(trial, space)
        print(f"trial {trial.number}: {json.dumps(params)}", flush=True)
        print(run_trial(study, trial, trial_config(cfg, sweep_dir, trial.number, params), space, False, quiet))
    write_trials(study, sweep_dir, space)
    return sweep_dir


def write_trials(study: optuna.Study, sweep_dir: Path, space: Space) -> None:
    """trials.json and the table, best first."""
    from optuna.trial import TrialState

    rows: list[dict[str, Any]] = [
        {
            "number": t.number,
            "state": t.state.name,
            "value": t.value,
            "params": decoded(space, t.params),
            "run_dir": t.user_attrs.get("run_dir"),
            "note": t.user_attrs.get("error") or t.user_attrs.get("pruned"),
            "intermediate": {str(k): v for k, v in t.intermediate_values.items()},
        }
        for t in study.get_trials(deepcopy=False)
        if t.state != TrialState.WAITING
    ]
    sign = -1 if space.direction == "maximize" else 1
    rows.sort(key=lambda r: (r["value"] is None, sign * (r["value"] or 0.0), r["number"]))
    out = {"objective": space.objective, "direction": space.direction, "trials": rows, "importance": importance(study)}
    atomic_write_text(sweep_dir / "trials.json", json.dumps(out, indent=1))
    keys = list(space.params)
    print(f"\n{sweep_dir.name}: {len(rows)} trials, {space.objective} ({space.direction}), best first")
    print(f"{'trial':>6}  {'state':9}{space.objective:>16}  " + "  ".join(f"{k:>9}" for k in keys))
    for r in rows:
        value = f"{r['value']:.4g}" if r["value"] is not None else "-"
        params = "  ".join(f"{shown(r['params'].get(k, '-')):>{max(len(k), 9)}}" for k in keys)
        print(f"{r['number']:>6}  {r['state']:9}{value:>16}  {params}")
    print(f"trials: {sweep_dir / 'trials.json'}")


def importance(study: optuna.Study) -> dict[str, float] | None:
    """Optuna's parameter importance (PED-ANOVA by default in Optuna 5) over the complete trials; None with
    fewer than 2 of them or when it cannot be computed (e.g. a parameter that never varied)."""
    import optuna
    from optuna.trial import TrialState

    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < 2:
        return None
    try:
        return {k: float(v) for k, v in optuna.importance.get_param_importances(study).items()}
    except (ValueError, RuntimeError, TypeError):
        return None


def shown(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)

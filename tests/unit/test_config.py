"""Config loading: defaults < YAML < overrides, type checks and helpful unknown-key errors."""
import pytest

from reasonrl.config import RunConfig, load_config, save_config


def test_defaults_yaml_and_overrides(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("steps: 7\nalgo:\n  kl:\n    coef: 0.02\nlora:\n  rank: 4\n")
    cfg = load_config(recipe, ["algo.kl.coef=0.01", "lora.rank=8", "task.options={max_terms: 2}"])
    assert cfg.steps == 7 and cfg.algo.kl.coef == 0.01 and cfg.lora.rank == 8
    assert cfg.task.options == {"max_terms": 2}
    assert cfg.algo.kl.estimator == "k3"  # untouched default


def test_unknown_key_names_closest_valid_key():
    with pytest.raises(ValueError, match=r"unknown config key 'algo.kl.coeff'.*did you mean 'algo.kl.coef'"):
        load_config(None, ["algo.kl.coeff=0.1"])


def test_wrong_type_names_the_field():
    with pytest.raises(ValueError, match=r"lora.rank: expected int, got str 'big'"):
        load_config(None, ["lora.rank=big"])
    with pytest.raises(ValueError, match=r"algo.kl.estimator: 'k9' is not one of"):
        load_config(None, ["algo.kl.estimator=k9"])


def test_int_is_accepted_for_float_and_rules_are_checked():
    assert load_config(None, ["optim.lr=1"]).optim.lr == 1.0
    with pytest.raises(ValueError, match="samples_per_prompt must be >= 1"):
        load_config(None, ["samples_per_prompt=0"])


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(None, ["name=x", "optim.betas=[0.9, 0.95]", "lora.target_modules=[q_proj, v_proj]"])
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg


def test_config_is_frozen():
    with pytest.raises(Exception):
        RunConfig().steps = 3  # type: ignore[misc]


def test_every_recipe_loads():
    from pathlib import Path
    recipes = sorted(Path(__file__).parents[2].joinpath("recipes").glob("*.yaml"))
    assert recipes, "no recipes found"
    for path in recipes:
        load_config(path)

"""Config loading: defaults < YAML < overrides, type checks and helpful unknown-key errors."""

from dataclasses import FrozenInstanceError
from pathlib import Path

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
    with pytest.raises(FrozenInstanceError):
        RunConfig().steps = 3  # type: ignore[misc]


def test_every_recipe_loads(tmp_path):
    from pathlib import Path

    import yaml

    from tests.helpers import tiny_hf_checkpoint

    recipes = sorted(Path(__file__).parents[2].joinpath("recipes").glob("*.yaml"))
    assert recipes, "no recipes found"
    for path in recipes:
        overrides = []
        if "reward_model" in yaml.safe_load(path.read_text()).get("rewards", {}).get("components", {}):
            # recipes/rlhf.yaml reads the reward model `reasonrl rm` writes; a fresh clone has none: a tiny one
            scorer = tiny_hf_checkpoint(tmp_path / "rm", ["[PAD]", "[UNK]", "1"], "classifier", num_labels=1)
            overrides = [f"rewards.options={{reward_model: {{path: {scorer}}}}}"]
        load_config(path, overrides)
    with pytest.raises(ValueError, match="reward_model.path=./nowhere. is not a Hugging Face model directory"):
        load_config(Path(__file__).parents[2] / "recipes" / "rlhf.yaml", ["rewards.options.reward_model.path=/nowhere"])


def test_loss_is_chosen_by_name_with_its_own_defaults():
    from reasonrl.config import CISPOLoss, GSPOLoss, PPOClipLoss

    gspo = load_config(None, ["algo.loss.name=gspo", "algo.aggregation=seq-mean-token-mean"]).algo.loss
    assert isinstance(gspo, GSPOLoss) and (gspo.clip_low, gspo.clip_high) == (3e-4, 4e-4)
    assert load_config(None, ["algo.loss=cispo"]).algo.loss == CISPOLoss()  # short for algo.loss.name=cispo
    assert load_config(None, ["algo.loss.clip_high=0.28"]).algo.loss == PPOClipLoss(clip_high=0.28)


def test_loss_fields_of_another_variant_are_rejected():
    with pytest.raises(
        ValueError,
        match=r"algo.loss.clip_ratio_c belongs to algo.loss.name=ppo_clip, not to "
        r"algo.loss.name=gspo \(which takes: name, clip_low, clip_high\)",
    ):
        load_config(None, ["algo.loss.name=gspo", "algo.aggregation=seq-mean-token-mean", "algo.loss.clip_ratio_c=3"])
    with pytest.raises(ValueError, match=r"unknown config key 'algo.loss.clip_hi'.*did you mean 'algo.loss.clip_high'"):
        load_config(None, ["algo.loss=cispo", "algo.loss.clip_hi=3"])
    with pytest.raises(ValueError, match=r"algo.loss.name: 'gsp' is not one of .*did you mean 'gspo'"):
        load_config(None, ["algo.loss.name=gsp"])


def test_saved_config_with_a_loss_variant_round_trips(tmp_path):
    cfg = load_config(None, ["algo.loss=gspo", "algo.aggregation=seq-mean-token-mean", "algo.kl.placement=reward"])
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["algo.loss=gspo"], "needs algo.aggregation=seq-mean-token-mean"),
        (["algo.loss.clip_ratio_c=0.5"], "clip_ratio_c must be > 1"),
        (["algo.mini_batches=3"], r"\(4\*8=32\) must be divisible by algo.mini_batches \(3\)"),
        (["algo.kl.target=0.1"], "needs algo.kl.coef > 0"),
        (["algo.overlong.buffer=100"], r"algo.overlong.buffer \(100\) must be <= sampling.max_new_tokens \(64\)"),
        (["algo.dynamic_sampling.enabled=true", "samples_per_prompt=1"], "needs samples_per_prompt >= 2"),
        (["algo.gamma=1.5"], r"algo.gamma must be in \[0, 1\]"),
    ],
)
def test_algo_rules_fail_at_load(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, overrides)


@pytest.mark.parametrize(
    "override,message",
    [
        ("algo.advantage=grpoo", r"^algo.advantage: unknown advantage estimator 'grpoo' \(did you mean 'grpo'\?\)"),
        ("engine.name=vlm", r"^engine.name: unknown engine 'vlm' \(did you mean 'vllm'\?\)"),
        ("env.name=corrdor", r"^env.name: unknown environment 'corrdor' \(did you mean 'corridor'\?\)"),
        ("task.name=reasoning_gym:basic_arithmetik", r"unknown reasoning-gym dataset 'basic_arithmetik' in task.name"),
        ("task.name=jsnl", r"^task.name: unknown task kind 'jsnl'"),
        ("eval.tasks=[reasoning_gym:chain_summ]", r"dataset 'chain_summ' in eval.tasks\[0\]"),
        ("forget.tasks=[reasoning_gym:leg_countin]", r"dataset 'leg_countin' in forget.tasks\[0\]"),
        ("rewards.components={corect: 1.0}", r"unknown reward 'corect' in rewards.components \(did you mean 'correct'"),
    ],
)
def test_every_registry_name_is_resolved_when_the_config_loads(override, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, [override])
    load_config(None, [override], check_names=False)  # the values themselves are well-formed


def test_keys_that_moved_still_load_from_old_recipes_and_overrides(tmp_path):
    recipe = tmp_path / "old.yaml"
    recipe.write_text("engine:\n  merge_lora: false\n  batch_size: 8\n")
    cfg = load_config(recipe, ["engine.prefix_cache=false"])
    assert (cfg.engine.hf.merge_lora, cfg.engine.hf.prefix_cache, cfg.engine.batch_size) == (False, False, 8)


@pytest.mark.parametrize(
    "text,message",
    [
        ("steps: 3\nalgo:\n  kl: {coef: 0.1\n", r"r.yaml:4: YAML syntax error"),
        ("steps: 3\n  lora: 2\n", r"r.yaml:2: YAML syntax error"),
        ("- steps\n", r"r.yaml: a recipe must be a YAML mapping, got list"),
    ],
)
def test_a_malformed_recipe_is_one_error_naming_the_file_and_line(tmp_path, text, message):
    (tmp_path / "r.yaml").write_text(text)
    with pytest.raises(ValueError, match=message):
        load_config(tmp_path / "r.yaml")


def test_binary_and_directory_recipes_are_refused(tmp_path):
    (tmp_path / "r.yaml").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ValueError, match=r"r.yaml: not a text file"):
        load_config(tmp_path / "r.yaml")
    with pytest.raises(ValueError, match=r"is a directory, not a file"):
        load_config(tmp_path)
    with pytest.raises(ValueError, match=r"override 'steps=\[1': the value is not valid YAML"):
        load_config(None, ["steps=[1"])


def test_an_override_that_changes_the_task_env_or_loss_drops_the_old_ones_options(caplog):
    import logging

    root = Path(__file__).parents[2] / "recipes"
    with caplog.at_level(logging.WARNING, logger="reasonrl.config.run"):
        cfg = load_config(root / "quickstart.yaml", ["task.name=reasoning_gym:chain_sum"])
    assert cfg.task.options == {} and "dropped task.options" in caplog.text
    cfg = load_config(root / "quickstart.yaml", ["task.name=reasoning_gym:chain_sum", "task.options.max_terms=3"])
    assert cfg.task.options == {"max_terms": 3}
    with pytest.raises(ValueError, match=r"task.options.max_term is not an option .*did you mean 'max_terms'"):
        load_config(root / "quickstart.yaml", ["task.name=reasoning_gym:chain_sum", "task.options.max_term=3"])
    cfg = load_config(root / "reinforce_pp.yaml", ["algo.loss.name=reinforce"])
    assert cfg.algo.loss.name == "reinforce"
    same = load_config(root / "quickstart.yaml", ["task.name=reasoning_gym:basic_arithmetic"])
    assert same.task.options == load_config(root / "quickstart.yaml").task.options  # same name: kept

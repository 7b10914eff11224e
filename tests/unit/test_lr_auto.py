"""optim.lr: auto resolves from the model's hidden size when the config loads (Tinker's formula)."""

import json

import pytest

from reasonrl.config import load_config
from reasonrl.config.lr import recommended_lr


def test_the_formula_by_hand(tmp_path, capsys):
    assert recommended_lr("tiny:llama", lora=True)[0] == pytest.approx(5e-4 * (2000 / 32) ** 0.781)
    assert recommended_lr("bundled:smollm2-135m-instruct", lora=True)[0] == pytest.approx(1.3214e-3, rel=1e-3)
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 896, "model_type": "qwen2"}))
    lr, line = recommended_lr(str(tmp_path), lora=False)  # Qwen2.5-0.5B's size, full fine-tuning
    assert lr == pytest.approx(5e-5 * (2000 / 896) ** 0.0775) and "full fine-tuning" in line
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 2000, "model_type": "gpt2"}))
    lr, line = recommended_lr(str(tmp_path), lora=True)
    assert lr == pytest.approx(5e-4) and "no fitted exponent for model_type 'gpt2'" in line
    with pytest.raises(ValueError, match="reads the model's size from .*nowhere/config.json"):
        recommended_lr(str(tmp_path / "nowhere"), lora=True)


def test_auto_in_a_recipe_or_an_override_becomes_a_number(tmp_path, capsys):
    cfg = load_config(None, ["model.path=tiny:llama", "optim.lr=auto"])
    assert cfg.optim.lr == pytest.approx(recommended_lr("tiny:llama", True)[0])
    assert "optim.lr=auto: 0.0126 for hidden size 32" in capsys.readouterr().err
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: {path: 'tiny:llama'}\nlora: {enabled: false}\noptim: {lr: auto}\n")
    assert load_config(recipe).optim.lr == pytest.approx(recommended_lr("tiny:llama", False)[0])
    assert load_config(recipe, ["optim.lr=1e-4"]).optim.lr == 1e-4  # an explicit value wins

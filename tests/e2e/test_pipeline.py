"""The DeepSeekMath pipeline from scratch (recipes/pipeline_tiny.yaml): SFT must beat pretraining alone and RL must
beat SFT in greedy accuracy on the same 200 held-out sums, beyond the noise of the evaluation. The thresholds and
the seeds they were set against are in tests/learning.py (scenarios pipeline:sft, pipeline:rl)."""

import pytest

from tests.learning import SCENARIOS


@pytest.mark.slow
def test_pipeline_sft_beats_pretraining_and_rl_beats_sft(tmp_path):
    got = SCENARIOS["pipeline:sft"].measure(tmp_path)  # one pipeline run; both scenarios read it
    print(f"accuracy: pretrain {got['pretrain']:.3f}, sft {got['sft']:.3f}, rl {got['rl']:.3f}")
    SCENARIOS["pipeline:sft"].check(got)
    SCENARIOS["pipeline:rl"].check(got)
    assert got["rl_start"] == pytest.approx(got["sft"], abs=0.02)  # RL started from the SFT weights
    root = tmp_path / "pipeline_tiny"
    assert (root / "sft" / "model" / "reasonrl_tokenizer.json").is_file() and (root / "rl" / "summary.json").is_file()

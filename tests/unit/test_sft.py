"""SFT: the loss is the NLL of completion tokens only, packing changes nothing, data errors name the file and line,
and `reasonrl sft` writes the run directory that RL continues from."""

import json

import pytest
import torch

from reasonrl.config import LoraConfig, ModelConfig, TaskConfig
from reasonrl.model import load_policy
from reasonrl.model_files import tiny_model
from reasonrl.sft import completion_loss, rows_logprobs
from reasonrl.sft_data import Demo, collate_rows, encode_demo, end_of_turn_id, load_demos, pack_rows
from reasonrl.tasks import Task, load_task, shot_reply
from reasonrl.tokenizer import ByteTokenizer
from reasonrl.types import Example
from tests.helpers import tiny_config

DEMOS = [
    Demo([{"role": "user", "content": "3+5+9"}], "3+5=8\n8+9=17\nAnswer: 17", "a"),
    Demo([{"role": "system", "content": "add"}, {"role": "user", "content": "1+2"}], "Answer: 3", "b"),
    Demo([{"role": "user", "content": "what is seven?"}], "7", "c"),
]


def test_completion_loss_ignores_prompt_targets_and_gives_them_no_gradient():
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 11, requires_grad=True)  # (B, T, V)
    targets = torch.randint(0, 11, (2, 6))  # (B, T)
    mask = torch.tensor([[0, 0, 1, 1, 0, 0], [0, 1, 1, 1, 1, 0]], dtype=torch.bool)
    changed = torch.where(mask, targets, (targets + 3) % 11)  # other targets where mask is False

    def loss_for(t):
        logp = logits.log_softmax(-1).gather(-1, t[..., None]).squeeze(-1)  # (B, T)
        return completion_loss(logp, mask, float(mask.sum()))

    loss = loss_for(targets)
    assert torch.equal(loss, loss_for(changed))
    expected = -sum(logits[b, t].log_softmax(-1)[targets[b, t]] for b in range(2) for t in range(6) if mask[b, t]) / 6
    assert torch.allclose(loss, expected)
    loss.backward()
    assert torch.all(logits.grad[~mask] == 0) and torch.all(logits.grad[mask].abs().sum(-1) > 0)
    logp = torch.full((1, 3), float("-inf"))  # an impossible prompt token
    assert (
        completion_loss(
            logp.masked_fill(torch.tensor([[False, True, True]]), -1.0), torch.tensor([[False, True, True]]), 2.0
        ).item()
        == 1.0
    )


def test_encode_demo_masks_the_prompt_and_trains_the_stop_token():
    tok = ByteTokenizer()
    seq = encode_demo(tok, DEMOS[0], end_of_turn_id(tok))
    prompt = tok.apply_chat_template(DEMOS[0].prompt, add_generation_prompt=True)
    assert seq.tokens == prompt + tok.encode("3+5=8\n8+9=17\nAnswer: 17") + [tok.eos_token_id]
    assert seq.mask == [False] * len(prompt) + [True] * (len(seq.tokens) - len(prompt))


def reference_nll(model, sequences):
    """Slow reference: every demonstration alone, a loop over its completion tokens."""
    total, count = 0.0, 0
    for s in sequences:
        logits = model(input_ids=torch.tensor([s.tokens])).logits[0].float()  # (L, V)
        for i in range(len(s.tokens) - 1):
            if s.mask[i + 1]:
                total -= logits[i].log_softmax(-1)[s.tokens[i + 1]].item()
                count += 1
    return total / count


@pytest.mark.parametrize("pack", [True, False])
def test_packed_and_unpacked_loss_equal_the_hand_computed_nll(pack):
    model = tiny_model(vocab_size=ByteTokenizer.vocab_size).eval()
    tok = ByteTokenizer()
    sequences = [encode_demo(tok, d, tok.eos_token_id) for d in DEMOS]
    rows = pack_rows([len(s.tokens) for s in sequences], 64, pack, order=[0, 1, 2])
    assert len(rows) == (2 if pack else 3)  # 37 + 20 fit in 64, 19 does not
    with torch.no_grad():
        logp, mask = rows_logprobs(model, [[sequences[i] for i in row] for row in rows], tok.pad_token_id)
    loss = completion_loss(logp, mask, float(mask.sum()))
    assert int(mask.sum()) == sum(sum(s.mask) for s in sequences)
    assert loss.item() == pytest.approx(reference_nll(model, sequences), abs=1e-5)


def test_packed_rows_isolate_sequences_and_restart_positions():
    tok = ByteTokenizer()
    a, b = (encode_demo(tok, d, tok.eos_token_id) for d in DEMOS[1:])
    batch = collate_rows([[a, b]], tok.pad_token_id)
    n = len(a.tokens)
    assert batch.position_ids[0, :n].tolist() == list(range(n))
    assert batch.position_ids[0, n : n + 3].tolist() == [0, 1, 2]
    assert not batch.allowed[0, n:, :n].any() and batch.allowed[0, n:, n:].diagonal().all()
    assert batch.mask[0].tolist() == (a.mask[1:] + b.mask)[: batch.mask.shape[1]]
    assert batch.attention_mask(torch.float32).shape == (1, 1, batch.mask.shape[1], batch.mask.shape[1])


def test_pack_rows_keeps_order_and_rejects_long_sequences():
    assert pack_rows([3, 4, 2, 5], 8, True, [0, 1, 2, 3]) == [[0, 1], [2, 3]]
    assert pack_rows([3, 4, 2, 5], 8, True, [3, 2, 1, 0]) == [[3, 2], [1, 0]]
    assert pack_rows([3, 4], 8, False, [1, 0]) == [[1], [0]]
    with pytest.raises(ValueError, match="9 tokens > sft.seq_len=8"):
        pack_rows([9], 8, True, [0])


def test_reference_replies_use_worked_solutions():
    task = load_task(TaskConfig(name="arithmetic", eval_size=10, train_size=50, instruction=""))
    assert {e.metadata["solution"] for e in task.train}.isdisjoint({e.metadata["solution"] for e in task.eval})
    example = task.train[0]
    numbers = [int(x) for x in example.prompt[-1]["content"].split("+")]
    reply = shot_reply(example)
    assert reply.splitlines()[-1] == f"Answer: {sum(numbers)}" and len(reply.splitlines()) == 3
    assert reply.splitlines()[0] == f"{numbers[0]}+{numbers[1]}={numbers[0] + numbers[1]}"
    plain = Example(id="p", prompt=[{"role": "user", "content": "q"}], answer="4")
    code = Example(id="c", prompt=plain.prompt, metadata={"solution": "def f(): pass", "tests": ["assert 1"]})
    assert shot_reply(plain) == "Answer: 4" and shot_reply(code).startswith("```python")
    done = Example(id="d", prompt=plain.prompt, answer="4", metadata={"solution": "2+2=4\nAnswer: 4"})
    assert shot_reply(done) == "2+2=4\nAnswer: 4"


def test_demonstration_file_errors_name_file_and_line(tmp_path):
    data = tmp_path / "demos.jsonl"
    data.write_text(json.dumps({"prompt": "say 1", "completion": "1"}) + "\n" + json.dumps({"prompt": "say 2"}) + "\n")
    cfg = tiny_config(tmp_path, f"sft.data={data}")
    task = load_task(cfg.task)
    with pytest.raises(
        ValueError,
        match=rf"{data}:2: missing field 'completion' \(fields: prompt\); set "
        r"sft.completion_field",
    ):
        load_demos(cfg, task)
    data.write_text(json.dumps({"question": task.eval[0].prompt[-1]["content"], "reply": "x"}) + "\n")
    cfg = tiny_config(tmp_path, f"sft.data={data}", "sft.prompt_field=question", "sft.completion_field=reply")
    with pytest.raises(ValueError, match="held-out eval problems"):
        load_demos(cfg, task)
    with pytest.raises(ValueError, match="unknown file type '.txt'"):
        load_demos(tiny_config(tmp_path, "sft.data=d.txt"), task)


def test_task_references_are_the_train_answers(tmp_path):
    cfg = tiny_config(tmp_path)
    task = load_task(cfg.task)
    demos = load_demos(cfg, task)
    assert [d.completion for d in demos] == [f"Answer: {e.answer}" for e in task.train]
    with pytest.raises(ValueError, match="no reference solutions"):
        load_demos(cfg, Task(name="t", train=[Example(id="x", prompt=[{"role": "user", "content": "q"}])], eval=[]))


def test_sft_cli_writes_run_and_rl_continues_the_adapter(tmp_path, capsys):
    from reasonrl.cli import main
    from tests.unit.test_cli import run_cli
    from tests.helpers import tiny_overrides

    args = tiny_overrides(
        tmp_path, "sft.steps=3", "sft.seq_len=32", "sft.batch_tokens=128", "save_every=2", "eval.samples=1"
    )
    main(["sft", *args, "--quiet"])
    run = tmp_path / "runs" / "tiny"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_000002", "step_000003"]
    assert (run / "adapter" / "adapter_config.json").is_file() and (run / "config.yaml").is_file()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["stage"] == "sft" and summary["after"]["problems"] == 8
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [0, 1, 2, 3] and all(x["sft/loss"] > 0 for x in lines[1:])
    code, _, err = run_cli(capsys, "sft", *args)
    assert code == 2 and "reasonrl sft --resume" in err
    policy, _ = load_policy(ModelConfig(path="tiny:llama", dtype="float32", adapter=str(run / "adapter")), LoraConfig())
    trained = {n: p for n, p in policy.named_parameters() if p.requires_grad}
    assert trained and all("lora_" in n for n in trained)
    assert any(p.abs().sum() > 0 for n, p in trained.items() if "lora_B" in n)  # the SFT update, not a fresh B=0
    main(
        [
            "train",
            *tiny_overrides(tmp_path, f"model.adapter={run / 'adapter'}", "name=rl", "steps=1", "eval.samples=1"),
            "--quiet",
        ]
    )
    from safetensors.torch import load_file

    before = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    after = load_file(str(tmp_path / "runs" / "rl" / "adapter" / "adapter_model.safetensors"))
    assert before.keys() == after.keys() and any(not torch.equal(before[k], after[k]) for k in before)


def test_full_fine_tuning_saves_a_model_directory_that_model_path_loads(tmp_path):
    from reasonrl.sft import sft

    cfg = tiny_config(
        tmp_path,
        "lora.enabled=false",
        "sft.steps=2",
        "sft.seq_len=32",
        "sft.batch_tokens=64",
        "eval.samples=1",
        "optim.lr=0.001",
    )
    run = sft(cfg, quiet=True)
    model, tok = load_policy(ModelConfig(path=str(run / "model"), dtype="float32"), LoraConfig(enabled=False))
    assert isinstance(tok, ByteTokenizer)
    reference = tiny_model(vocab_size=ByteTokenizer.vocab_size)
    changed = [not torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values())]
    assert any(changed)


def test_resumed_sft_ends_with_the_same_weights(tmp_path):
    import shutil

    from safetensors.torch import load_file

    from reasonrl.sft import sft

    cfg = tiny_config(
        tmp_path,
        "sft.steps=4",
        "sft.seq_len=32",
        "sft.batch_tokens=64",
        "save_every=2",
        "eval.samples=1",
        "optim.warmup_steps=2",
    )
    run = sft(cfg, quiet=True)
    weights = run / "adapter" / "adapter_model.safetensors"
    uninterrupted = load_file(str(weights))
    shutil.rmtree(run / "checkpoints" / "step_000004")  # killed after step 2's checkpoint
    shutil.rmtree(run / "adapter")
    sft(cfg, resume=True, quiet=True)
    resumed = load_file(str(weights))
    assert all(torch.equal(uninterrupted[k], resumed[k]) for k in uninterrupted)
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 2, 3, 4]

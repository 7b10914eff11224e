"""placement.* and algo.max_staleness: config rules, the order in which sampling and weight pushes happen
(AheadSampler), and data parallelism's sums (reasonrl/parallel.py) on two gloo ranks in this machine."""

import socket
import time

import pytest
import torch
import torch.multiprocessing as mp

from reasonrl.config import load_config
from reasonrl.placement import AheadSampler


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["placement.rollout_workers=2"], "need placement.name=ray"),
        (["placement.name=ray", "placement.learners=0"], "placement.learners must be >= 1"),
        (["placement.name=ray", "placement.learners=2", "algo.advantage=gae"], "the critic trains on one learner"),
        (["placement.name=ray", "forget.enabled=true"], "forgetting monitor"),
        (["algo.max_staleness=-1"], "algo.max_staleness must be >= 0"),
        (["placement.name=ray", "placement.stall_timeout_s=0"], "stall_timeout_s must be > 0"),
    ],
)
def test_bad_placement_is_refused_with_the_rule(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, overrides)


@pytest.mark.parametrize("background", [False, True], ids=["local", "background"])
def test_a_step_is_sampled_by_the_weights_pushed_before_it_was_submitted(background):
    served = {"w": 0}

    def sample(step):
        time.sleep(0.01 * (step % 2))  # uneven timing must not change what is served
        return step, served["w"]

    def push(w):
        served["w"] = w

    sampler = AheadSampler(sample, push, background)
    k, got = 2, []
    try:
        for step in range(8):
            for ahead in range(step, min(step + k, 7) + 1):
                sampler.submit(ahead)
            got.append(sampler.collect(step))
            sampler.push(step + 1)  # the learner's weights after this step
    finally:
        sampler.close()
    assert [s for s, _ in got] == list(range(8))
    assert [w for _, w in got] == [0, 0, 0, 1, 2, 3, 4, 5]  # step s sampled by the weights after step s - k


def test_an_error_in_sampling_or_pushing_surfaces_at_collect():
    def push(w):
        raise RuntimeError("engine gone")

    sampler = AheadSampler(lambda s: s, push, background=True)
    sampler.submit(0)
    sampler.push(1)
    with pytest.raises(RuntimeError, match="engine gone"):
        sampler.collect(0)
    sampler.close()


def test_steps_in_flight_survive_a_checkpoint(tmp_path):
    sampler = AheadSampler(lambda s: {"step": s, "data": torch.arange(s)}, lambda w: None, background=True)
    for s in (3, 4):
        sampler.submit(s)
    sampler.save(tmp_path)
    sampler.close()
    resumed = AheadSampler(lambda s: pytest.fail("a saved step was sampled again"), lambda w: None, False)
    resumed.restore(tmp_path)
    resumed.submit(3)
    assert resumed.collect(3)["step"] == 3 and resumed.collect(4)["data"].tolist() == [0, 1, 2, 3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, port: int, out) -> None:
    from reasonrl.parallel import DataParallel

    torch.set_num_threads(1)
    dp = DataParallel.start(rank, 2, f"tcp://127.0.0.1:{port}", timeout_s=60)
    p = torch.nn.Parameter(torch.zeros(3))
    p.grad = torch.full((3,), float(rank + 1)) if rank == 0 else None  # rank 1 ran no micro-batch
    dp.sum_grads([p])
    rows = torch.zeros(4, 2)
    rows[rank * 2 : rank * 2 + 2] = rank + 1.0
    metrics = dp.sum_metrics({"loss/pg": 0.25 * (rank + 1)} | ({"loss/kl": 0.5} if rank == 0 else {}))
    out.put((rank, p.grad.tolist(), dp.sum_(rows).tolist(), metrics, [dp.mine(i) for i in range(4)]))
    dp.close()


def test_two_gloo_ranks_sum_gradients_rows_and_metric_shares():
    ctx = mp.get_context("spawn")
    out, port = ctx.Queue(), free_port()
    procs = [ctx.Process(target=_rank, args=(r, port, out)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict((r[0], r[1:]) for r in (out.get(timeout=120) for _ in procs))
    for p in procs:
        p.join(timeout=60)
    for rank, (grad, rows, metrics, mine) in results.items():
        assert grad == [1.0, 1.0, 1.0]  # a rank without micro-batches adds zeros
        assert rows == [[1.0, 1.0], [1.0, 1.0], [2.0, 2.0], [2.0, 2.0]]
        assert metrics == {"loss/pg": 0.75, "loss/kl": 0.5}
        assert mine == [rank == 0, rank == 1, rank == 0, rank == 1]

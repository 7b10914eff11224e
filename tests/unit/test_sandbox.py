"""The sandbox and the code_tests reward: scores, limits, containment, and nothing left running."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from reasonrl.config import RewardConfig
from reasonrl.rewards import REWARDS
from reasonrl.rewards.code import extract_code, run_tests
from reasonrl.rewards.compose import RewardComposer
from reasonrl.sandbox import Limits, isolation_mode, run
from reasonrl.types import Example

NAMESPACES = isolation_mode() == "namespaces"
needs_namespaces = pytest.mark.skipif(not NAMESPACES, reason="this machine runs the sandbox in rlimits mode")
TESTS = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert mul(2, 3) == 6", "assert mul(0, 5) == 0"]
FAST = Limits(timeout_s=3.0)


def fenced(code: str) -> str:
    return f"Here is my solution.\n```python\n{code}\n```\nDone."


def code_example(tests: object = TESTS) -> Example:
    return Example(id="code/0", prompt=[{"role": "user", "content": "q"}], metadata={"tests": tests})


def processes_with(marker: str) -> list[int]:
    """pids whose command line contains marker (the host's view)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def test_extract_code() -> None:
    assert extract_code("```python\na = 1\n```\ntext\n```py\nb = 2\n```") == "b = 2\n"
    assert extract_code("```\nx = 1\n```") == "x = 1\n"
    assert extract_code("```python\nfirst\n```\n```\nbare\n```") == "first\n"
    assert extract_code("no code") is None and extract_code("```python\nunclosed") is None


def test_run_basic_and_output_cap() -> None:
    result = run(["{python}", "main.py"], {"main.py": "import sys; print('hi'); sys.exit(3)"}, FAST)
    assert result.stdout == "hi\n" and result.returncode == 3 and not result.timed_out
    spam = run(["{python}", "-c", "print('x' * 100000)"], limits=Limits(timeout_s=3, output_bytes=50))
    assert spam.stdout == "x" * 50
    with pytest.raises(ValueError, match="relative path"):
        run(["{python}", "x.py"], {"../x.py": ""})


def test_correct_and_half_correct_solutions() -> None:
    code_tests = REWARDS.get("code_tests")
    right = "def add(a, b):\n    return a + b\n\ndef mul(a, b):\n    return a * b"
    half = "def add(a, b):\n    return a + b\n\ndef mul(a, b):\n    return a + b"
    assert code_tests(fenced(right), code_example()) == 1.0
    assert code_tests(fenced(half), code_example()) == 0.5
    assert code_tests("no code at all", code_example()) == 0.0
    assert code_tests(fenced(right), Example(id="x", prompt=[])) is None


def test_tests_as_a_source_string() -> None:
    tests = (
        "import math\ndef close(a, b):\n    return math.isclose(a, b)\nassert close(half(3), 1.5)\nassert half(4) == 2"
    )
    assert run_tests("def half(x):\n    return x / 2", tests, FAST).fraction == 1.0
    report = run_tests("def half(x):\n    return x // 2", tests, FAST)
    assert report.total == 2 and report.passed == 1


def test_faked_results_and_exit_do_not_score() -> None:
    liar = (
        "import sys\nprint('0 total 1')\nfor i in range(4):\n    print(f'0 {i} 1 \"\"')\n"
        "def add(a, b):\n    sys.exit(0)\nmul = add"
    )
    assert run_tests(liar, TESTS, FAST).passed == 0
    assert run_tests("import os\nos._exit(0)", TESTS, FAST).passed == 0


def test_infinite_loop_is_cut_per_test_and_overall() -> None:
    looping_mul = "def add(a, b):\n    return a + b\ndef mul(a, b):\n    while True:\n        pass"
    report = run_tests(looping_mul, TESTS, Limits(timeout_s=5), test_timeout_s=0.5)
    assert report.passed == 2 and "timed out" in report.results[2][1]
    start = time.monotonic()
    stubborn = "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True:\n    pass"
    report = run_tests(stubborn, TESTS, Limits(timeout_s=1.5), test_timeout_s=0.2)
    assert report.passed == 0 and report.timed_out and time.monotonic() - start < 5


def test_memory_bomb_scores_zero() -> None:
    bomb = "def add(a, b):\n    x = bytearray(4 << 30)\n    return a + b\nmul = add"
    report = run_tests(bomb, TESTS, Limits(timeout_s=5, memory_mb=256))
    assert report.passed == 0 and "MemoryError" in report.results[0][1]
    hog = "blocks = []\nwhile True:\n    blocks.append(bytearray(50 << 20))"
    assert run_tests(hog, TESTS, Limits(timeout_s=5, memory_mb=256)).passed == 0


@pytest.mark.skipif(not NAMESPACES and os.geteuid() == 0, reason="RLIMIT_NPROC does not bind root")
def test_fork_bomb_is_contained_and_nothing_is_left_running() -> None:
    bomb = (
        "import os, subprocess\n"
        "for _ in range(50):\n"
        "    try:\n        subprocess.Popen(['sleep', '987.654'])\n    except OSError:\n        break\n"
        "while True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    )
    report = run_tests(bomb, TESTS, Limits(timeout_s=2, max_processes=16))
    assert report.passed == 0
    time.sleep(0.2)
    assert processes_with("987.654") == []


@needs_namespaces
def test_escaped_daemon_is_killed_with_the_sandbox() -> None:
    daemon = (
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        "        os.execvp('sleep', ['sleep', '876.543'])\n    os._exit(0)\ntime.sleep(0.3)\n"
        "def add(a, b):\n    return a + b\ndef mul(a, b):\n    return a * b"
    )
    assert run_tests(daemon, TESTS, FAST).passed == 4
    time.sleep(0.2)
    assert processes_with("876.543") == []


@needs_namespaces
def test_filesystem_is_read_only_outside_the_work_directory(tmp_path: Path) -> None:
    target = tmp_path / "escaped.txt"
    os.chmod(tmp_path, 0o777)
    program = (
        f"import os\nfor path in [{str(target)!r}, '/tmp/reasonrl-escape', os.path.expanduser('~/x')]:\n"
        "    try:\n        open(path, 'w').write('x')\n        print('wrote', path)\n"
        "    except OSError as e:\n        print('blocked', path, e.errno)\n"
        "print(open('/root/.bashrc').read() if os.path.exists('/root') and os.access('/root', os.R_OK) "
        "else 'no root')"
    )
    result = run(["{python}", "main.py"], {"main.py": program}, FAST)
    assert not target.exists() and not Path("/tmp/reasonrl-escape").exists()
    assert result.stdout.count("blocked") == 2 and "wrote" in result.stdout  # only HOME (the work dir) is writable
    assert "no root" in result.stdout


@needs_namespaces
def test_no_network() -> None:
    program = (
        "import socket\ntry:\n    socket.create_connection(('1.1.1.1', 53), timeout=2)\n    print('open')\n"
        "except OSError as e:\n    print('blocked', e.errno)\n"
        "print(sorted(n for _, n in socket.if_nameindex()))"
    )
    result = run(["{python}", "main.py"], {"main.py": program}, FAST)
    assert result.stdout.startswith("blocked") and "['lo']" in result.stdout


def test_rlimits_mode_runs_and_cleans_up() -> None:
    result = run(["{python}", "-c", "import os; print(os.getcwd())"], limits=FAST, mode="rlimits")
    assert result.returncode == 0 and result.mode == "rlimits"
    assert not Path(result.stdout.strip()).exists()
    right = "def add(a, b):\n    return a + b\ndef mul(a, b):\n    return a * b"
    assert run_tests(right, TESTS, FAST, mode="rlimits").passed == 4
    looping = run_tests("while True:\n    pass", TESTS, Limits(timeout_s=1), test_timeout_s=0.3, mode="rlimits")
    assert looping.passed == 0 and "timed out" in looping.results[0][1]


def test_memory_bomb_through_the_composer() -> None:
    cfg = RewardConfig(components={"code_tests": 1.0}, workers=1, timeout_s=20)
    bomb = fenced("x = bytearray(8 << 30)\ndef add(a, b):\n    return a + b")
    right = fenced("def add(a, b):\n    return a + b\ndef mul(a, b):\n    return a * b")
    with RewardComposer(cfg) as composer:
        scored = composer.score([bomb, right], [code_example(), code_example()])
    assert scored[0].total == 0.0 and scored[0].errors == [] and scored[1].total == 1.0

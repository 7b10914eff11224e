"""The coding environment: scripted agents fix every shipped repository (reward 1), escape attempts get 0 and
leave nothing behind, the command language, the task loader, state keys, and token-in/token-out rollouts."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

import pytest

from reasonrl.config import TaskConfig
from reasonrl.engine import Completion, SamplingParams
from reasonrl.envs import ENVS, EnvContext, Environment
from reasonrl.envs.coding_commands import CommandError, parse_command
from reasonrl.rollout import rollout
from reasonrl.sandbox import isolation_mode
from reasonrl.tasks import load_task
from reasonrl.tokenizer import ByteTokenizer, encode_chat, observation_tokens
from reasonrl.types import Example
from tests.unit.test_sandbox import processes_with

NAMESPACES = isolation_mode() == "namespaces"
needs_namespaces = pytest.mark.skipif(not NAMESPACES, reason="this machine runs the sandbox in rlimits mode")
TASK = load_task(TaskConfig(name="code_repos"))
REPOS = {e.metadata["repo"]: e for e in TASK.train + TASK.eval}

# The fix of every shipped repository: (file, old text, new text) edits.
FIXES = {
    "pagination": [
        ("pagination.py", "return total // per_page", "return (total + per_page - 1) // per_page"),
        ("pagination.py", "start = page * per_page", "start = (page - 1) * per_page"),
    ],
    "settings": [
        ("settings.py", 'line.split("=")', 'line.split("=", 1)'),
        ("settings.py", "key, default=True)", "key, default=False)"),
    ],
    "intervals": [
        ("intervals.py", "for start, end in intervals:", "for start, end in sorted(intervals):"),
        ("intervals.py", "start < merged[-1][1]", "start <= merged[-1][1]"),
    ],
    "html_escape": [
        (
            "escape.py",
            '[("<", "&lt;"), (">", "&gt;"), ("&", "&amp;"), (\'"\', "&quot;")]',
            '[("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), (\'"\', "&quot;"), ("\'", "&#x27;")]',
        )
    ],
    "dates": [
        ("dates.py", "return year % 4 == 0", "return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)"),
        ("dates.py", "date(year, month, date.day)", "date(year, month, min(date.day, days_in_month(year, month)))"),
    ],
    "shop": [
        ("money.py", "int(float(text) * 100)", "round(float(text) * 100)"),
        ("cart.py", "sum(cents for name", "sum(cents * quantity for name"),
    ],
}
WRITE_WHOLE_FILE = {"html_escape", "shop"}  # these scripts use `write`, the others `replace`


def fence(text: str) -> str:
    return f"```\n{text}{'' if text.endswith(chr(10)) else chr(10)}```"


def fix_actions(repo: str) -> list[str]:
    """A scripted agent: look around, read the code, fix it, run the tests, submit."""
    example = REPOS[repo]
    files = dict(example.metadata["files"])
    sources = sorted({path for path, _, _ in FIXES[repo]})
    actions = ["Let me see the files.\nls"] + [f"read {path}" for path in sources] + ["run tests"]
    for path, old, new in FIXES[repo]:
        assert files[path].count(old) == 1, (repo, old)
        files[path] = files[path].replace(old, new)
        if repo not in WRITE_WHOLE_FILE:
            actions.append(f"The bug is here.\nreplace {path}\n{fence(old)}\n{fence(new)}")
    if repo in WRITE_WHOLE_FILE:
        actions += [f"write {path}\n```python\n{files[path]}```" for path in sources]
    return actions + ["```bash\nrun tests\n```", "submit"]


def make_env(max_turns: int = 20, **options: object):
    return ENVS.get("coding")(EnvContext(max_turns=max_turns), **options)


def play(repo: str, actions: list[str], **options: object):
    """Run the actions through one episode; (results, env root) after close."""
    env = make_env(**options)
    env.reset(REPOS[repo])
    root = env.root
    results = []
    try:
        for action in actions:
            results.append(env.step(action))
            if results[-1].done:
                break
    finally:
        env.close()
    return results, root


@pytest.fixture
def scratch(monkeypatch: pytest.MonkeyPatch):
    """A private temporary directory for the episode copies and the sandboxes, to check that none is left."""
    directory = tempfile.mkdtemp(prefix="reasonrl-coding-test-")
    os.chmod(directory, 0o755)  # the sandbox's uid must reach its working directory inside
    monkeypatch.setattr(tempfile, "tempdir", directory)
    yield Path(directory)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.parametrize("repo", sorted(FIXES))
def test_scripted_agent_fixes_every_repo(repo: str, scratch: Path) -> None:
    results, root = play(repo, fix_actions(repo))
    *middle, last = results
    assert last.done and last.reward == 1.0 and last.reward_parts == {"correct": 1.0, "tests": 1.0}
    assert all(r.reward == 0.0 and not r.done for r in middle)
    total = len(REPOS[repo].metadata["tests"])
    before = middle[1 + len({path for path, _, _ in FIXES[repo]})].observation[0]["content"]
    assert f"of {total} tests passed" in before and f"{total} of {total}" not in before
    assert f"{total} of {total} tests passed" in middle[-1].observation[0]["content"]
    assert not os.path.exists(root) and list(scratch.iterdir()) == []


@pytest.mark.parametrize("repo", sorted(FIXES))
def test_unfixed_repo_fails_and_partial_credit(repo: str) -> None:
    (binary,), _ = play(repo, ["submit"])
    (partial,), _ = play(repo, ["submit"], partial_credit=True)
    fraction = binary.reward_parts["tests"]
    assert binary.reward == 0.0 and 0.0 <= fraction < 1.0 and partial.reward == pytest.approx(fraction)
    assert binary.info["submitted"] and binary.info["tests_passed"] < binary.info["tests_total"]


def test_turn_limit_scores_without_submit() -> None:
    actions = fix_actions("intervals")[3:5] + ["ls", "ls"]
    results, _ = play("intervals", actions, max_turns=3)
    assert len(results) == 3 and results[-1].done and results[-1].reward == 1.0
    assert not results[-1].info["submitted"]


def test_edited_tests_and_unittest_tricks_do_not_score() -> None:
    classes: dict[str, list[str]] = {}
    for _, cls, method in REPOS["pagination"].metadata["tests"]:
        classes.setdefault(cls, []).append(f"    def {method}(self):\n        pass\n")
    fake = "import unittest\n" + "".join(f"class {c}(unittest.TestCase):\n{''.join(m)}" for c, m in classes.items())
    results, _ = play("pagination", [f"write test_pagination.py\n{fence(fake)}", "run tests", "submit"])
    assert "8 of 8 tests passed" in results[1].observation[0]["content"] and results[-1].reward == 0.0
    results, _ = play("pagination", [f"write test_pagination/__init__.py\n{fence(fake)}", "submit"])
    assert results[-1].reward == 0.0  # a package named like the test module does not stand in for it
    tricks = [
        "import unittest\nraise unittest.SkipTest('no')\n",
        "import os\nos._exit(0)\n",
        "import sys\nprint('OK: all 7 tests passed')\nsys.exit(0)\n",
        "import unittest\nunittest.TestCase.assertEqual = lambda *a, **k: None\n"
        "unittest.TestCase.assertIs = unittest.TestCase.assertTrue = unittest.TestCase.assertEqual\n"
        "def parse(*args):\n    return {}\nget_int = get_bool = parse\n",
    ]
    for trick in tricks:  # partial credit: a reward of 0 means that not one test counted as passed
        results, _ = play(
            "settings", [f"write settings.py\n{fence(trick)}", "run tests", "submit"], partial_credit=True
        )
        assert results[-1].reward == 0.0 and "7 of 7" not in results[1].observation[0]["content"], trick
    assert "unittest was modified by the code under test" in results[1].observation[0]["content"]


# -- escape attempts ----------------------------------------------------------------------------------------
def test_paths_outside_the_copy_are_refused(tmp_path: Path, scratch: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("TOPSECRET")
    env = make_env()
    env.reset(REPOS["pagination"])
    root = env.root
    os.symlink(outside, os.path.join(root, "link"))
    os.symlink(outside / "secret.txt", os.path.join(root, "secret.txt"))
    attempts = [
        "read /etc/passwd",
        "read ../../../../etc/passwd",
        "read ~/.bashrc",
        "read secret.txt",
        "read link/secret.txt",
        "ls ..",
        "ls link",
        f"write {outside}/x.py\n{fence('x')}",
        f"write ../x.py\n{fence('x')}",
        f"write sub/../../x.py\n{fence('x')}",
        f"write link/x.py\n{fence('x')}",
        f"write secret.txt\n{fence('overwritten')}",
        f"replace secret.txt\n{fence('TOPSECRET')}\n{fence('gone')}",
        "run ../x.py",
        "run /usr/bin/env",
    ]
    try:
        for action in attempts:
            text = env.step(action).observation[0]["content"]
            assert "TOPSECRET" not in text and "root:" not in text, (action, text)
            assert any(
                word in text for word in ("relative", "'..'", "symbolic", "outside", "no such file", "give a .py")
            ), (action, text)
        assert "link" not in env.files() and "secret.txt" not in env.files()
        assert env.step("submit").reward == 0.0
    finally:
        env.close()
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == "TOPSECRET"
    assert not os.path.exists(root) and list(scratch.iterdir()) == []


def attack(repo: str, module: str, code: str, actions: tuple[str, ...] = ("run tests", "submit"), **options: object):
    """Replace a module of the repository with code, then run it through the given commands."""
    results, root = play(repo, [f"write {module}\n{fence(code)}", *actions], **options)
    assert results[-1].done and not os.path.exists(root)
    return results


@needs_namespaces
def test_no_network_from_the_tests(scratch: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    code = (
        f"import socket\nfor host in [('127.0.0.1', {port:d}), ('1.1.1.1', 53)]:\n"
        "    socket.create_connection(host, timeout=1).sendall(b'escaped')\n"
    )
    try:
        results = attack("pagination", "pagination.py", code)
        with pytest.raises(socket.timeout):
            listener.accept()
    finally:
        listener.close()
    assert results[-1].reward == 0.0 and "OSError" in results[1].observation[0]["content"]
    assert list(scratch.iterdir()) == []


@needs_namespaces
def test_no_writes_outside_from_the_tests(tmp_path: Path, scratch: Path) -> None:
    env = make_env()
    env.reset(REPOS["pagination"])
    target = os.path.join(env.root, "pagination.py")
    os.chmod(tmp_path, 0o777)
    code = (
        f"import os\nfor i, path in enumerate([{target!r}, {str(tmp_path / 'escaped.txt')!r}, "
        "'/tmp/reasonrl-coding-escape']):\n"
        "    for name in [path, 'link%d' % i]:\n        try:\n"
        "            if name != path:\n                os.symlink(path, name)\n"
        "            open(name, 'w').write('pwned')\n            print('wrote', name)\n"
        "        except OSError as e:\n            print('blocked', e.errno)\n"
    )
    try:
        env.step(f"write probe.py\n{fence(code)}")
        before = Path(target).read_text()
        output = env.step("run probe.py").observation[0]["content"]
        assert output.count("blocked") == 6 and "wrote" not in output, output
        assert Path(target).read_text() == before and "pwned" not in before
        assert sorted(env.files()) == ["pagination.py", "probe.py", "test_pagination.py"]
        assert env.step("submit").reward == 0.0
    finally:
        env.close()
    assert not (tmp_path / "escaped.txt").exists() and not Path("/tmp/reasonrl-coding-escape").exists()
    assert list(scratch.iterdir()) == []


@pytest.mark.skipif(not NAMESPACES and os.geteuid() == 0, reason="RLIMIT_NPROC does not bind root")
def test_fork_bomb_is_contained(scratch: Path) -> None:
    code = (
        "import os, subprocess\nfor _ in range(40):\n    try:\n"
        "        subprocess.Popen(['sleep', '765.432'])\n    except OSError:\n        break\n"
        "while True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    )
    start = time.monotonic()
    results = attack("intervals", "intervals.py", code, timeout_s=1.0)
    assert results[-1].reward == 0.0 and time.monotonic() - start < 60
    time.sleep(0.2)
    assert processes_with("765.432") == [] and list(scratch.iterdir()) == []


@needs_namespaces
def test_runaway_and_daemon_processes_are_killed(scratch: Path) -> None:
    code = (
        "import os\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        "        os.execvp('sleep', ['sleep', '654.321'])\n    os._exit(0)\nwhile True:\n    pass\n"
    )
    start = time.monotonic()
    results = attack(
        "dates", "dates.py", code, ("run tests", "run dates.py", "submit"), timeout_s=1.0, test_timeout_s=0.3
    )
    assert time.monotonic() - start < 60
    assert "TIMEOUT" in results[1].observation[0]["content"] or "stopped" in results[1].observation[0]["content"]
    assert "stopped: ran longer than" in results[2].observation[0]["content"]
    assert results[-1].reward == 0.0
    time.sleep(0.2)
    assert processes_with("654.321") == [] and list(scratch.iterdir()) == []


def test_big_files_are_refused(scratch: Path) -> None:
    big = "x = 1\n" * 20000  # 120 kB, over max_file_kb=64
    code = "with open('big.bin', 'wb') as f:\n    for _ in range(200):\n        f.write(b'0' * (1 << 20))\n"
    results, root = play(
        "shop", [f"write huge.py\n{fence(big)}", f"write filler.py\n{fence(code)}", "run filler.py", "submit"]
    )
    assert "over the limit" in results[0].observation[0]["content"]
    assert any(why in results[2].observation[0]["content"] for why in ("File too large", "file size limit")), results[2]
    assert results[-1].reward == 0.0 and not os.path.exists(root) and list(scratch.iterdir()) == []
    env = make_env(max_repo_kb=4, max_files=3)
    env.reset(REPOS["shop"])
    try:
        text = env.step(f"write more.py\n{fence('y = 2')}").observation[0]["content"]
        assert "at most 3 files" in text and "more.py" not in env.files()
    finally:
        env.close()


# -- commands, state keys, options, loader ------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, expected",
    [
        ("I will look first.\nread utils.py", ("read", "utils.py", [])),
        ("$ `cat 'a.py'`", ("read", "a.py", [])),
        ("Action: ls", ("ls", "", [])),
        ("```sh\nrun tests\n```", ("test", "", [])),
        ("python -m unittest", ("test", "", [])),
        ("python check.py", ("run", "check.py", [])),
        ("```python\nsubmit\n```\nDone.", ("submit", "", [])),
        ("write a.py\n```python\nx = 1\n```", ("write", "a.py", ["x = 1\n"])),
        ("replace a.py\n```\nold\n```\ntext\n```\nnew\n```", ("replace", "a.py", ["old\n", "new\n"])),
    ],
)
def test_parse_command(text: str, expected: tuple) -> None:
    command = parse_command(text)
    assert (command.name, command.arg, command.blocks) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("hello there", "No command found"),
        ("read a.py b.py", "Could not read the command `read a.py b.py`"),
        ("write a.py", "needs the complete new content"),
        ("replace a.py\n```\nold\n```", "two ``` blocks"),
    ],
)
def test_malformed_commands_get_the_usage(text: str, message: str) -> None:
    with pytest.raises(CommandError, match="Commands \\(one per reply\\)") as error:
        parse_command(text)
    assert message in str(error.value)


def test_replace_needs_one_exact_match_and_ls_read_errors() -> None:
    env = make_env()
    env.reset(REPOS["pagination"])
    try:
        texts = [
            env.step(a).observation[0]["content"]
            for a in [
                f"replace pagination.py\n{fence('nothing like this')}\n{fence('x')}",
                f"replace pagination.py\n{fence('per_page')}\n{fence('x')}",
                "read nothing.py",
                "nonsense",
                f"write pagination.py/x.py\n{fence('x')}",
                f"write {'x' * 300}.py\n{fence('x')}",
                "read a\x00b",
                "read .",
            ]
        ]
        assert "not found" in texts[0] and "occurs" in texts[1] and "no such file" in texts[2]
        assert "Commands (one per reply)" in texts[3] and "cannot write" in texts[4]
        assert "not a usable file name" in texts[5] and "not a usable file name" in texts[6]
        assert "directory" in texts[7]
        assert env.files() == REPOS["pagination"].metadata["files"]
    finally:
        env.close()


def test_state_keys_group_identical_states() -> None:
    envs = [make_env() for _ in range(3)]
    try:
        keys = [e.reset(REPOS["dates"]) and e.state_key() for e in envs]
        assert len(set(keys)) == 1
        for env, action in zip(envs, ["run tests", "run tests", f"write note.txt\n{fence('n')}"]):
            env.step(action)
        keys = [e.state_key() for e in envs]
        assert keys[0] == keys[1] != keys[2]
    finally:
        for env in envs:
            env.close()


def test_options_and_examples_are_checked() -> None:
    with pytest.raises(ValueError, match="output_chars"):
        Environment("coding", EnvContext(options={"output_chars": 0}))
    with pytest.raises(ValueError, match="no_such_option.*partial_credit"):
        Environment("coding", EnvContext(options={"no_such_option": 1}))
    env = make_env()
    with pytest.raises(ValueError, match="code_repos"):
        env.reset(Example(id="x", prompt=[{"role": "user", "content": "q"}]))


def test_task_loader(tmp_path: Path) -> None:
    assert sorted(REPOS) == sorted(FIXES) and [e.metadata["repo"] for e in TASK.eval] == ["dates", "html_escape"]
    task = load_task(TaskConfig(name="code_repos", options={"eval_repos": ["shop"]}))
    assert [e.metadata["repo"] for e in task.eval] == ["shop"] and len(task.train) == 5
    for bad in ({"eval_repos": ["nope"]}, {"eval_repos": sorted(FIXES)}, {"other": 1}):
        with pytest.raises(ValueError, match="eval_repos"):
            load_task(TaskConfig(name="code_repos", options=bad))
    repo = tmp_path / "mine"
    repo.mkdir()
    (repo / "m.py").write_text("X = 1\n")
    (repo / "t.py").write_text("import unittest\nclass T(unittest.TestCase):\n    def test_x(self):\n        pass\n")
    (repo / "task.json").write_text('{"issue": "none", "test_files": ["t.py"]}')
    (custom,) = load_task(TaskConfig(name="code_repos", path=str(tmp_path))).train
    assert custom.metadata["tests"] == [["t.py", "T", "test_x"]] and "task.json" not in custom.metadata["files"]
    os.symlink("/etc/passwd", repo / "link")
    with pytest.raises(ValueError, match="symbolic links"):
        load_task(TaskConfig(name="code_repos", path=str(tmp_path)))


# -- rollout: token in, token out ---------------------------------------------------------------------------
class ScriptedAgent:
    """An engine that plays each repository's fix script, one action per turn (all episodes move in step)."""

    def __init__(self, tokenizer: ByteTokenizer, scripts: dict[str, list[str]]) -> None:
        self.tokenizer, self.scripts, self.turn = tokenizer, scripts, 0

    def action_ids(self, repo: str, turn: int) -> list[int]:
        return self.tokenizer.encode(self.scripts[repo][turn]) + [self.tokenizer.eos_token_id]

    def generate(
        self, prompts: list[list[int]], params: SamplingParams, n: int, seed: int, keep: bool = False
    ) -> list[list[Completion]]:
        out = []
        for prompt in prompts:
            text = self.tokenizer.decode(prompt)
            repo = next(r for r in self.scripts if f"  {REPOS[r].metadata['test_files'][0]}\n" in text)
            ids = self.action_ids(repo, self.turn)
            out.append([Completion(ids, [-0.5] * len(ids), True) for _ in range(n)])
        self.turn += 1
        return out


class Recorded:
    """An episode that remembers the observations it returned."""

    def __init__(self, env) -> None:
        self.env, self.observations = env, []

    def reset(self, example: Example):
        return self.env.reset(example)

    def step(self, action: str):
        result = self.env.step(action)
        self.observations.append(result.observation)
        return result

    def state_key(self) -> str:
        return self.env.state_key()

    def close(self) -> None:
        self.env.close()


def test_rollout_token_in_token_out(scratch: Path) -> None:
    """Every repository through rollout: reward 1; the tokens are the prompt, then per turn the sampled ids
    unchanged (mask True) and the tokens of the observation the episode returned (mask False)."""
    tok = ByteTokenizer()
    scripts = {repo: fix_actions(repo) for repo in sorted(FIXES)}
    engine = ScriptedAgent(tok, scripts)
    env = Environment("coding", EnvContext(), max_turns=12, max_context_tokens=None)
    episodes: list[Recorded] = []
    env.make = lambda: episodes.append(Recorded(ENVS.get("coding")(env.ctx))) or episodes[-1]  # type: ignore
    trajectories = rollout(env, engine, tok, [REPOS[r] for r in scripts], n=1, params=SamplingParams(4096), seed=0)
    assert [t.reward for t in trajectories] == [1.0] * len(scripts) and list(scratch.iterdir()) == []
    for t, episode in zip(trajectories, episodes):
        repo = t.example.metadata["repo"]
        tokens = encode_chat(tok, t.example.prompt)
        mask = [False] * len(tokens)
        assert len(episode.observations) == len(scripts[repo]) and episode.observations[-1] is None
        for turn, observation in enumerate(episode.observations):
            ids = engine.action_ids(repo, turn)
            obs = observation_tokens(tok, observation) if observation is not None else []
            tokens, mask = tokens + ids + obs, mask + [True] * len(ids) + [False] * len(obs)
        assert t.tokens == tokens and t.mask == mask
        assert t.sampler_logp == [-0.5 if m else 0.0 for m in mask]
        assert t.num_turns == len(scripts[repo]) and t.step_rewards == [0.0] * (t.num_turns - 1) + [1.0]
        assert len(t.step_states) == t.num_turns and len(set(t.step_states)) > 1
        assert "tests passed" in episode.observations[1 + len({p for p, _, _ in FIXES[repo]})][0]["content"]


def test_rollout_closes_every_episode_when_a_reset_fails(scratch: Path) -> None:
    env = Environment("coding", EnvContext(), max_turns=2)
    broken = Example(id="broken", prompt=[{"role": "user", "content": "q"}])
    with pytest.raises(ValueError, match="code_repos"):
        rollout(
            env,
            ScriptedAgent(ByteTokenizer(), {}),
            ByteTokenizer(),
            [REPOS["dates"], broken],
            n=2,
            params=SamplingParams(8),
            seed=0,
        )
    assert list(scratch.iterdir()) == []


def test_one_training_step_on_the_coding_env(tmp_path: Path, scratch: Path) -> None:
    """The train loop runs on the multi-turn env (tiny random model): metrics written, no copy left behind."""
    from reasonrl.train import train
    from tests.helpers import tiny_config

    cfg = tiny_config(
        tmp_path,
        "steps=1",
        "task.name=code_repos",
        "task.path=null",
        "task.eval_size=1",
        "env.name=coding",
        "env.max_turns=2",
        "env.options={timeout_s: 5.0}",
        "prompts_per_step=2",
        "samples_per_prompt=2",
        "eval.samples=1",
        "sampling.max_new_tokens=4",
    )
    run_dir = train(cfg, quiet=True)
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [0, 1] and "rollout/reward" in metrics[1]
    assert [p for p in scratch.iterdir() if p.name.startswith("reasonrl-")] == []  # (torch caches may land here)

"""reasonrl feedback: the store (nothing lost or doubled, refusals write nothing), the API, and the page in a
real headless Chromium driven by keyboard and mouse, with two people judging at once and no network."""

import json
import multiprocessing
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from reasonrl.feedback import export
from reasonrl.feedback.pairs import rollout_pairs
from reasonrl.feedback.store import FeedbackError, Pair, Store

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def fake_run(tmp_path: Path, groups: int = 12, per_group: int = 4) -> Path:
    """A run directory with saved rollouts: `groups` prompts with `per_group` distinct completions each."""
    run_dir = tmp_path / "run"
    (run_dir / "rollouts").mkdir(parents=True)
    rows = [
        {
            "step": 3,
            "group": g,
            "id": f"t/train/{g}",
            "prompt": f"Calculate {g} + 2.",
            "answer": str(g + 2),
            "completion": f"{g} + 2 = {g + 2 + k}\nAnswer: {g + 2 + k}",
        }
        for g in range(groups)
        for k in range(per_group)
    ]
    (run_dir / "rollouts" / "step_000003.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run_dir


def test_pairs_from_rollouts_are_distinct_answers_of_one_prompt_and_reproducible(tmp_path):
    run_dir = fake_run(tmp_path)
    pairs = rollout_pairs(run_dir, limit=5, seed=1)
    assert len(pairs) == 5 and pairs == rollout_pairs(run_dir, limit=5, seed=1)
    for p in pairs:
        assert p.a != p.b and len(p.pool) == 2 and {p.a, p.b}.isdisjoint(p.pool)
        assert json.loads(p.prompt).startswith("Calculate") and p.a_source == "policy, training step 3"
    with pytest.raises(ValueError, match="no rollouts"):
        rollout_pairs(tmp_path, 5)


def test_a_judgement_is_written_once_and_never_changed(tmp_path):
    store = Store(tmp_path / "f.db")
    assert store.add_pairs([Pair('"q"', "x", "y", "s", "s"), Pair('"q2"', "u", "v", "s", "s")]) == 2
    assert store.add_pairs([Pair('"q"', "x", "y", "s", "s")]) == 0  # the same pair again: skipped
    pair = store.next_pair("ana")
    assert store.judge(pair.id, "ana", "a", nonce="n0000001") is True
    assert store.judge(pair.id, "ana", "a", nonce="n0000001") is False  # a retry: nothing new
    with pytest.raises(FeedbackError, match="already judged"):
        store.judge(pair.id, "ana", "b", nonce="n0000002")
    for bad in (dict(verdict="c"), dict(verdict="a", edited="z"), dict(verdict="a", edited=" ", edited_side="a")):
        with pytest.raises(FeedbackError):
            store.judge(2, "bob", nonce="n0000003", **bad)
    with pytest.raises(FeedbackError, match="does not exist"):
        store.judge(99, "bob", "a", nonce="n0000004")
    assert len(store.rows("judgements")) == 1
    assert store.next_pair("ana").id == 2 and store.next_pair("bob").id == 2  # fewest judgements first
    assert store.progress("ana") == {"pairs": 2, "judged_by_you": 1, "judgements": 1}


def test_preferences_from_verdicts_edits_and_regenerations(tmp_path):
    store = Store(tmp_path / "f.db")
    store.add_pairs([Pair('"q1"', "A1", "B1", "s", "s", pool=("C1",)), Pair('"q2"', "A2", "B2", "s", "s")])
    store.judge(1, "ana", "b", nonce="n0000001", reason="B shows its work")
    store.event(2, "ana", "regenerate", "a", "A2", "C2", nonce="n0000002")  # ana discarded A2 beside B2
    store.judge(2, "ana", "both_wrong", nonce="n0000003", edited="good", edited_side="b")
    store.judge(1, "bob", "tie", nonce="n0000004")
    prefs = {(p["kind"], p["chosen"], p["rejected"]) for p in store.preferences()}
    assert prefs == {
        ("judgement", "B1", "A1"),
        ("edit", "good", "B2"),  # the edited answer over the one it replaced
        ("edit", "good", "C2"),  # and, both being wrong, over the other answer ana saw (the regenerated one)
        ("regenerate", "B2", "A2"),
    }
    assert store.demonstrations() == [{"prompt": '"q2"', "completion": "good"}]
    j = store.rows("judgements")[1]
    assert (j["a"], j["b"]) == ("C2", "B2")  # what ana saw when she judged


def _judge_many(path: str, judge: str, count: int) -> None:
    store = Store(path)
    for i in range(count):
        pair = store.next_pair(judge)
        store.judge(pair.id, judge, "a" if i % 2 else "b", nonce=f"{judge}-{i:06d}")
        store.judge(pair.id, judge, "a" if i % 2 else "b", nonce=f"{judge}-{i:06d}")  # each request sent twice


def test_two_processes_judging_at_once_lose_and_double_nothing(tmp_path):
    path = tmp_path / "f.db"
    Store(path).add_pairs([Pair(json.dumps(f"q{i}"), f"a{i}", f"b{i}", "s", "s") for i in range(30)])
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_judge_many, args=(str(path), name, 25)) for name in ("ana", "bob")]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
        assert w.exitcode == 0
    rows = Store(path).rows("judgements")
    assert len(rows) == 50 and len({(r["pair_id"], r["judge"]) for r in rows}) == 50


# ---------- the API


@pytest.fixture
def client(tmp_path):
    from fastapi.testclient import TestClient

    from reasonrl.feedback.app import make_app

    store = Store(tmp_path / "f.db")
    store.add_pairs(rollout_pairs(fake_run(tmp_path), 6))
    return TestClient(make_app(store, "secret-token")), store


def test_the_api_needs_the_token_and_refuses_bad_requests_writing_nothing(client):
    c, store = client
    good = {"pair_id": 1, "judge": "ana", "verdict": "a", "nonce": "abcdef123456"}
    for headers in ({}, {"X-Reasonrl-Token": "guess"}):
        r = c.post("/api/judge", json=good, headers=headers)
        assert r.status_code == 403 and "nothing was written" in r.json()["error"]
    auth = {"X-Reasonrl-Token": "secret-token"}
    bad = [
        good | {"verdict": "c"},
        good | {"pair_id": "one"},
        good | {"judge": "<script>"},
        good | {"nonce": "x"},
        good | {"extra": 1},
        {k: v for k, v in good.items() if k != "verdict"},
    ]
    for body in bad:
        r = c.post("/api/judge", json=body, headers=auth)
        assert r.status_code == 422 and r.json()["error"].startswith("malformed request"), body
    r = c.post("/api/judge", content=b"not json", headers=auth | {"Content-Type": "application/json"})
    assert r.status_code == 422
    r = c.post("/api/judge", json=good | {"pair_id": 999}, headers=auth)
    assert r.status_code == 409 and "does not exist" in r.json()["error"]
    assert store.rows("judgements") == [] and store.rows("events") == []
    r = c.post("/api/judge", json=good, headers=auth)
    assert r.status_code == 200 and r.json()["next"]["pair_id"] == 2
    assert c.post("/api/judge", json=good, headers=auth).json()["written"] is False  # the same nonce
    r = c.post("/api/judge", json=good | {"nonce": "another-nonce"}, headers=auth)
    assert r.status_code == 409 and "already judged" in r.json()["error"]
    assert len(store.rows("judgements")) == 1
    assert "secret-token" in c.get("/").text  # the page carries the token for its own requests


def test_regenerate_draws_from_the_pool_and_is_recorded(client):
    c, store = client
    auth = {"X-Reasonrl-Token": "secret-token"}
    first = c.get("/api/next", params={"judge": "ana"}, headers=auth).json()
    r = c.post(
        "/api/regenerate",
        json={"pair_id": first["pair_id"], "judge": "ana", "side": "a", "nonce": "regen-0001"},
        headers=auth,
    ).json()
    assert r["a"] != first["a"] and r["b"] == first["b"]
    assert c.get("/api/next", params={"judge": "ana"}, headers=auth).json()["a"] == r["a"]  # ana keeps seeing it
    assert c.get("/api/next", params={"judge": "bob"}, headers=auth).json()["a"] == first["a"]  # bob does not
    (event,) = store.rows("events")
    assert (event["old"], event["new"], event["other"]) == (first["a"], r["a"], first["b"])


def test_export_writes_preferences_and_demonstrations(tmp_path, capsys):
    from reasonrl.cli import main

    run_dir = fake_run(tmp_path)
    store = Store(run_dir / "feedback.db")
    store.add_pairs(rollout_pairs(run_dir, 3))
    store.judge(1, "ana", "a", nonce="n0000001")
    store.judge(2, "ana", "both_wrong", nonce="n0000002", edited="2 + 2 = 4\nAnswer: 4", edited_side="a")
    main(["feedback", "export", str(run_dir)])
    prefs = [json.loads(x) for x in (run_dir / "preferences.jsonl").read_text().splitlines()]
    demos = [json.loads(x) for x in (run_dir / "demonstrations.jsonl").read_text().splitlines()]
    assert [p["kind"] for p in prefs] == ["judgement", "edit", "edit"] and prefs[0]["prompt"] == "Calculate 0 + 2."
    assert demos == [{"prompt": "Calculate 1 + 2.", "completion": "2 + 2 = 4\nAnswer: 4"}]
    assert "wrote 3 preferences" in capsys.readouterr().out
    with pytest.raises(ValueError, match="no feedback.db"):
        export(tmp_path, None, None)


# ---------- the page in a real browser


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    import uvicorn

    from reasonrl.feedback.app import make_app

    store = Store(tmp_path / "f.db")
    store.add_pairs(rollout_pairs(fake_run(tmp_path, groups=25), 25))
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(make_app(store, "tok-123"), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", store
    srv.should_exit = True
    thread.join(10)


@pytest.fixture
def browser():
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def offline_page(browser, base: str, outside: list[str]):
    """A page in its own context whose requests beyond the server are blocked and recorded."""
    page = browser.new_context().new_page()

    def only_the_server(route):
        if route.request.url.startswith(base):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_server)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    return page, errors


def test_ten_judgements_by_keyboard_and_mouse_make_ten_rows(server, browser):
    base, store = server
    outside: list[str] = []
    page, errors = offline_page(browser, base, outside)
    page.goto(f"{base}/")
    page.fill("#name", "ana")
    page.keyboard.press("Enter")
    page.wait_for_selector("#text-a:not(:empty)")
    for i in range(10):
        before = page.text_content("#progress")
        if i % 2:
            page.click("button[data-verdict='b']" if i % 4 == 1 else "button[data-verdict='tie']")
        else:
            page.keyboard.press("1234"[i // 2 % 4])  # keys 1, 2, 3, 4, 1: A, B, tie, both wrong
        page.wait_for_function("p => document.querySelector('#progress').textContent !== p", arg=before)
    rows = store.rows("judgements")
    assert len(rows) == 10 and {r["judge"] for r in rows} == {"ana"}
    assert "10 judged by you" in page.text_content("#progress")
    # typing a reason does not fire shortcuts; the reason is stored with the next verdict
    page.keyboard.press("r")
    page.keyboard.type("1 and 2 are fine")
    page.keyboard.press("Escape")
    page.keyboard.press("2")
    page.wait_for_function("() => document.querySelector('#progress').textContent.startsWith('11')")
    assert store.rows("judgements")[-1]["reason"] == "1 and 2 are fine"
    # regenerate and edit go in as implicit feedback and a demonstration
    page.click("#regen-b")
    page.wait_for_function("() => document.querySelector('#message').textContent.includes('replaced')")
    page.keyboard.press("e")
    page.fill("#edited", "13 + 2 = 15\nAnswer: 15")
    page.click("button[data-verdict='both_wrong']")
    page.wait_for_function("() => document.querySelector('#progress').textContent.startsWith('12')")
    assert len(store.rows("events")) == 1 and len(store.demonstrations()) == 1
    assert outside == [] and errors == []


def test_two_people_at_once_lose_nothing_and_a_forged_request_is_refused(server, browser):
    base, store = server
    outside: list[str] = []
    pages = []
    for name in ("ana", "bob"):
        page, errors = offline_page(browser, base, outside)
        page.goto(f"{base}/?judge={name}")
        page.wait_for_selector("#text-a:not(:empty)")
        pages.append((page, errors))
    for i in range(8):  # both press a key, then both wait: their requests are in flight at the same time
        shown = [page.text_content("#progress") for page, _ in pages]
        for page, _ in pages:
            page.keyboard.press("1" if i % 2 else "2")
        for (page, _), before in zip(pages, shown):
            page.wait_for_function("p => document.querySelector('#progress').textContent !== p", arg=before)
    rows = store.rows("judgements")
    assert sorted((r["judge"]) for r in rows) == ["ana"] * 8 + ["bob"] * 8
    assert len({(r["pair_id"], r["judge"]) for r in rows}) == 16
    assert all(errors == [] for _, errors in pages)
    # a request without the page's token (as another site would send it) is refused and writes nothing
    page = pages[0][0]
    status = page.evaluate(
        """async () => (await fetch('/api/judge', {method: 'POST', headers: {'Content-Type': 'application/json'},
            body: JSON.stringify({pair_id: 20, judge: 'eve', verdict: 'a', nonce: 'forged-0001'})})).status"""
    )
    assert status == 403 and len(store.rows("judgements")) == 16
    assert outside == []


def test_model_pairs_put_the_trained_policy_against_its_base_on_held_out_problems(tmp_path):
    from reasonrl.feedback.pairs import model_pairs
    from reasonrl.train import train
    from tests.helpers import tiny_config

    run_dir = train(tiny_config(tmp_path, "steps=4", "sampling.max_new_tokens=12"), quiet=True)
    pairs = model_pairs(run_dir, limit=6, samples=2, seed=0)
    assert pairs and len(pairs) <= 6
    from reasonrl.tasks import load_task
    from reasonrl.train import resume_config

    task = load_task(resume_config(run_dir).task)
    held_out = {e.id for e in task.eval}
    for p in pairs:
        assert {p.a_source, p.b_source} == {"policy after step 4", "base model"}
        assert p.a != p.b and {p.a, p.b}.isdisjoint(p.pool)
        assert p.group in held_out
    assert model_pairs(run_dir, limit=6, samples=2, seed=0) == pairs  # the same seed: the same pairs
    with pytest.raises(ValueError, match="LoRA adapter/ of a finished run"):
        model_pairs(tmp_path, 2)


def test_a_recipe_gives_pairs_of_its_model_and_a_feedback_directory(tmp_path, monkeypatch):
    """`reasonrl feedback RECIPE.yaml`: two different answers of the recipe's model to one train problem each,
    stored in runs/<name>-feedback, where export finds them."""
    import yaml

    from reasonrl.feedback import serve
    from reasonrl.feedback.pairs import recipe_pairs
    from reasonrl.tasks import load_task
    from tests.helpers import tiny_config, tiny_overrides

    cfg = tiny_config(tmp_path, "sampling.max_new_tokens=12")
    pairs = recipe_pairs(cfg, limit=5, samples=3, seed=0)
    train_ids = {e.id for e in load_task(cfg.task).train}
    assert pairs and len(pairs) <= 5
    for p in pairs:
        assert p.a != p.b and p.group in train_ids and p.a_source == "tiny:llama"
    assert recipe_pairs(cfg, limit=5, samples=3, seed=0) == pairs
    recipe = tmp_path / "recipe.yaml"
    data: dict = {}
    for text in tiny_overrides(tmp_path, "sampling.max_new_tokens=12"):
        key, _, value = text.partition("=")
        node = data
        *parents, leaf = key.split(".")
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = yaml.safe_load(value) if value else ""
    recipe.write_text(yaml.safe_dump(data))
    monkeypatch.setattr("uvicorn.run", lambda *a, **k: None)  # make the pairs, do not serve
    serve(recipe, 4, "127.0.0.1", 8765, "ana")
    store_dir = tmp_path / "runs" / "tiny-feedback"
    assert (store_dir / "feedback.db").is_file()


def test_pairs_skip_answers_that_differ_only_in_punctuation_and_prefer_different_answers(tmp_path):
    from reasonrl.feedback.pairs import contrasting_first, distinct

    assert distinct(["9 + 3 = 12", "9 + 3 = 12.", " 9 + 3 =  12 ", "", "9 + 3 = 11"]) == ["9 + 3 = 12", "9 + 3 = 11"]
    assert contrasting_first(["4 - 10 = -6", "4 - 10 = -6 indeed", "4 - 10 = -4"])[:2] == ["4 - 10 = -6", "4 - 10 = -4"]
    assert contrasting_first(["a 1", "b 1"]) == ["a 1", "b 1"]  # no disagreement: order kept
    run_dir = tmp_path / "run"
    (run_dir / "rollouts").mkdir(parents=True)
    texts = ["2 + 2 = 4", "2 + 2 = 4.", "2 + 2 = 4 ", "2 + 2 = 5", "2 + 2 = 4!"]
    rows = [{"step": 1, "group": 0, "id": "t/0", "prompt": "Calculate 2 + 2.", "completion": t} for t in texts]
    (run_dir / "rollouts" / "step_000001.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for seed in range(5):
        (pair,) = rollout_pairs(run_dir, 5, seed)
        assert {pair.a, pair.b} == {"2 + 2 = 4", "2 + 2 = 5"} and pair.pool == ()

"""The feedback database: pairs of answers, people's judgements of them, and implicit feedback, in one SQLite file.

    store = Store(run_dir / "feedback.db")           # creates the tables on first use
    store.add_pairs([Pair(prompt, a, b, a_source, b_source, group)])
    pair = store.next_pair("ana")                      # the least-judged pair that ana has not judged, or None
    store.judge(pair.id, "ana", "a", nonce="c0ffee", reason="shows its work")
    store.event(pair.id, "ana", "regenerate", "b", old_text, nonce="...")
    rows = store.preferences()                        # chosen / rejected rows for reward-model training

Safe with several people judging at once, each request on its own connection: every write is one transaction
(BEGIN IMMEDIATE, WAL journal, a busy timeout), a judgement is unique per (pair, judge), and each submission
carries the client's nonce, unique too, so a retried request never writes a second row. A judgement that
conflicts with an earlier one by the same person is refused, not overwritten.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VERDICTS = ("a", "b", "tie", "both_wrong")
EVENTS = ("regenerate", "edit")
SCHEMA = """
CREATE TABLE IF NOT EXISTS pairs (
    id INTEGER PRIMARY KEY,
    prompt TEXT NOT NULL,
    a TEXT NOT NULL,
    b TEXT NOT NULL,
    a_source TEXT NOT NULL,
    b_source TEXT NOT NULL,
    grp TEXT NOT NULL,
    pool TEXT NOT NULL DEFAULT '[]',
    created REAL NOT NULL,
    UNIQUE (prompt, a, b)
);
CREATE TABLE IF NOT EXISTS judgements (
    id INTEGER PRIMARY KEY,
    pair_id INTEGER NOT NULL REFERENCES pairs (id),
    judge TEXT NOT NULL,
    verdict TEXT NOT NULL CHECK (verdict IN ('a', 'b', 'tie', 'both_wrong')),
    reason TEXT,
    edited TEXT,
    edited_side TEXT CHECK (edited_side IN ('a', 'b') OR edited_side IS NULL),
    a TEXT NOT NULL,
    b TEXT NOT NULL,
    nonce TEXT NOT NULL UNIQUE,
    created REAL NOT NULL,
    UNIQUE (pair_id, judge)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    pair_id INTEGER NOT NULL REFERENCES pairs (id),
    judge TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('regenerate', 'edit')),
    side TEXT NOT NULL CHECK (side IN ('a', 'b')),
    old TEXT NOT NULL,
    new TEXT NOT NULL,
    other TEXT NOT NULL,
    nonce TEXT NOT NULL UNIQUE,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS shown (
    pair_id INTEGER NOT NULL REFERENCES pairs (id),
    judge TEXT NOT NULL,
    a TEXT NOT NULL,
    b TEXT NOT NULL,
    PRIMARY KEY (pair_id, judge)
);
"""


class FeedbackError(ValueError):
    """A request the store refuses (unknown pair, bad verdict, a second judgement): nothing was written."""


@dataclass(frozen=True)
class Pair:
    prompt: str
    a: str
    b: str
    a_source: str
    b_source: str
    group: str = ""
    """What the two answers answer (a problem id and step): regenerate draws from the same group's pool."""
    pool: tuple[str, ...] = ()
    """Other answers to the same prompt, for 'regenerate' without a model."""
    id: int | None = None


class Store:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        with self._connect() as db:
            db.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA foreign_keys=ON")
            yield db
        finally:
            db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction that takes the write lock at once (no lost update between a read and its write)."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # ------------------------------------------------------------------ pairs

    def add_pairs(self, pairs: list[Pair]) -> int:
        """Insert pairs (a pair already there is skipped); returns how many were new."""
        now = time.time()
        with self._write() as db:
            before = db.execute("SELECT COUNT(*) FROM pairs").fetchone()[0]
            db.executemany(
                "INSERT OR IGNORE INTO pairs (prompt, a, b, a_source, b_source, grp, pool, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(p.prompt, p.a, p.b, p.a_source, p.b_source, p.group, json.dumps(list(p.pool)), now) for p in pairs],
            )
            return int(db.execute("SELECT COUNT(*) FROM pairs").fetchone()[0] - before)

    def pair(self, pair_id: int, judge: str | None = None) -> Pair:
        """A pair as `judge` sees it (after their regenerations), or as stored."""
        with self._connect() as db:
            row = db.execute(
                "SELECT id, prompt, a, b, a_source, b_source, grp, pool FROM pairs WHERE id = ?", (pair_id,)
            ).fetchone()
            if row is None:
                raise FeedbackError(f"pair {pair_id} does not exist")
            pair = Pair(row[1], row[2], row[3], row[4], row[5], row[6], tuple(json.loads(row[7])), row[0])
            if judge is not None:
                seen = db.execute("SELECT a, b FROM shown WHERE pair_id = ? AND judge = ?", (pair_id, judge)).fetchone()
                if seen is not None:
                    pair = Pair(
                        pair.prompt, seen[0], seen[1], pair.a_source, pair.b_source, pair.group, pair.pool, pair.id
                    )
            return pair

    def next_pair(self, judge: str) -> Pair | None:
        """The pair with the fewest judgements (then the oldest) that `judge` has not judged yet."""
        with self._connect() as db:
            row = db.execute(
                "SELECT p.id FROM pairs p LEFT JOIN judgements j ON j.pair_id = p.id "
                "WHERE p.id NOT IN (SELECT pair_id FROM judgements WHERE judge = ?) "
                "GROUP BY p.id ORDER BY COUNT(j.id), p.id LIMIT 1",
                (judge,),
            ).fetchone()
        return None if row is None else self.pair(row[0], judge)

    def progress(self, judge: str) -> dict[str, int]:
        with self._connect() as db:
            total = db.execute("SELECT COUNT(*) FROM pairs").fetchone()[0]
            mine = db.execute("SELECT COUNT(*) FROM judgements WHERE judge = ?", (judge,)).fetchone()[0]
            everyone = db.execute("SELECT COUNT(*) FROM judgements").fetchone()[0]
        return {"pairs": total, "judged_by_you": mine, "judgements": everyone}

    # -------------------------------------------------------------- feedback

    def _replay(self, db: sqlite3.Connection, table: str, nonce: str) -> bool:
        return db.execute(f"SELECT 1 FROM {table} WHERE nonce = ?", (nonce,)).fetchone() is not None  # noqa: S608

    def judge(
        self,
        pair_id: int,
        judge: str,
        verdict: str,
        nonce: str,
        reason: str | None = None,
        edited: str | None = None,
        edited_side: str | None = None,
    ) -> bool:
        """Record a judgement; False when this nonce was already recorded (a retry: nothing new is written).
        `edited` is a better answer the person wrote (in place of `edited_side`'s): it becomes a demonstration
        and a preference over the answer it replaced."""
        if verdict not in VERDICTS:
            raise FeedbackError(f"verdict {verdict!r} is not one of {', '.join(VERDICTS)}")
        if (edited is None) != (edited_side is None) or edited_side not in (None, "a", "b"):
            raise FeedbackError("an edited answer needs edited_side 'a' or 'b' (the answer it replaces)")
        if edited is not None and not edited.strip():
            raise FeedbackError("the edited answer is empty")
        pair = self.pair(pair_id, judge)  # what this person saw
        with self._write() as db:
            if self._replay(db, "judgements", nonce):
                return False
            if db.execute("SELECT 1 FROM judgements WHERE pair_id = ? AND judge = ?", (pair_id, judge)).fetchone():
                raise FeedbackError(f"{judge} already judged pair {pair_id}; a judgement is not changed afterwards")
            db.execute(
                "INSERT INTO judgements (pair_id, judge, verdict, reason, edited, edited_side, a, b, nonce, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (pair_id, judge, verdict, reason or None, edited, edited_side, pair.a, pair.b, nonce, time.time()),
            )
        return True

    def event(self, pair_id: int, judge: str, kind: str, side: str, old: str, new: str, nonce: str) -> bool:
        """Implicit feedback: `judge` regenerated (or edited) `side`, replacing `old` by `new` in their view."""
        if kind not in EVENTS or side not in ("a", "b"):
            raise FeedbackError(f"event {kind!r} on side {side!r}: kind is one of {', '.join(EVENTS)}, side a or b")
        pair = self.pair(pair_id, judge)
        with self._write() as db:
            if self._replay(db, "events", nonce):
                return False
            other = pair.b if side == "a" else pair.a  # what stayed on screen beside the discarded answer
            db.execute(
                "INSERT INTO events (pair_id, judge, kind, side, old, new, other, nonce, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (pair_id, judge, kind, side, old, new, other, nonce, time.time()),
            )
            a, b = (new, pair.b) if side == "a" else (pair.a, new)
            db.execute(
                "INSERT INTO shown (pair_id, judge, a, b) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (pair_id, judge) DO UPDATE SET a = excluded.a, b = excluded.b",
                (pair_id, judge, a, b),
            )
        return True

    # ----------------------------------------------------------------- export

    def rows(self, table: str) -> list[dict[str, Any]]:
        assert table in ("pairs", "judgements", "events"), table
        with self._connect() as db:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute(f"SELECT * FROM {table} ORDER BY id")]  # noqa: S608

    def preferences(self) -> list[dict[str, Any]]:
        """chosen / rejected pairs: 'a' or 'b' verdicts; an edited answer over the one it replaced (and over the
        other, when the verdict was both_wrong); a regenerated answer's replacement is not assumed better, so a
        regenerate says only that the other side was preferred to the discarded answer (implicit)."""
        pairs = {p["id"]: p for p in self.rows("pairs")}
        out: list[dict[str, Any]] = []
        for j in self.rows("judgements"):
            pair = pairs[j["pair_id"]]
            texts = {"a": j["a"], "b": j["b"]}
            base = {
                "prompt": pair["prompt"],
                "pair_id": j["pair_id"],
                "judge": j["judge"],
                "created": j["created"],
                "sources": [pair["a_source"], pair["b_source"]],
            }
            if j["verdict"] in ("a", "b"):
                other = "b" if j["verdict"] == "a" else "a"
                out.append(base | {"chosen": texts[j["verdict"]], "rejected": texts[other], "kind": "judgement"})
            if j["edited"]:
                replaced = [j["edited_side"]] + (
                    ["b" if j["edited_side"] == "a" else "a"] if j["verdict"] == "both_wrong" else []
                )
                out += [base | {"chosen": j["edited"], "rejected": texts[s], "kind": "edit"} for s in replaced]
        for e in self.rows("events"):
            if e["kind"] != "regenerate":
                continue
            out.append(
                {
                    "prompt": pairs[e["pair_id"]]["prompt"],
                    "pair_id": e["pair_id"],
                    "judge": e["judge"],
                    "created": e["created"],
                    "sources": [pairs[e["pair_id"]]["a_source"], pairs[e["pair_id"]]["b_source"]],
                    "chosen": e["other"],
                    "rejected": e["old"],
                    "kind": "regenerate",
                }
            )
        return out

    def demonstrations(self) -> list[dict[str, str]]:
        """The answers people wrote, as SFT demonstrations (prompt, completion)."""
        pairs = {p["id"]: p for p in self.rows("pairs")}
        return [
            {"prompt": pairs[j["pair_id"]]["prompt"], "completion": j["edited"]}
            for j in self.rows("judgements")
            if j["edited"]
        ]

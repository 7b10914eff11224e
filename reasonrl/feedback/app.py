"""The feedback web app (FastAPI): one page that shows a prompt and two answers, and a small JSON API behind it.

    app = make_app(store, token)          # served by `reasonrl feedback` with uvicorn
    GET  /                                the page (self-contained: no CDN, works offline)
    GET  /api/next?judge=NAME             the next pair for NAME, or {"done": true}
    POST /api/judge                       {pair_id, judge, verdict: a|b|tie|both_wrong, nonce,
                                           reason?, edited?, edited_side?}
    POST /api/regenerate                  {pair_id, judge, side: a|b, nonce}: another answer from the pair's pool
    GET  /api/progress?judge=NAME

Every /api request must carry the session token in the X-Reasonrl-Token header (the page has it; a page on
another site cannot read it or set that header), so a forged or cross-site request is refused with 403 and
writes nothing. A malformed body gets 422 with one line naming the field; a refused judgement (unknown pair,
a second verdict on the same pair) gets 409 with its reason. Nothing is written unless the whole request is
valid.
"""

from __future__ import annotations

import hmac
import json
import random
import re
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel, Field

from reasonrl.feedback.store import FeedbackError, Store

JUDGE = re.compile(r"^[\w .@-]{1,64}$")
MAX_TEXT = 20_000


class Judgement(BaseModel, extra="forbid"):
    pair_id: int
    judge: str = Field(pattern=JUDGE.pattern)
    verdict: Literal["a", "b", "tie", "both_wrong"]
    nonce: str = Field(min_length=8, max_length=64, pattern=r"^[\w-]+$")
    reason: str | None = Field(default=None, max_length=500)
    edited: str | None = Field(default=None, max_length=MAX_TEXT)
    edited_side: Literal["a", "b"] | None = None


class Regenerate(BaseModel, extra="forbid"):
    pair_id: int
    judge: str = Field(pattern=JUDGE.pattern)
    side: Literal["a", "b"]
    nonce: str = Field(min_length=8, max_length=64, pattern=r"^[\w-]+$")


def page_html(token: str, judge: str) -> str:
    template = resources.files("reasonrl.feedback").joinpath("page.html").read_text()
    config = json.dumps({"token": token, "judge": judge}).replace("</", "<\\/")
    return template.replace("/*CONFIG*/null", config)


def next_view(store: Store, judge: str) -> dict[str, Any]:
    """What the page shows `judge` next: a pair (prompt, A, B) and the progress, or done."""
    pair = store.next_pair(judge)
    progress = store.progress(judge)
    if pair is None:
        return {"done": True, "progress": progress}
    return {
        "done": False,
        "pair_id": pair.id,
        "prompt": json.loads(pair.prompt),
        "a": pair.a,
        "b": pair.b,
        "can_regenerate": bool(pair.pool),
        "progress": progress,
    }


def make_app(store: Store, token: str, default_judge: str = "", page_needs_token: bool = False) -> Any:
    """The app over `store`. page_needs_token: the page itself needs ?token= (when bound beyond loopback, so
    that reaching the port is not enough to get the token); the API always needs the header."""
    from fastapi import FastAPI, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse

    app = FastAPI(title="reasonrl feedback", docs_url=None, redoc_url=None, openapi_url=None)

    def refused(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        return refused(422, f"malformed request: {where or 'body'}: {first.get('msg', 'invalid')}; nothing was written")

    @app.middleware("http")
    async def check_token(request: Request, call_next: Any) -> Any:
        if request.url.path.startswith("/api/"):
            given = request.headers.get("x-reasonrl-token", "")
            if not hmac.compare_digest(given.encode(), token.encode()):
                return refused(403, "missing or wrong X-Reasonrl-Token: request refused, nothing was written")
        return await call_next(request)

    @app.get("/", response_class=HTMLResponse, response_model=None)
    def index(
        judge: str = Query(default=default_judge, max_length=64), token_given: str = Query(default="", alias="token")
    ) -> str | JSONResponse:
        if page_needs_token and not hmac.compare_digest(token_given.encode(), token.encode()):
            return refused(403, "this server needs the token it printed at start: open the URL it printed")
        return page_html(token, judge if JUDGE.match(judge or "") else "")

    @app.get("/api/next")
    def next_pair(judge: str = Query(pattern=JUDGE.pattern)) -> dict[str, Any]:
        return next_view(store, judge)

    @app.get("/api/progress")
    def progress(judge: str = Query(pattern=JUDGE.pattern)) -> dict[str, int]:
        return store.progress(judge)

    @app.post("/api/judge", response_model=None)
    def judge(body: Judgement) -> dict[str, Any] | JSONResponse:
        try:
            written = store.judge(
                body.pair_id, body.judge, body.verdict, body.nonce, body.reason, body.edited, body.edited_side
            )
        except FeedbackError as e:
            return refused(409, f"{e}; nothing was written")
        return {"ok": True, "written": written, "next": next_view(store, body.judge)}

    @app.post("/api/regenerate", response_model=None)
    def regenerate(body: Regenerate) -> dict[str, Any] | JSONResponse:
        try:
            pair = store.pair(body.pair_id, body.judge)
        except FeedbackError as e:
            return refused(409, f"{e}; nothing was written")
        old = pair.a if body.side == "a" else pair.b
        choices = [t for t in pair.pool if t not in (pair.a, pair.b)]
        if not choices:
            return refused(409, f"pair {body.pair_id} has no other answer to show; nothing was written")
        new = random.Random(body.nonce).choice(choices)
        store.event(body.pair_id, body.judge, "regenerate", body.side, old, new, body.nonce)
        shown = store.pair(body.pair_id, body.judge)
        return {"ok": True, "a": shown.a, "b": shown.b}

    return app

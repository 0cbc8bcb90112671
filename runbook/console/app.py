"""The console's web app: server-rendered pages over the model, one JSON view per page, and
the live feed as server-sent events. Nothing here writes: GET and HEAD only, and the replay
POST, which runs in memory.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import msgspec
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from events.vocabulary import ReasonCode, State
from runbook.console.live import Hub
from runbook.console.model import OPS_LOG, LogModel
from runbook.console.security import Guard, Settings, origin_ok
from runbook.console.views import Query

HERE = Path(__file__).resolve().parent
HEARTBEAT = 5.0
SORTS = ("transfer", "state", "reason", "attempts", "bytes", "duration", "last_seq", "started")

Followers = Callable[[], Coroutine[Any, Any, None]]


def build_app(model: LogModel, hub: Hub, settings: Settings, followers: Followers | None = None) -> Starlette:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True), auto_reload=False)
    env.globals["csrf"] = settings.csrf()
    views = _Views(model, hub, settings, env)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        import anyio

        async with anyio.create_task_group() as group:
            if followers is not None:
                group.start_soon(followers)
            yield
            group.cancel_scope.cancel()

    routes = [
        Route("/", views.transfers),
        Route("/transfer/{key:path}", views.transfer),
        Route("/replay", views.replay, methods=["POST"]),
        Route("/health", views.health),
        Route("/event/{log}/{seq:int}", views.event),
        Route("/artifact", views.artifact),
        Route("/live", views.live),
        Route("/api/transfers", views.api_transfers),
        Route("/api/transfer/{key:path}", views.api_transfer),
        Route("/api/health", views.api_health),
        Route("/api/progress", views.api_progress),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    return Starlette(routes=routes, middleware=[Middleware(Guard, settings=settings)], lifespan=lifespan)


def _json(value: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(value), status_code=status, media_type="application/json")


class _Views:
    def __init__(self, model: LogModel, hub: Hub, settings: Settings, env: Environment) -> None:
        self.model, self.hub, self.settings, self.env = model, hub, settings, env

    def _page(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        progress = self.model.progress()
        html = self.env.get_template(name).render(progress=progress, logs=[s.text for s in self.model.logs], **context)
        return HTMLResponse(html, status_code=status)

    def _live_attrs(self) -> str:
        return ",".join(str(self.hub.last_seq(i)) for i in range(len(self.model.logs)))

    async def transfers(self, request: Request) -> Response:
        query = _query(request)
        page = self.model.transfers(query)
        return self._page(
            "transfers.html",
            page=page,
            query=query,
            states=[s.value for s in State],
            reasons=[r.value for r in ReasonCode],
            after=self._live_attrs(),
        )

    async def api_transfers(self, request: Request) -> Response:
        return _json(self.model.transfers(_query(request)))

    async def transfer(self, request: Request) -> Response:
        detail = self.model.transfer(request.path_params["key"])
        if detail is None:
            return self._page("missing.html", status=404, what=f"no transfer {request.path_params['key']!r}")
        return self._page("transfer.html", detail=detail, after=self._live_attrs())

    async def api_transfer(self, request: Request) -> Response:
        detail = self.model.transfer(request.path_params["key"])
        return _json(detail) if detail is not None else _json({"error": "no such transfer"}, 404)

    async def replay(self, request: Request) -> Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")[:4096]))  # a form of three short fields
        token = form.get("csrf", "")
        if not origin_ok(headers, self.settings.hosts()) or not self.settings.csrf_ok(token):
            return PlainTextResponse("refused: a replay must come from a console page (CSRF token and Origin)\n", status_code=403)
        log, transfer_id = form.get("log", ""), form.get("transfer_id", "")
        if not log.isdigit() or int(log) >= len(self.model.logs):
            return PlainTextResponse("no such log\n", status_code=400)
        import anyio

        result = await anyio.to_thread.run_sync(self.model.replay, int(log), transfer_id)
        return self._page("replay.html", result=result, log_text=self.model.logs[int(log)].text)

    async def health(self, request: Request) -> Response:
        return self._page("health.html", health=self.model.health())

    async def api_progress(self, request: Request) -> Response:
        return _json(self.model.progress())

    async def api_health(self, request: Request) -> Response:
        return _json(self.model.health())

    async def event(self, request: Request) -> Response:
        name, seq = request.path_params["log"], request.path_params["seq"]
        log = OPS_LOG if name == "ops" else int(name) if name.isdigit() else -2
        entry = self.model.event(log, seq)
        if entry is None:
            return self._page("missing.html", status=404, what=f"no record {seq} in log {name}")
        log_text = "the operations log" if log == OPS_LOG else self.model.logs[log].text
        return self._page("event.html", entry=entry, log_text=log_text, log=name)

    async def artifact(self, request: Request) -> Response:
        text = request.query_params.get("path", "")
        meta = self.model.artifact(text)
        if meta is None:
            return self._page("missing.html", status=404, what="only paths under the console's --root are shown")
        return self._page("artifact.html", meta=meta)

    async def live(self, request: Request) -> Response:
        log_text = request.query_params.get("log", "0")
        if not log_text.isdigit() or int(log_text) >= len(self.model.logs):
            return PlainTextResponse("no such log\n", status_code=400)
        log = int(log_text)
        resume = request.headers.get("last-event-id") or request.query_params.get("after", "")
        after = int(resume) if resume.isdigit() else self.hub.last_seq(log)

        async def stream() -> AsyncIterator[bytes]:
            yield b"retry: 1000\n: connected\n\n"
            async for item in self.hub.subscribe(log, after, heartbeat=HEARTBEAT):
                if item is None:
                    yield b": ping\n\n"
                else:
                    yield b"id: %d\nevent: record\ndata: %s\n\n" % (item.seq, msgspec.json.encode(item))

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"x-accel-buffering": "no"})


def _query(request: Request) -> Query:
    params = request.query_params
    sort = params.get("sort", "last_seq")
    page, size = params.get("page", "1"), params.get("size", "50")
    return Query(
        state=params.get("state", ""),
        reason=params.get("reason", ""),
        artifact_class=params.get("class", ""),
        text=params.get("q", "")[:200],
        sort=sort if sort in SORTS else "last_seq",  # type: ignore[arg-type]
        descending=params.get("order", "desc") != "asc",
        page=int(page) if page.isdigit() else 1,
        size=int(size) if size.isdigit() and int(size) > 0 else 50,
    )

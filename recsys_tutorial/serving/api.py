"""The API layer: FastAPI over the recommendation store, plus the instructor's page.

Endpoints (all read-only; the batch pipeline is the only writer)::

    GET /                                      the page: compare every stored model's top-K for one user
    GET /health                                status, stored models, item count
    GET /models                                stored models with k, contexts, users, generated_at, metrics
    GET /users?model=NAME                      users with stored lists
    GET /users/{user}/recommendations?k=&context=&model=
    GET /users/{user}/history?n=               the user's most recent interactions, latest first
    GET /items/{item}                          title, year, genres
    GET /openapi.json                          the API's schema

Unknown users and items answer 404; bad parameters 422, both as ``{"detail": "<what and how to fix>"}``.
The store is a SQLite path or a ``postgresql://`` URL (:func:`~recsys_tutorial.serving.store.open_store`).
Run it with ``python -m recsys_tutorial.serving.api --db data/recommendations.sqlite`` (or ``--db
postgresql://...``), or ``RECSYS_TUTORIAL_DB=... uvicorn --factory recsys_tutorial.serving.api:create_app``.
This process imports neither torch, TensorLy nor matplotlib.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Annotated, Literal

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse

from ..data.context import TIME_OF_DAY
from .page import PAGE_HTML
from .store import HISTORY_KEEP, MODEL_NAME_MAX, NO_CONTEXT, open_store

__all__ = ["create_app", "K_MAX", "CONTEXTS", "main"]

K_MAX = 100  # the API never returns more than this; lists are as long as the pipeline's --k
CONTEXTS = (*TIME_OF_DAY, NO_CONTEXT)  # context names come from data.context, defined once
Context = Literal[CONTEXTS]  # Literal[("a", "b")] is Literal["a", "b"]: pydantic lists the names in its 422
ModelName = Annotated[str | None, Query(max_length=MODEL_NAME_MAX, description="stored model (default: first by name)")]


def _validation_message(exc: RequestValidationError) -> str:
    """Pydantic's error list as one line: 'query k: Input should be greater than or equal to 1'."""
    parts = []
    for err in exc.errors():
        where = " ".join(str(x) for x in err.get("loc", ()))
        parts.append(f"{where}: {err.get('msg', 'invalid value')}")
    return "; ".join(parts)


def _pick_context(models: dict, model: str, context: str | None) -> str:
    """The stored context to serve: context-free models serve their single list for any time of day."""
    stored = models[model]["contexts"]
    if stored == [NO_CONTEXT]:
        return NO_CONTEXT
    if context is None or context == NO_CONTEXT:
        raise HTTPException(422, f"model {model!r} keeps one list per time of day: pass context=one of {stored}")
    if context not in stored:
        raise HTTPException(422, f"model {model!r} has no lists for context {context!r}; it has {stored}")
    return context


def _check_model(models: dict, model: str | None) -> str:
    if not models:
        raise HTTPException(503, "the store holds no recommendations yet: run the batch pipeline first")
    if model is None:
        return sorted(models)[0]
    if model not in models:
        raise HTTPException(422, f"unknown model {model!r}; stored models are {sorted(models)}")
    return model


def create_app(db: str | Path | None = None) -> FastAPI:
    """The FastAPI app over the store at ``db``: a SQLite path or a ``postgresql://`` URL.

    ``None`` reads ``$RECSYS_TUTORIAL_DB``, else ``data/recommendations.sqlite``.
    """
    store = open_store(db)
    # No /docs or /redoc: FastAPI's interactive docs load their scripts from a CDN, and this app works offline.
    # The schema stays at /openapi.json.
    app = FastAPI(title="recsys-tutorial recommendations", version="1", docs_url=None, redoc_url=None)
    app.state.store = store

    @app.exception_handler(RequestValidationError)
    async def _unprocessable(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": _validation_message(exc)})

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return PAGE_HTML

    @app.get("/health")
    def health() -> dict:
        with store.snapshot():
            return {"status": "ok", "models": sorted(store.models()), "n_items": store.n_items()}

    @app.get("/models")
    def models() -> dict:
        return store.models()

    @app.get("/users")
    def users(model: ModelName = None) -> dict:
        model = _check_model(store.models(), model)
        return {"model": model, "users": store.users(model)}

    @app.get("/users/{user}/recommendations")
    def recommendations(
        user: Annotated[int, PathParam(ge=0, le=2**62, description="raw user id (MovieLens user_id)")],
        k: Annotated[int | None, Query(ge=1, le=K_MAX, description="list length (default: as stored)")] = None,
        context: Annotated[Context | None, Query(description="time of day; context-free models ignore it")] = None,
        model: ModelName = None,
    ) -> dict:
        with store.snapshot():  # one consistent view, even while a refresh commits
            stored = store.models()
            model = _check_model(stored, model)
            k = stored[model]["k"] if k is None else k
            if k > stored[model]["k"]:
                raise HTTPException(
                    422, f"k={k} exceeds the {stored[model]['k']} items stored per list for model {model!r}: "
                    f"rerun the pipeline with --k {k}",
                )  # fmt: skip
            served = _pick_context(stored, model, context)
            rows = store.recommendations(user, model, served, k)
            if not rows:  # only then ask why: two queries per answered request, not three
                if not store.has_user(user, model):
                    raise HTTPException(404, f"unknown user {user}: model {model!r} has no list for this user")
                raise HTTPException(404, f"user {user} has no list for model {model!r} at {served!r}")
        generated_at = rows[0].pop("generated_at")
        for row in rows[1:]:
            row.pop("generated_at")
        return {"user": user, "model": model, "context": served, "generated_at": generated_at, "items": rows}

    @app.get("/users/{user}/history")
    def history(
        user: Annotated[int, PathParam(ge=0, le=2**62, description="raw user id (MovieLens user_id)")],
        n: Annotated[int, Query(ge=1, le=HISTORY_KEEP, description="interactions, most recent first")] = 10,
    ) -> dict:
        rows = store.history(user, n)
        if not rows:
            raise HTTPException(
                404, f"unknown user {user}: no history is stored for this user (the batch pipeline writes it)"
            )
        return {"user": user, "items": rows}

    @app.get("/items/{item}")
    def item(item: Annotated[int, PathParam(ge=0, le=2**62, description="raw item id (MovieLens item_id)")]) -> dict:
        found = store.item(item)
        if found is None:
            raise HTTPException(404, f"unknown item {item}")
        return found

    return app


def main(argv: list[str] | None = None) -> None:
    """``python -m recsys_tutorial.serving.api``: serve the store with uvicorn (loopback by default)."""
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m recsys_tutorial.serving.api", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--db", default=None,
        help="SQLite file or postgresql:// URL (default: $RECSYS_TUTORIAL_DB, else data/recommendations.sqlite)",
    )  # fmt: skip
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    uvicorn.run(create_app(args.db), host=args.host, port=args.port, log_level=args.log_level, access_log=False)


if __name__ == "__main__":
    main()

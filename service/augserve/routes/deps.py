"""The FastAPI dependencies every route shares, each written once as an ``Annotated`` alias."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from ..keys import Caller, forbidden
from ..metrics import KEY_REQUESTS
from ..state import AppState


def get_state(request: Request) -> AppState:
    return request.app.state.augserve


State = Annotated[AppState, Depends(get_state)]


def admit_work(state: State) -> None:
    """Every work route's gate: a draining process takes no new work (503 ``shutting_down``)."""
    state.drain.refuse_new_work()


def caller(request: Request, state: State) -> Caller:
    """Who sent the request, from its API key (401 without a known one, when the server has keys); the access
    line and the per-key counter name it."""
    who = state.keys.caller(request.headers.get("authorization"))
    request.state.key = who.name
    KEY_REQUESTS.labels(who.name).inc()
    return who


def _role(role: str) -> Callable[[Caller], Caller]:
    def allowed(who: Annotated[Caller, Depends(caller)]) -> Caller:
        if not who.may(role):
            raise forbidden(f"key {who.name!r} has role {who.role!r}; this needs {role!r}")
        return who

    return allowed


Reader = Annotated[Caller, Depends(_role("read"))]
Writer = Annotated[Caller, Depends(_role("write"))]

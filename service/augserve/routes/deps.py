"""The FastAPI dependencies every route shares, each written once as an ``Annotated`` alias."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..state import AppState


def get_state(request: Request) -> AppState:
    return request.app.state.augserve


State = Annotated[AppState, Depends(get_state)]


def admit_work(state: State) -> None:
    """Every work route's gate: a draining process takes no new work (503 ``shutting_down``)."""
    state.drain.refuse_new_work()

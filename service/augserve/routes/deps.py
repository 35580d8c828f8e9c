"""The FastAPI dependencies every route shares, each written once as an ``Annotated`` alias."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..state import AppState


def get_state(request: Request) -> AppState:
    return request.app.state.augserve


State = Annotated[AppState, Depends(get_state)]

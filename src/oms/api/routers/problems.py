"""Human-readable descriptions of the problem ``type`` URIs the API returns."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from oms.api.errors import NOT_FOUND, known_problem_types
from oms.domain.errors import NotFound

router = APIRouter(prefix="/problems", tags=["problems"])


class ProblemType(BaseModel):
    type: str
    description: str


@router.get("", summary="Every problem type the API can return")
def list_problem_types() -> list[ProblemType]:
    return [
        ProblemType(type=f"/problems/{slug}", description=text)
        for slug, text in sorted(known_problem_types().items())
    ]


@router.get("/{slug}", responses=NOT_FOUND, summary="What one problem type means")
def get_problem_type(slug: str) -> ProblemType:
    types = known_problem_types()
    if slug not in types:
        raise NotFound(f"no problem type '{slug}'")
    return ProblemType(type=f"/problems/{slug}", description=types[slug])

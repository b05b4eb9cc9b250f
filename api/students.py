"""A student's own profile and favorite tutors."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post

from api.deps import command, query, reading
from api.guards import BEARER, STUDENT
from api.schemas.tutoring import (
    PublicTutorPage,
    StudentFavoriteOut,
    StudentProfileOut,
    public_tutor_out,
    student_profile_out,
)
from api.tutors import NEXT_SLOTS
from application.accounts import Account
from application.clock import Clock
from application.tutoring import Tutoring
from projections.search import PUBLIC_COLS

Text = Annotated[str, msgspec.Meta(max_length=5000)]


class StudentProfilePatch(msgspec.Struct, forbid_unknown_fields=True):
    """PATCH /student/profile: any subset."""

    bio: Text | msgspec.UnsetType = msgspec.UNSET
    goals: Text | msgspec.UnsetType = msgspec.UNSET
    learning_style: Annotated[str, msgspec.Meta(max_length=200)] | msgspec.UnsetType = msgspec.UNSET
    timezone: str | msgspec.UnsetType = msgspec.UNSET
    currency: str | msgspec.UnsetType = msgspec.UNSET
    language: str | msgspec.UnsetType = msgspec.UNSET


class StudentController(Controller):
    """Only students; each sees only their own profile and favorites."""

    path = "/student"
    guards = STUDENT
    tags = ["students"]
    security = BEARER

    @get("/profile", sync_to_thread=True)
    def get_profile(self, request: Request[Account, Any, Any], tutoring: Tutoring) -> StudentProfileOut:
        """The caller's learning profile."""
        actor = request.user
        return student_profile_out(*tutoring.student(actor.user_id))

    @patch("/profile", sync_to_thread=True)
    def update_profile(
        self, request: Request[Account, Any, Any], tutoring: Tutoring, data: StudentProfilePatch
    ) -> Response[StudentProfileOut]:
        """Change bio, goals, learning style, timezone, currency or language."""
        actor = request.user
        body = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not msgspec.UNSET}
        profile, user, position = tutoring.update_student(actor, body)
        return command(student_profile_out(profile, user), position)

    @post("/favorites/{tutor_id:uuid}", status_code=200, sync_to_thread=True)
    def add_favorite(
        self, request: Request[Account, Any, Any], tutoring: Tutoring, tutor_id: UUID
    ) -> Response[StudentFavoriteOut]:
        """Favorite an approved tutor (again: no change)."""
        return _favorite(request, tutoring, tutor_id, True)

    @delete("/favorites/{tutor_id:uuid}", status_code=200, sync_to_thread=True)
    def remove_favorite(
        self, request: Request[Account, Any, Any], tutoring: Tutoring, tutor_id: UUID
    ) -> Response[StudentFavoriteOut]:
        """Unfavorite a tutor (not a favorite: no change)."""
        return _favorite(request, tutoring, tutor_id, False)

    @get("/favorites", sync_to_thread=True)
    def favorites(self, request: Request[Account, Any, Any], clock: Clock) -> Response[PublicTutorPage]:
        """The caller's favorite tutors that are currently listed, as public tutors."""
        actor = request.user
        now = clock.now()
        with reading(request, ("tutors", "student_favorites", "bookings"), actor) as (conn, pos):
            rows = conn.execute(
                f"SELECT {PUBLIC_COLS} FROM student_favorites f JOIN tutors t ON t.tutor_id = f.tutor_id"
                " WHERE f.student_id = %s AND t.listed ORDER BY f.added_position DESC",
                (actor.user_id,),
            ).fetchall()
            nexts = NEXT_SLOTS.of(conn, rows, now)
        items = [public_tutor_out(r, nexts[r["tutor_id"]]) for r in rows]
        return query(PublicTutorPage(items=items, next_cursor=None), pos)


def _favorite(
    request: Request[Account, Any, Any], tutoring: Tutoring, tutor_id: UUID, on: bool
) -> Response[StudentFavoriteOut]:
    """Add or remove the caller's favorite and say where it stands."""
    position = tutoring.favorite(request.user, tutor_id, on)
    return command(StudentFavoriteOut(tutor_id=tutor_id, favorite=on), position)

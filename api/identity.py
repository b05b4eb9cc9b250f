"""Identity endpoints: register, login, refresh, logout, /me and the caller's avatar."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, patch, post
from litestar.openapi.datastructures import ResponseSpec

from api.deps import command, min_position, query
from api.guards import BEARER, USER
from api.schemas.identity import AvatarUploadOut, RegistrationOut, TokenPairOut, UserAccountOut
from api.services import Services
from application.accounts import Account
from application.identity import Identity

Email = Annotated[str, msgspec.Meta(max_length=300, pattern=r"^\s*[^@\s]+@[^@\s]+\.[^@\s]+\s*$")]
Password = Annotated[
    str,
    msgspec.Meta(
        min_length=8, max_length=1024, pattern=r"^(?=.*[^\W\d_])(?=.*\d)", description="8+ chars, a letter and a digit"
    ),
]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"\S")]


class RegisterRequest(msgspec.Struct):
    """POST /auth/register."""

    email: Email
    password: Password
    full_name: Name
    role: Literal["student", "tutor"]


class LoginRequest(msgspec.Struct):
    """POST /auth/login."""

    email: Annotated[str, msgspec.Meta(max_length=300)]
    password: Annotated[str, msgspec.Meta(max_length=1024)]


class RefreshRequest(msgspec.Struct):
    """POST /auth/refresh and /auth/logout."""

    refresh_token: str


class ProfileUpdate(msgspec.Struct):
    """The profile fields a user edits on /me and an admin on PATCH /admin/users/{id}: decoded by this one Struct
    and checked by the one rule (domain.user.check_profile)."""

    full_name: Name | msgspec.UnsetType = msgspec.UNSET
    timezone: str | msgspec.UnsetType = msgspec.UNSET
    language: str | msgspec.UnsetType = msgspec.UNSET
    currency: str | msgspec.UnsetType = msgspec.UNSET

    def changes(self, names: tuple[str, ...] | None = None) -> dict[str, Any]:
        """The fields the body set (of `names`, if given)."""
        given = {k: v for k, v in msgspec.structs.asdict(self).items() if v is not msgspec.UNSET}
        return given if names is None else {k: v for k, v in given.items() if k in names}


class MeUpdate(ProfileUpdate):
    """PATCH /me: any subset."""

    avatar_url: str | msgspec.UnsetType | None = msgspec.UNSET
    email_notifications: bool | msgspec.UnsetType = msgspec.UNSET


class AvatarIn(msgspec.Struct):
    """POST /me/avatar: the image about to be uploaded (png, jpeg, webp or gif; at most 5 MB)."""

    filename: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    content_type: str
    size: int


class IdentityController(Controller):
    """Accounts and sessions."""

    path = "/"
    tags = ["identity"]

    @post("/auth/register", status_code=201, sync_to_thread=True)
    def register(
        self, request: Request[Any, Any, Any], identity: Identity, data: RegisterRequest
    ) -> Response[RegistrationOut]:
        """Open a student or tutor account; one account per normalised email."""
        o = identity.register(data.email, data.password, data.full_name, data.role)
        return command(RegistrationOut.of(o), o.position, 201)

    @post("/auth/login", status_code=200, sync_to_thread=True)
    def login(self, request: Request[Any, Any, Any], identity: Identity, data: LoginRequest) -> Response[TokenPairOut]:
        """Exchange email and password for a token pair (the same 401 for any failure)."""
        o = identity.login(data.email, data.password)
        return command(TokenPairOut.of(o), o.position, 200)

    @post("/auth/refresh", status_code=200, sync_to_thread=True)
    def refresh(
        self, request: Request[Any, Any, Any], identity: Identity, data: RefreshRequest
    ) -> Response[TokenPairOut]:
        """Rotate the refresh token; a spent one revokes its family."""
        o = identity.refresh(data.refresh_token)
        return command(TokenPairOut.of(o), o.position, 200)

    # responses: Litestar would document the `Response[None]` as a JSON `null` body; a 204 has no body
    @post(
        "/auth/logout",
        status_code=204,
        sync_to_thread=True,
        security=BEARER,
        guards=USER,
        responses={204: ResponseSpec(None, description="The session is revoked (no body)")},
    )
    def logout(self, request: Request[Account, Any, Any], services: Services, data: RefreshRequest) -> Response[None]:
        """Revoke the session (refresh family) of the given refresh token."""
        account = request.user
        position = services.identity.logout(account, data.refresh_token)
        services.accounts.forget(account.user_id)  # at once here; the other processes hear the commit's NOTIFY
        return command(None, position, 204)

    @get("/me", sync_to_thread=True, security=BEARER, guards=USER)
    def me(self, request: Request[Account, Any, Any], identity: Identity) -> Response[UserAccountOut]:
        """The caller's account (read from its own stream, so as fresh as the log itself)."""
        account = request.user
        min_position(request)  # the same 422 for a malformed X-Min-Position as every query
        position = identity.head()  # read before the stream: the answer reflects at least this position
        return query(UserAccountOut.of(identity.me(account)), position)

    @patch("/me", sync_to_thread=True, security=BEARER, guards=USER)
    def update_me(
        self, request: Request[Account, Any, Any], identity: Identity, data: MeUpdate
    ) -> Response[UserAccountOut]:
        """Change the caller's name, time zone, language, currency, avatar or whether they get e-mails."""
        o = identity.update_profile(request.user, data.changes())
        return command(UserAccountOut.of(o.user), o.position)

    @post("/me/avatar", status_code=201, sync_to_thread=True, security=BEARER, guards=USER)
    def request_avatar(
        self, request: Request[Account, Any, Any], identity: Identity, data: AvatarIn
    ) -> Response[AvatarUploadOut]:
        """A presigned upload URL for a png, jpeg, webp or gif image of at most 5 MB (the caller's own upload)."""
        ticket = identity.request_avatar(request.user, data.filename, data.content_type, data.size)
        return command(AvatarUploadOut.of(ticket), ticket.position, 201)

    @post("/me/avatar/{upload_id:uuid}/complete", status_code=200, sync_to_thread=True, security=BEARER, guards=USER)
    def complete_avatar(
        self, request: Request[Account, Any, Any], identity: Identity, upload_id: UUID
    ) -> Response[UserAccountOut]:
        """Check the uploaded image (it exists, is stored as announced, no larger, really of that type) and make it
        the caller's avatar: the account, `avatar_url` a download URL of the checked copy."""
        o = identity.complete_avatar(request.user, upload_id)
        return command(UserAccountOut.of(o.user), o.position)

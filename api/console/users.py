"""Users: the list filtered like GET /admin/users, one user in full (as GET /admin/users/{id}) with their avatar,
and the admin's commands on them -- role, activity, profile (PATCH /admin/users/{id}), soft delete (DELETE) and the
avatar override (PUT /admin/users/{id}/avatar) -- through the same queries and Identity commands as the API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any
from uuid import UUID

import msgspec
import urllib3
from litestar import Request, get, post
from litestar.datastructures import UploadFile
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Redirect, Stream, Template

from api.admin_users import DETAIL_READ_MODELS, USER_SQL, AdminUserUpdate, admin_user_detail, flag, users_page
from api.console.render import Form, convert, done, fields, page
from api.console.session import ADMIN_PAGE
from api.deps import decode_cursor, limit_of, reading
from api.services import Services
from application.identity import Identity
from application.storage import StorageUnavailable
from domain.errors import NotFound, ValidationFailed
from domain.user import ADMIN_PROFILE_FIELDS, ROLES
from domain.user_avatar import MAX_AVATAR_BYTES, check_reason

# The console talks to S3 as any client of the API does, through the presigned URLs Identity signs: it PUTs the
# chosen image to the upload URL and reads the checked copy from its download URL. Calls give up within seconds
# (an unanswered S3 is 503 storage-unavailable, as in application/storage.py).
S3 = urllib3.PoolManager(timeout=urllib3.Timeout(connect=2.0, read=10.0), retries=False, maxsize=4)
# A multipart form with an image of up to 5 MB, its reason and the CSRF token (the app's limit is 1 MB).
AVATAR_FORM_BYTES = MAX_AVATAR_BYTES + 64 * 1024
MultipartForm = Annotated[dict[str, Any], Body(media_type=RequestEncodingType.MULTI_PART)]


@get("/users", guards=ADMIN_PAGE, sync_to_thread=True)
def users(
    request: Request[Any, Any, Any],
    identity: Identity,
    role: str | None = None,
    active: str | None = None,
    q: str | None = None,
    cursor: str | None = None,
) -> Template:
    """Users, newest first, filtered by role, activity and a name or email substring, a page at a time."""
    is_active, after = flag("active", active), decode_cursor(cursor, int)
    with reading(request, ("users_directory",), request.user) as (conn, _):
        found = users_page(conn, role or None, is_active, q or None, limit_of(50), after, identity)
    filters = {"role": role or "", "active": active or "", "q": q or ""}
    return page(request, "users.html", q=filters, roles=ROLES, users=found.items, next=found.next_cursor)


@get("/users/{user_id:uuid}", guards=ADMIN_PAGE, sync_to_thread=True)
def user(request: Request[Any, Any, Any], services: Services, user_id: UUID) -> Template:
    """One user in full: account, avatar, tutor profile (linked to its review page) and their history."""
    with reading(request, DETAIL_READ_MODELS, request.user) as (conn, _):
        u = admin_user_detail(conn, user_id, services)
        row = conn.execute(USER_SQL, (user_id,)).fetchone()
    # An uploaded avatar is shown from this origin (`avatar` below): the page's CSP allows images from 'self' only.
    # A picture the user set as a URL of their own is linked, not shown (fetching it for them would let anyone
    # make the server call any address).
    uploaded = row is not None and row["avatar_key"] is not None
    return page(request, "user.html", u=u, uploaded_avatar=uploaded, roles=ROLES)


@get("/users/{user_id:uuid}/avatar", guards=ADMIN_PAGE, sync_to_thread=True)
def avatar(request: Request[Any, Any, Any], identity: Identity, user_id: UUID) -> Stream:
    """The user's uploaded avatar (its checked copy), streamed from S3.

    Served from the console's own origin rather than by a redirect to the presigned S3 URL: the page's CSP is
    `img-src 'self' data:` (api/middleware.py PAGE_CSP) and a browser checks a redirect's target against it too,
    so a redirect would be blocked; widening img-src to the S3 endpoint would instead let every page load images
    from the whole bucket's origin. 404 when the user has no uploaded avatar."""
    with reading(request, ("users_directory",), request.user) as (conn, _):
        row = conn.execute(USER_SQL, (user_id,)).fetchone()
    if row is None or row["avatar_key"] is None:
        raise NotFound("this user has no uploaded avatar")
    url = identity.avatar_url(row["avatar_key"], row["avatar_type"])
    try:
        got = S3.request("GET", url, preload_content=False)
    except urllib3.exceptions.HTTPError as e:
        raise StorageUnavailable(f"S3 unreachable: {type(e).__name__}") from e
    if got.status != 200:
        got.release_conn()
        if got.status == 404:
            raise NotFound("the avatar's image is not stored")
        raise StorageUnavailable(f"S3 answered {got.status}")

    def chunks() -> Iterator[bytes]:
        try:
            yield from got.stream(64 * 1024)
        finally:
            got.release_conn()

    return Stream(
        chunks(),
        media_type=row["avatar_type"],
        headers={"Cache-Control": "private, no-store", "Content-Disposition": "inline"},
    )


@post("/users/{user_id:uuid}", guards=ADMIN_PAGE, sync_to_thread=True)
def update(request: Request[Any, Any, Any], services: Services, user_id: UUID, data: Form) -> Redirect:
    """Change role, activity and/or name, time zone, language and currency: PATCH /admin/users/{id} with the
    fields the form posted (each form posts its own), the admin the events' actor."""
    change = convert(fields(data), AdminUserUpdate)
    role = None if change.role is msgspec.UNSET else change.role
    active = None if change.is_active is msgspec.UNSET else change.is_active
    o = services.identity.admin_update(
        user_id, role=role, is_active=active, profile=change.changes(ADMIN_PROFILE_FIELDS), by=request.user.user_id
    )
    services.accounts.forget(user_id)  # at once in this process; the others hear it from the commit's NOTIFY
    if active is not None:
        notice = "Account reactivated" if active else "Account deactivated"
    else:
        notice = f"Role: {o.user['role']}" if role is not None else "Profile saved"
    return done(request, f"/console/users/{user_id}", notice)


@post("/users/{user_id:uuid}/delete", guards=ADMIN_PAGE, sync_to_thread=True)
def delete(request: Request[Any, Any, Any], services: Services, user_id: UUID, data: Form) -> Redirect:
    """Soft delete (DELETE /admin/users/{id}), once the admin ticked the confirmation."""
    if fields(data).get("confirm") != "yes":
        raise ValidationFailed([("confirm", "tick the box to confirm the deletion")])
    services.identity.admin_delete(user_id, by=request.user.user_id)
    services.accounts.forget(user_id)
    return done(request, f"/console/users/{user_id}", "Account deleted")


@post(
    "/users/{user_id:uuid}/avatar",
    guards=ADMIN_PAGE,
    sync_to_thread=True,
    request_max_body_size=AVATAR_FORM_BYTES,
)
def override_avatar(
    request: Request[Any, Any, Any], identity: Identity, user_id: UUID, data: MultipartForm
) -> Redirect:
    """Replace the user's avatar with the image chosen in the page, saying why: the image goes the API's way
    (announced as the admin's own avatar upload, PUT to S3), then PUT /admin/users/{id}/avatar's command checks
    the stored copy and records User.AvatarOverridden with the reason."""
    reason = check_reason(fields(data).get("reason", ""))  # before anything is stored
    image = data.get("image")
    if not isinstance(image, UploadFile) or not image.filename:
        raise ValidationFailed([("image", "choose an image file")])
    content = image.file.read(MAX_AVATAR_BYTES + 1)
    ticket = identity.request_avatar(request.user, image.filename, image.content_type, len(content))
    try:
        put = S3.request("PUT", ticket.upload_url, body=content, headers={"Content-Type": image.content_type})
    except urllib3.exceptions.HTTPError as e:
        raise StorageUnavailable(f"S3 unreachable: {type(e).__name__}") from e
    if put.status != 200:
        raise StorageUnavailable(f"S3 refused the upload ({put.status})")
    identity.override_avatar(user_id, ticket.upload.id, reason, by=request.user.user_id)
    return done(request, f"/console/users/{user_id}", "Avatar replaced")


@post("/users/{user_id:uuid}/avatar/clear", guards=ADMIN_PAGE, sync_to_thread=True)
def clear_avatar(request: Request[Any, Any, Any], identity: Identity, user_id: UUID, data: Form) -> Redirect:
    """Remove the user's picture, saying why (PUT /admin/users/{id}/avatar with a null upload)."""
    identity.override_avatar(user_id, None, fields(data).get("reason", ""), by=request.user.user_id)
    return done(request, f"/console/users/{user_id}", "Avatar removed")


PAGES = [users, user, avatar, update, delete, override_avatar, clear_avatar]

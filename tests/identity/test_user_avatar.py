"""Avatars in the domain, without I/O: what an avatar upload may be, that only its checked copy becomes a picture,
how a user's picture changes (their own upload, a URL set on /me, an admin's override with a reason), that an admin
edits only the profile fields PATCH /me takes minus the avatar, and that old and new streams replay."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from uuid import UUID

import pytest

from domain.errors import NotFound, ValidationFailed, WrongStatus
from domain.files import FileTooLarge, StoredFile, UnsupportedFile, UploadMissing
from domain.user import ADMIN_PROFILE_FIELDS, User
from domain.user_avatar import MAX_AVATAR_BYTES, Avatar, AvatarUpload
from tests.platform.store.shapes import recorded, replay

NOW = datetime(2031, 3, 1, 9, 0, tzinfo=UTC)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 72
GIF = b"GIF89a" + b"\x00" * 40


def _fields(e: ValidationFailed) -> set[str]:
    return {f for f, _ in e.errors}


def _user() -> User:
    u = User.register("a@example.test", "Ann", "student", NOW)
    u.collect_events()
    return u


def _names(u: User | AvatarUpload) -> list[str]:
    return [type(e).__name__ for e in u.collect_events()]


def _upload(owner: UUID, content_type: str = "image/png", size: int = 1000) -> AvatarUpload:
    up_id = uuid.uuid4()
    return AvatarUpload.announce(up_id, owner, " me.png ", content_type, size, f"users/{owner}/avatars/{up_id}/me.png")


def _checked(owner: UUID, head: bytes = PNG, content_type: str = "image/png") -> Avatar:
    up = _upload(owner, content_type)
    up.check_stored(StoredFile(len(head), content_type, head), f"checked/avatars/{up.id}")
    return up.avatar


@pytest.mark.parametrize(
    ("content_type", "size", "field"),
    [
        ("application/pdf", 100, "content_type"),
        ("text/plain", 100, "content_type"),
        ("image/svg+xml", 100, "content_type"),
        ("IMAGE/PNG", 100, "content_type"),
        ("image/png", MAX_AVATAR_BYTES + 1, "size"),
        ("image/png", 0, "size"),
        ("image/png", -5, "size"),
    ],
)
def test_an_avatar_upload_is_an_image_of_at_most_5_mb(content_type: str, size: int, field: str) -> None:
    with pytest.raises(ValidationFailed) as e:
        _upload(uuid.uuid4(), content_type, size)
    assert _fields(e.value) == {field}


@pytest.mark.parametrize("content_type", ["image/png", "image/jpeg", "image/webp", "image/gif"])
def test_each_image_type_up_to_exactly_5_mb_is_announced(content_type: str) -> None:
    up = _upload(uuid.uuid4(), content_type, 5_242_880)
    assert (up.content_type, up.size, up.filename, up.checked_key) == (content_type, 5_242_880, "me.png", None)
    assert _names(up) == ["Requested"]


def test_a_blank_or_long_file_name_is_refused() -> None:
    for name in ("  ", "x" * 256):
        with pytest.raises(ValidationFailed) as e:
            AvatarUpload.announce(uuid.uuid4(), uuid.uuid4(), name, "image/png", 10, "k")
        assert _fields(e.value) == {"filename"}


def test_only_a_checked_copy_of_the_announced_image_becomes_usable() -> None:
    up = _upload(uuid.uuid4())
    up.collect_events()
    with pytest.raises(WrongStatus):
        _ = up.avatar
    with pytest.raises(UploadMissing):
        up.check_stored(None, "checked/x")
    with pytest.raises(UnsupportedFile):  # stored as a png, but its bytes are a page
        up.check_stored(StoredFile(60, "image/png", b"<!doctype html><script>x</script>"), "checked/x")
    with pytest.raises(UnsupportedFile):  # a gif's bytes announced as a png
        up.check_stored(StoredFile(len(GIF), "image/png", GIF), "checked/x")
    with pytest.raises(UnsupportedFile):  # stored with another type than announced
        up.check_stored(StoredFile(len(PNG), "image/gif", PNG), "checked/x")
    with pytest.raises(FileTooLarge):
        up.check_stored(StoredFile(1001, "image/png", PNG), "checked/x")
    assert _names(up) == [] and up.checked_key is None
    up.check_stored(StoredFile(len(PNG), "image/png; charset=binary", PNG), "checked/avatars/1")
    assert _names(up) == ["Checked"]
    assert up.avatar == Avatar(up.id, "checked/avatars/1", "image/png")
    assert up.avatar.filename == "avatar.png"
    up.check_stored(None, "checked/other")  # checked once: what is PUT afterwards changes nothing
    assert _names(up) == [] and up.avatar.key == "checked/avatars/1"


def test_the_users_own_upload_becomes_their_picture_once() -> None:
    u = _user()
    u.update_profile({"avatar_url": "https://pics.example/ann.png"})
    u.collect_events()
    avatar = _checked(u.id)
    u.change_avatar(avatar)
    assert _names(u) == ["AvatarChanged"]
    assert (u.avatar, u.avatar_url) == (avatar, None)  # an uploaded picture replaces the URL
    u.change_avatar(avatar)
    assert _names(u) == []


def test_a_url_or_null_on_me_replaces_an_uploaded_picture() -> None:
    u = _user()
    u.change_avatar(_checked(u.id))
    u.collect_events()
    u.update_profile({"avatar_url": None})  # the URL was already null: still a change, the upload goes
    assert _names(u) == ["ProfileUpdated"]
    assert (u.avatar, u.avatar_url) == (None, None)
    u.update_profile({"avatar_url": None})
    assert _names(u) == []


@pytest.mark.parametrize("reason", ["", "   ", "\n\t", "x" * 501])
def test_an_override_needs_a_reason_of_1_to_500_characters(reason: str) -> None:
    u = _user()
    for avatar in (None, _checked(uuid.uuid4())):
        with pytest.raises(ValidationFailed) as e:
            u.override_avatar(avatar, reason)
        assert _fields(e.value) == {"reason"}
    assert _names(u) == []


def test_an_admin_replaces_or_removes_the_picture_with_a_reason_recorded() -> None:
    u = _user()
    u.change_avatar(_checked(u.id))
    u.collect_events()
    admins = _checked(uuid.uuid4(), GIF, "image/gif")  # an upload of the admin's own
    u.override_avatar(admins, "  " + "r" * 500 + "  ")
    (e,) = u.collect_events()
    assert type(e).__name__ == "AvatarOverridden"
    assert (e.reason, e.upload_id, e.content_type) == ("r" * 500, admins.upload_id, "image/gif")  # type: ignore[attr-defined]
    assert u.avatar == admins
    u.override_avatar(admins, "the same picture again")  # changes nothing: records nothing
    assert _names(u) == []
    u.override_avatar(None, "not a photo of a person")
    assert _names(u) == ["AvatarOverridden"]
    assert (u.avatar, u.avatar_url) == (None, None)
    u.override_avatar(None, "nothing left to remove")
    assert _names(u) == []
    u.update_profile({"avatar_url": "https://pics.example/x.png"})
    u.collect_events()
    u.override_avatar(None, "an offensive link")  # a URL set on /me is removed too
    assert _names(u) == ["AvatarOverridden"] and u.avatar_url is None


def test_a_deleted_users_picture_is_not_changed() -> None:
    u = _user()
    u.delete()
    u.collect_events()
    with pytest.raises(NotFound):
        u.change_avatar(_checked(u.id))
    with pytest.raises(NotFound):
        u.override_avatar(None, "reason")


def test_an_admin_edits_the_profile_fields_of_me_but_the_avatar() -> None:
    u = _user()
    u.update_profile({"full_name": " Ann B ", "timezone": "Europe/Berlin", "language": "de", "currency": "EUR"},
                     ADMIN_PROFILE_FIELDS)  # fmt: skip
    assert (u.full_name, u.timezone, u.language, u.currency) == ("Ann B", "Europe/Berlin", "de", "EUR")
    assert _names(u) == ["ProfileUpdated"]
    with pytest.raises(ValidationFailed) as e:
        u.update_profile({"avatar_url": "https://x.example/a.png"}, ADMIN_PROFILE_FIELDS)
    assert _fields(e.value) == {"avatar_url"}
    with pytest.raises(ValidationFailed) as e:  # the very rule of PATCH /me
        u.update_profile({"timezone": "CEST", "currency": "eur", "language": "German", "full_name": " "},
                         ADMIN_PROFILE_FIELDS)  # fmt: skip
    assert _fields(e.value) == {"timezone", "currency", "language", "full_name"}


def test_streams_with_and_without_avatars_replay() -> None:
    u = _user()
    u.update_profile({"avatar_url": "https://pics.example/a.png"})
    mine = _checked(u.id)
    u.change_avatar(mine)
    u.override_avatar(_checked(uuid.uuid4(), GIF, "image/gif"), "swap")
    u.override_avatar(None, "remove")
    u.change_avatar(mine)
    registered = recorded([User.register("a@example.test", "Ann", "student", NOW).collect_events()[0]])
    shapes = registered + recorded(list(u.collect_events()))
    again = replay(User, shapes)
    assert again.avatar == mine and isinstance(again.avatar.upload_id, UUID) and again.avatar_url is None
    removed = replay(User, shapes[:-1])
    assert (removed.avatar, removed.avatar_url) == (None, None)
    # a stream recorded before avatars were uploaded: a URL set on /me is the picture
    old = replay(User, [*registered, ("ProfileUpdated", '{"changes":{"avatar_url":"https://pics.example/a.png"}}')])
    assert (old.avatar, old.avatar_url) == (None, "https://pics.example/a.png")

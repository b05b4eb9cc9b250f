"""Avatars: the images a user may upload as a picture of themselves, and each upload as its own small aggregate.

An upload belongs to whoever announced it (`owner_id`). It is used only once the server has copied what its owner
PUT to a key they cannot write and checked that copy (domain/files.py): then it can become its owner's avatar, or,
in an admin's hands, another user's (User.override_avatar). The User keeps the `Avatar` it shows, a frozen value."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import ValidationFailed, WrongStatus
from domain.files import StoredFile, check_stored
from domain.values import Value

AVATAR_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif")
MAX_AVATAR_BYTES = 5 * 1_048_576
MAX_REASON_CHARS = 500
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}


@dataclass(frozen=True, slots=True)
class Avatar(Value):
    """A user's picture: the checked upload it came from, the key of its checked copy, and its type."""

    upload_id: UUID
    key: str
    content_type: str

    @property
    def filename(self) -> str:
        """The name it is downloaded as (`avatar.png`)."""
        return avatar_filename(self.content_type)


def avatar_filename(content_type: str) -> str:
    """The name an avatar of this type is downloaded as (`avatar.png`)."""
    return f"avatar.{EXTENSIONS.get(content_type, 'img')}"


def check_avatar_file(filename: str, content_type: str, size: int) -> None:
    """An avatar is a png, jpeg, webp or gif image of at most 5 MB, announced with a name of 1 to 255 characters."""
    errors: list[tuple[str, str]] = []
    if not filename.strip() or len(filename) > 255:
        errors.append(("filename", "1 to 255 characters"))
    if content_type not in AVATAR_TYPES:
        errors.append(("content_type", f"one of {', '.join(AVATAR_TYPES)}"))
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        errors.append(("size", "a positive number of bytes"))
    elif size > MAX_AVATAR_BYTES:
        errors.append(("size", f"at most {MAX_AVATAR_BYTES} bytes (5 MB)"))
    if errors:
        raise ValidationFailed(errors)


def check_reason(reason: str) -> str:
    """Why an admin changed someone's avatar: required, not blank, at most 500 characters once trimmed (what is
    recorded); returned trimmed."""
    why = reason.strip() if isinstance(reason, str) else ""
    if not why or len(why) > MAX_REASON_CHARS:
        raise ValidationFailed([("reason", f"1 to {MAX_REASON_CHARS} characters, not blank")])
    return why


class AvatarUpload(Aggregate):
    """An image announced for upload by its owner; usable as an avatar once its stored copy is checked."""

    @event("Requested")
    def __init__(self, upload_id: UUID, owner_id: UUID, filename: str, content_type: str, size: int, key: str) -> None:
        self.owner_id = owner_id
        self.filename = filename
        self.content_type = content_type
        self.size = size
        self.key = key
        self.checked_key: str | None = None  # where the checked copy is, once checked

    @staticmethod
    def create_id(upload_id: UUID) -> UUID:
        """Chosen by the application before the upload URL is signed."""
        return upload_id

    @classmethod
    def announce(
        cls, upload_id: UUID, owner_id: UUID, filename: str, content_type: str, size: int, key: str
    ) -> AvatarUpload:
        """A new upload of `owner_id`'s, if it is an image type and size an avatar may be."""
        check_avatar_file(filename, content_type, size)
        return cls(
            upload_id=upload_id,
            owner_id=owner_id,
            filename=filename.strip(),
            content_type=content_type,
            size=size,
            key=key,
        )

    def check_stored(self, stored: StoredFile | None, key: str) -> None:
        """The upload becomes usable once the object its owner uploaded, copied by the server to `key` (which the
        owner cannot write), is the announced image (domain/files.py); avatars are then served from `key`."""
        if self.checked_key is not None:
            return
        checked = check_stored(f"avatar upload {self.id}", self.content_type, self.size, stored)
        self._checked(key=key, size=checked.size)

    @event("Checked")
    def _checked(self, key: str, size: int) -> None:
        self.checked_key = key
        self.size = size

    @property
    def avatar(self) -> Avatar:
        """The picture this checked upload makes (409 before it is checked)."""
        if self.checked_key is None:
            raise WrongStatus(f"avatar upload {self.id} has not been checked yet")
        return Avatar(self.id, self.checked_key, self.content_type)

"""Uploaded files: what a stored object must be before anyone else is given it.

A client announces a file (name, type, size), PUTs it to a presigned URL, and later asks for it to be used (a
message's attachment, a tutor's document). By then the server has copied the object to a key the client cannot
write and read that copy's size, content type and first bytes (a `StoredFile`); `check_stored` decides whether it
is the file that was announced. The first bytes must carry the announced format's signature: the formats we take
are few and their signatures are fixed by their specifications (ISO 32000, PNG, JFIF/EXIF, GIF, RIFF/WebP), so
they are matched here rather than through a sniffing library (python-magic needs libmagic, and `filetype` would be
a dependency for the same six comparisons); text must be UTF-8 without NUL."""

from __future__ import annotations

from dataclasses import dataclass

from domain.errors import DomainError

HEAD_BYTES = 512  # how much of an object is read to recognise it
SIGNATURES = (
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


class UnsupportedFile(DomainError):
    """This file type is not accepted here, or the file is not of the type it was announced as."""


class FileTooLarge(DomainError):
    """The file is larger than allowed, or than announced."""


class UploadMissing(DomainError):
    """Nothing was uploaded to the upload URL (yet)."""


@dataclass(frozen=True)
class StoredFile:
    """What the server read of a stored object: its size, its content type, and its first HEAD_BYTES bytes."""

    size: int
    content_type: str
    head: bytes


def sniff(head: bytes) -> str | None:
    """The type the first bytes of a file say it is (of the types we take), or None."""
    for signature, content_type in SIGNATURES:
        if head.startswith(signature):
            return content_type
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return "text/plain" if _is_text(head) else None


def _is_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        # the sample may end inside a multi-byte character: only a cut at its very end is forgiven
        return e.reason == "unexpected end of data" and e.start >= len(head) - 3
    return True


def check_stored(what: str, content_type: str, size: int, stored: StoredFile | None) -> StoredFile:
    """`what` (announced as `content_type`, at most `size` bytes) may be used only if the stored object exists, is
    stored with that content type, is at most that size, and its bytes are of that type; returns it."""
    if stored is None:
        raise UploadMissing(f"nothing was uploaded for {what} yet")
    stored_type = stored.content_type.split(";")[0].strip().lower()
    if stored_type != content_type:
        raise UnsupportedFile(f"{what} was uploaded as {stored.content_type}, not {content_type}")
    if stored.size > size:
        raise FileTooLarge(f"{what} is {stored.size} bytes, more than the {size} announced")
    found = sniff(stored.head)
    if found != content_type:
        raise UnsupportedFile(f"{what} is not {content_type}: its bytes are {found or 'of no accepted type'}")
    return stored

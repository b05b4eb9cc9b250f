"""Uploaded files are what they were announced as (domain/files.py): properties over any bytes, in memory."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.files import (
    HEAD_BYTES,
    SIGNATURES,
    FileTooLarge,
    StoredFile,
    UnsupportedFile,
    UploadMissing,
    check_stored,
    sniff,
)
from domain.messaging import Attachment

TYPES = ("application/pdf", "image/png", "image/jpeg", "image/gif", "image/webp", "text/plain")
MAGIC = {t: sig for sig, t in reversed(SIGNATURES)} | {"image/webp": b"RIFF\x10\x00\x00\x00WEBPVP8 "}


@given(st.sampled_from([t for t in TYPES if t != "text/plain"]), st.binary(max_size=HEAD_BYTES))
def test_a_file_is_the_type_its_signature_says(content_type: str, rest: bytes) -> None:
    head = (MAGIC[content_type] + rest)[:HEAD_BYTES]
    assert sniff(head) == content_type
    check_stored("f", content_type, 10**6, StoredFile(len(head), content_type, head))


@given(st.text(max_size=200).filter(lambda t: "\x00" not in t and not t.startswith(("%PDF-", "GIF8", "RIFF"))))
def test_utf8_text_without_nul_is_text_even_cut_mid_character(text: str) -> None:
    data = text.encode()
    for cut in range(max(0, len(data) - 3), len(data) + 1):
        assert sniff(data[:cut]) == "text/plain"


@given(st.sampled_from(TYPES), st.sampled_from(TYPES), st.binary(max_size=64))
def test_bytes_of_another_type_are_refused(declared: str, actual: str, rest: bytes) -> None:
    head = MAGIC[actual] + rest if actual != "text/plain" else b"plain words"
    if declared == actual:
        return
    with pytest.raises(UnsupportedFile):
        check_stored("f", declared, 10**6, StoredFile(len(head), declared, head))


@given(st.integers(min_value=1, max_value=10**8), st.integers(min_value=0, max_value=10**8))
def test_size_at_most_the_announced(announced: int, stored: int) -> None:
    f = StoredFile(stored, "application/pdf", b"%PDF-1.4")
    if stored <= announced:
        assert check_stored("f", "application/pdf", announced, f) is f
    else:
        with pytest.raises(FileTooLarge):
            check_stored("f", "application/pdf", announced, f)


def test_html_declared_as_an_image_is_refused_whatever_type_it_was_stored_with() -> None:
    page = b"<!doctype html><script>alert(1)</script>"
    with pytest.raises(UnsupportedFile):  # stored as text/html
        check_stored("f", "image/png", 100, StoredFile(len(page), "text/html", page))
    with pytest.raises(UnsupportedFile):  # stored with the announced type, but not a PNG
        check_stored("f", "image/png", 100, StoredFile(len(page), "image/png", page))
    with pytest.raises(UploadMissing):
        check_stored("f", "image/png", 100, None)
    assert sniff(b"\x00\x01binary") is None
    assert sniff(b"caf\xc3") == "text/plain"  # a sample cut inside a character
    assert sniff(b"caf\xc3 and on") is None  # a broken character inside the sample


def test_an_attachment_is_checked_once_and_then_served_from_the_copy() -> None:
    a = Attachment(
        attachment_id=uuid.uuid4(), owner_id=uuid.uuid4(), filename="a.png", content_type="image/png", size=20, key="u"
    )
    with pytest.raises(UnsupportedFile):
        a.check_stored(StoredFile(10, "image/png", b"GIF89a..."), "c")
    assert a.checked_key is None
    a.check_stored(StoredFile(10, "image/png", MAGIC["image/png"]), "checked/a")
    assert (a.checked_key, a.stored_size) == ("checked/a", 10)
    a.check_stored(None, "elsewhere")  # already checked: the copy stands
    assert a.checked_key == "checked/a"

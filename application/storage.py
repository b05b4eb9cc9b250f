"""Object storage (S3 via the minio client): presigned uploads and downloads, and checks of stored objects."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import quote, urlsplit

import urllib3
from minio import Minio
from minio.commonconfig import CopySource
from minio.error import S3Error

from application.settings import Settings
from domain.errors import DomainError
from domain.files import HEAD_BYTES, StoredFile

UPLOAD_TTL = timedelta(minutes=15)  # long enough to upload 25 MB on a slow line; what was uploaded is copied anyway
DOWNLOAD_TTL = timedelta(hours=24)


def safe_name(filename: str) -> str:
    """A client's file name as the last part of a storage key: plain characters only, at most 100 of them."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", filename.strip())[-100:] or "file"


class StorageUnavailable(DomainError):
    """Object storage is not configured or not reachable."""


MISSING = ("NoSuchKey", "NoSuchObject", "NotFound", "ResourceNotFound")


def s3_client(settings: Settings) -> Minio:
    """A minio client whose calls give up within seconds: minio's default (5 minutes, 5 retries) would hold a
    request, and a thread, for as long as S3 hangs; an unanswered S3 is StorageUnavailable (503) instead."""
    u = urlsplit(settings.s3_endpoint_url)
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=2.0, read=5.0),
        maxsize=16,
        # one retry of a refused connection or a 5xx; none of a read that timed out (S3 hangs: give up)
        retries=urllib3.Retry(total=1, read=0, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
    )
    return Minio(
        u.netloc,
        access_key=settings.s3_access_key,
        secret_key=settings.s3_secret_key,
        secure=u.scheme == "https",
        region="us-east-1",
        http_client=http,
    )


class Storage:
    """One bucket; keys are chosen by the application, never by clients."""

    def __init__(self, settings: Settings) -> None:
        if not settings.s3_endpoint_url:
            raise StorageUnavailable("S3 is not configured (S3_ENDPOINT_URL)")
        self.bucket = settings.s3_bucket
        self.client = s3_client(settings)
        self._bucket_ready = False

    def _ensure_bucket(self) -> None:
        if self._bucket_ready:
            return
        try:
            if not self.client.bucket_exists(self.bucket):
                self.client.make_bucket(self.bucket)
        except S3Error as e:
            if e.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise StorageUnavailable(f"cannot use bucket {self.bucket}: {e.code}") from e
        except Exception as e:  # network failures of any kind mean storage is unavailable
            raise StorageUnavailable(f"S3 unreachable: {type(e).__name__}") from e
        self._bucket_ready = True

    def upload_url(self, key: str) -> str:
        """A presigned PUT URL for `key`, valid for UPLOAD_TTL."""
        self._ensure_bucket()
        return str(self.client.presigned_put_object(self.bucket, key, expires=UPLOAD_TTL))

    def download_url(self, key: str, filename: str | None = None, content_type: str | None = None) -> str:
        """A presigned GET URL for `key`, valid for 24 hours; with a filename, the object is served as a download
        (`Content-Disposition: attachment`) of that content type, whatever a browser would make of it."""
        headers: dict[str, str | list[str] | tuple[str]] = {}
        if filename is not None:
            ascii_name = filename.encode("ascii", "replace").decode().replace('"', "_").replace("\\", "_")
            headers["response-content-disposition"] = (
                f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"
            )
        if content_type is not None:
            headers["response-content-type"] = content_type
        return str(
            self.client.presigned_get_object(self.bucket, key, expires=DOWNLOAD_TTL, response_headers=headers or None)
        )

    def copy_to_check(self, uploaded: str, checked: str) -> StoredFile | None:
        """Copy the client's upload to a key only the server writes, and describe the copy (size, type, first
        bytes): whatever the client PUTs afterwards, the copy is what gets checked and served. None when nothing
        was uploaded."""
        self._ensure_bucket()
        try:
            self.client.copy_object(self.bucket, checked, CopySource(self.bucket, uploaded))
            st = self.client.stat_object(self.bucket, checked)
            head = b""
            if st.size:  # a range of an empty object is an error
                response = self.client.get_object(self.bucket, checked, offset=0, length=HEAD_BYTES)
                try:
                    head = response.read()
                finally:
                    response.close()
                    response.release_conn()
        except S3Error as e:
            if e.code in MISSING:
                return None
            raise StorageUnavailable(f"S3 error {e.code}") from e
        except Exception as e:  # network failures of any kind mean storage is unavailable
            raise StorageUnavailable(f"S3 unreachable: {type(e).__name__}") from e
        return StoredFile(int(st.size or 0), str(st.content_type or "application/octet-stream"), head)

    def remove(self, key: str) -> None:
        """Delete an object (a copy that failed its check); a failure to delete is left for the bucket's lifecycle."""
        try:
            self.client.remove_object(self.bucket, key)
        except Exception:  # noqa: S110 - best effort: the object is never referenced
            pass

"""Open a DataSource (Hub repo, https URL, ConfigMap key, PVC path) as a stream of rows.

Used by the validator and by the trainer alike. Rows come numbered from 1 across all files
of the source; a row that cannot be decoded arrives as a RowDefect in its place and the
stream goes on. A file-level problem arrives as a RowDefect numbered 0. `revision` is
the Hub commit sha, or "sha256:<hex>" of the bytes read for files and URLs (for local
files it is filled in once the stream is exhausted).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubetune.api.common import quantity_bytes
from kubetune.api.contract import FailureReason, Mounts
from kubetune.api.dataset import DataSource
from kubetune.api.redact import redact
from kubetune_trainer.data.filereaders import DATA_SUFFIXES, is_data_file, read_records
from kubetune_trainer.data.formats import RowDefect
from kubetune_trainer.data.urlsafety import DownloadTooLarge, HttpStatusError, UrlRefused, fetch_url, probe_url

NumberedRecord = tuple[int, Mapping[str, Any] | RowDefect]


class SourceError(Exception):
    """The source cannot be read at all. `reason` says whether retrying can help."""

    def __init__(self, reason: FailureReason, message: str, token: str | None = None) -> None:
        self.reason = reason
        self.message = redact(message, [token])
        super().__init__(self.message)


@dataclass
class OpenedSource:
    records: Iterator[NumberedRecord]
    revision: str | None  # for local files: None until `records` is exhausted
    size_bytes: int | None
    files: list[str] = field(default_factory=list)  # what is read, for messages and logs

    def __iter__(self) -> Iterator[NumberedRecord]:
        return self.records


def open_source(source: DataSource, *, mounts: Mounts, token: str | None, allow_private_urls: bool = False,
                cache_dir: Path | None = None) -> OpenedSource:
    """Locate and open the data; raises SourceError when it cannot be reached or found."""
    if source.hf is not None:
        from kubetune_trainer.data.hubdata import open_hub

        return open_hub(source.hf, token, cache_dir)
    if source.url is not None:
        return _open_url(source.url.url, allow_private_urls, cache_dir, max_size=source.url.max_size)
    try:
        if source.config_map is not None:
            path = Path(mounts.path_of_config_map(source.config_map.name, source.config_map.key))
        else:
            assert source.pvc is not None
            path = Path(mounts.path_of_pvc(source.pvc.claim_name, source.pvc.path))
    except KeyError as error:
        raise SourceError(FailureReason.INVALID_CONFIG, str(error.args[0])) from error
    return open_local(path, where=source.describe())


def probe_source(source: DataSource, *, mounts: Mounts, token: str | None,
                 allow_private_urls: bool = False) -> str | None:
    """Check that the data can be reached without reading it; the Hub commit it resolves to, if any.

    Raises SourceError as open_source would: the Hub repo, revision and split files exist and
    the token reads them; the URL answers; the file or folder is there.
    """
    if source.hf is not None:
        from kubetune_trainer.data.hubdata import probe_hub

        return probe_hub(source.hf, token)
    if source.url is not None:
        try:
            size = probe_url(source.url.url, allow_private=allow_private_urls)
        except UrlRefused as error:
            raise SourceError(FailureReason.INVALID_CONFIG, str(error)) from error
        except HttpStatusError as error:
            raise SourceError(_reason_for_status(error.status), f"{source.url.url}: HTTP {error.status}") from error
        except OSError as error:
            raise SourceError(FailureReason.UNREACHABLE, f"{source.url.url}: {error}") from error
        limit = quantity_bytes(source.url.max_size)
        if size is not None and size > limit:
            raise SourceError(FailureReason.DATASET_INVALID,
                              f"{source.url.url} is {size:,} bytes, above source.url.maxSize ({source.url.max_size}): "
                              "raise it, and the Pod's ephemeral storage, if the file is meant to be this large")
        return None
    open_source(source, mounts=mounts, token=token)  # local: finds the files, reads nothing yet
    return None


def open_local(path: Path, *, where: str | None = None) -> OpenedSource:
    """A file, or every data file under a folder (sorted by relative path, hidden entries skipped)."""
    where = where or str(path)
    if path.is_dir():
        files = sorted(
            (p for p in path.rglob("*") if p.is_file() and is_data_file(p.name)
             and not any(part.startswith(".") for part in p.relative_to(path).parts)),
            key=lambda p: p.relative_to(path).as_posix(),
        )
        if not files:
            raise SourceError(FailureReason.DATASET_NOT_FOUND,
                              f"{where}: the folder holds no data files ({', '.join(DATA_SUFFIXES[:5])}, ...)")
        names = [p.relative_to(path).as_posix() for p in files]
    elif path.is_file():
        files, names = [path], [path.name]
    else:
        raise SourceError(FailureReason.DATASET_NOT_FOUND, f"{where}: no such file or folder ({path})")
    opened = OpenedSource(records=iter(()), revision=None, size_bytes=sum(p.stat().st_size for p in files),
                          files=names)
    opened.records = _stream(files, names, opened)
    return opened


def _stream(files: list[Path], names: list[str], opened: OpenedSource) -> Iterator[NumberedRecord]:
    content = hashlib.sha256()
    number = 0
    for path, name in zip(files, names, strict=True):
        try:
            for record in read_records(path, content.update, name=name if len(files) > 1 else None):
                if isinstance(record, RowDefect) and record.row == 0:
                    yield 0, record
                    continue
                number += 1
                yield number, record
        except OSError as error:  # e.g. permissions on the volume: nothing a retry changes
            raise SourceError(FailureReason.DATASET_NOT_FOUND,
                              f"{name}: cannot read the file ({error.strerror or error})") from error
    if opened.revision is None:
        opened.revision = f"sha256:{content.hexdigest()}"


# --- URL ------------------------------------------------------------------------------------

def _url_suffix(url: str) -> str:
    path = url.split("?", 1)[0].split("#", 1)[0].lower()
    for suffix in sorted(DATA_SUFFIXES, key=len, reverse=True):
        if path.endswith(suffix):
            return suffix
    return ".data"  # the reader sniffs the content


def _open_url(url: str, allow_private: bool, cache_dir: Path | None, *, max_size: str) -> OpenedSource:
    # A temp file, not memory: the body may be larger than the Pod's memory limit.
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(prefix="kubetune-", suffix=_url_suffix(url), dir=cache_dir)
    path = Path(name)
    content = hashlib.sha256()
    try:
        with os.fdopen(descriptor, "wb") as handle:
            fetch_url(url, handle, allow_private=allow_private, on_chunk=content.update,
                      max_bytes=quantity_bytes(max_size))
    except DownloadTooLarge as error:
        path.unlink()
        raise SourceError(FailureReason.DATASET_INVALID,
                          f"source.url: {error}; the limit is source.url.maxSize ({max_size}): raise it, and the "
                          f"Pod's ephemeral storage, if the file is meant to be this large") from error
    except UrlRefused as error:
        path.unlink()
        raise SourceError(FailureReason.INVALID_CONFIG, str(error)) from error
    except HttpStatusError as error:
        path.unlink()
        raise SourceError(_reason_for_status(error.status), f"{url}: HTTP {error.status}") from error
    except OSError as error:
        path.unlink()
        raise SourceError(FailureReason.UNREACHABLE, f"{url}: {error}") from error
    opened = OpenedSource(records=iter(()), revision=f"sha256:{content.hexdigest()}",
                          size_bytes=path.stat().st_size, files=[url])
    opened.records = _stream_then_delete(path, opened)
    return opened


def _stream_then_delete(path: Path, opened: OpenedSource) -> Iterator[NumberedRecord]:
    try:
        yield from _stream([path], [path.name], opened)
    finally:
        path.unlink(missing_ok=True)


def _reason_for_status(status: int) -> FailureReason:
    if status in (401, 403):
        return FailureReason.AUTH_FAILED
    if status in (404, 410):
        return FailureReason.DATASET_NOT_FOUND
    if status == 429 or status >= 500:
        return FailureReason.UNREACHABLE
    return FailureReason.DATASET_NOT_FOUND


# --- Hugging Face Hub: hubdata.py (imported when needed: `datasets` takes a while to import) ------

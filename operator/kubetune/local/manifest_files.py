"""Where `kubetune run -f` reads manifests from, as `kubectl apply -f` does.

    -f FILE    that file, whatever its name
    -f DIR     the folder's .yaml, .yml and .json files in name order; with -R, sub-folders too
    -f -       standard input

Text is UTF-8; a byte-order mark selects UTF-8 or UTF-16, as kubectl honours one. Anything
else (Latin-1, UTF-16 without a mark, a binary file) is refused naming the file and the fix.
"""

from __future__ import annotations

import codecs
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

MANIFEST_EXTENSIONS = (".yaml", ".yml", ".json")
STDIN = "-"
STDIN_NAME = "<stdin>"
# Enough to tell a binary file before reading all of it (a model file given by mistake can be GBs).
_SNIFF_BYTES = 8192


@dataclass(frozen=True)
class ManifestText:
    name: str  # the path as given (or found in a folder), or <stdin>: what messages call it
    text: str


class ManifestReadError(Exception):
    """The bytes cannot be manifest text; the message says why and what to do."""


def read_manifest_texts(names: Sequence[str | Path], *, recursive: bool = False,
                        stdin: BinaryIO | None = None) -> tuple[list[ManifestText], list[str]]:
    """The text of every file, folder entry or stdin named; problems (one line each) for those unreadable."""
    texts: list[ManifestText] = []
    problems: list[str] = []
    stdin_read = False
    for given in names:
        if str(given) == STDIN:
            if stdin_read:
                problems.append("-f -: standard input can be read only once: give -f - once")
                continue
            stdin_read = True
            _decode_into(STDIN_NAME, (stdin or sys.stdin.buffer).read(), texts, problems)
            continue
        path = Path(given)
        if not path.is_dir():
            _read_file(path, texts, problems)
            continue
        try:
            files = list(folder_manifests(path, recursive=recursive))
            has_folders = any(entry.is_dir() for entry in path.iterdir())
        except OSError as exc:
            problems.append(f"{exc.filename or path}: cannot read the folder: {exc.strerror or exc}")
            continue
        if not files:
            hint = " (sub-folders are read with -R)" if has_folders and not recursive else ""
            problems.append(f"{path}: no {', '.join(MANIFEST_EXTENSIONS)} files in the folder{hint}: "
                            "pass a folder holding manifests, or the files themselves")
        for file in files:
            _read_file(file, texts, problems)
    return texts, problems


def folder_manifests(folder: Path, *, recursive: bool) -> Iterator[Path]:
    """The manifest files of a folder in name order, a sub-folder's in its place, as kubectl walks them."""
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.is_dir():
            if recursive:
                yield from folder_manifests(entry, recursive=True)
        elif entry.suffix.lower() in MANIFEST_EXTENSIONS:
            yield entry


def _read_file(path: Path, texts: list[ManifestText], problems: list[str]) -> None:
    try:
        with path.open("rb") as file:
            head = file.read(_SNIFF_BYTES)
            _refuse_binary(head)
            data = head + file.read()
    except OSError as exc:
        problems.append(f"{path}: cannot read the file: {exc.strerror or exc}")
        return
    except ManifestReadError as exc:
        problems.append(f"{path}: {exc}")
        return
    _decode_into(str(path), data, texts, problems)


def _decode_into(name: str, data: bytes, texts: list[ManifestText], problems: list[str]) -> None:
    try:
        texts.append(ManifestText(name, decode_manifest(data)))
    except ManifestReadError as exc:
        problems.append(f"{name}: {exc}")


def decode_manifest(data: bytes) -> str:
    """UTF-8, or what a byte-order mark says; a ManifestReadError naming the problem otherwise."""
    if data.startswith(codecs.BOM_UTF8):
        return _utf8(data, len(codecs.BOM_UTF8))
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise ManifestReadError(f"starts with a UTF-16 byte-order mark but is not valid UTF-16 "
                                    f"({exc.reason} at byte {exc.start}): save it as UTF-8") from None
    _refuse_binary(data[:_SNIFF_BYTES])
    return _utf8(data, 0)


def _utf8(data: bytes, start: int) -> str:
    try:
        return data[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        at = start + exc.start
        line = data.count(b"\n", 0, at) + 1
        column = at - data.rfind(b"\n", 0, at)
        raise ManifestReadError(
            f"not UTF-8: byte 0x{data[at]:02x} on line {line}, column {column} (Latin-1 or Windows-1252?): "
            "save the file as UTF-8, e.g. iconv -f LATIN1 -t UTF-8 FILE > FILE.utf8.yaml") from None


def _refuse_binary(head: bytes) -> None:
    """NUL bytes never occur in UTF-8 YAML: UTF-16 without a byte-order mark, or not text at all."""
    nul = head.find(b"\0")
    if nul < 0 or head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return
    if _looks_like_utf16(head):
        raise ManifestReadError("looks like UTF-16 without a byte-order mark: save it as UTF-8 "
                                "(e.g. iconv -f UTF-16LE -t UTF-8 FILE > FILE.utf8.yaml)")
    raise ManifestReadError(f"a binary file, not YAML or JSON (a NUL byte at offset {nul}): "
                            "pass the manifest file instead")


def _looks_like_utf16(head: bytes) -> bool:
    """ASCII text in UTF-16: every other byte is zero (odd ones little-endian, even ones big-endian)."""
    pairs = len(head) // 2
    if pairs == 0:
        return False
    zeros = max(head[1::2].count(0), head[0::2].count(0))
    return zeros >= 0.9 * pairs

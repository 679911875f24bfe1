"""Read rows from one data file (JSONL, JSON, CSV/TSV, Parquet; optionally .gz), streaming.

Memory stays bounded by the largest row (or a Parquet batch), never by the file: JSON
arrays are decoded element by element, not with one json.load. A malformed JSON line
yields a RowDefect and reading goes on; a file that cannot be read on yields a RowDefect
with row 0 and stops.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from kubetune_trainer.data.formats import RowDefect

Record = Mapping[str, Any] | RowDefect
ByteSink = Callable[[bytes], None]

_CHUNK = 1 << 16
_TEXT_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv")
DATA_SUFFIXES = (*_TEXT_SUFFIXES, ".parquet", *(s + ".gz" for s in _TEXT_SUFFIXES))
# Long texts (books, code files) exceed csv's 128 KiB default field limit.
csv.field_size_limit(1 << 30)


def is_data_file(name: str) -> bool:
    return name.lower().endswith(DATA_SUFFIXES)


class _HashingReader(io.RawIOBase):
    """Passes every byte read from the file to `sink` (the content hash), once, in order."""

    def __init__(self, raw: BinaryIO, sink: ByteSink) -> None:
        self._raw, self._sink = raw, sink

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        self._sink(data)
        buffer[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        """Hash what the parser did not read (e.g. after a file-level error)."""
        while data := self._raw.read(_CHUNK):
            self._sink(data)


def read_records(path: Path, on_bytes: ByteSink = lambda _: None, name: str | None = None) -> Iterator[Record]:
    """Rows of one file in order; every byte of the file goes through `on_bytes` once."""
    label = name or path.name
    kind = _kind_of(path)
    if kind == ".parquet":
        yield from _parquet_rows(path, label)
        _hash_file(path, on_bytes)
        return
    with path.open("rb") as raw:
        hashing = _HashingReader(raw, on_bytes)
        buffered = io.BufferedReader(hashing, _CHUNK)
        stream = cast(IO[bytes], gzip.GzipFile(fileobj=buffered) if kind.endswith(".gz") else buffered)
        kind = kind.removesuffix(".gz")
        try:
            if kind in (".jsonl", ".ndjson"):
                yield from _jsonl_rows(_binary_lines(stream), label)
            elif kind in (".csv", ".tsv"):
                yield from _csv_rows(_text(stream), label, "\t" if kind == ".tsv" else ",")
            else:
                yield from _json_rows(_text(stream), label)
        except (OSError, EOFError, UnicodeDecodeError, ValueError, csv.Error) as error:
            yield RowDefect("", f"{label}: cannot read on ({_short(error)}); the rest of the file was skipped",
                            row=0)
        # Bytes already in the buffers were hashed when read; hash what the parser left unread.
        hashing.drain()


def _kind_of(path: Path) -> str:
    """The reader to use: by suffix, else by the first bytes (a ConfigMap key may have no suffix)."""
    name = path.name.lower()
    for suffix in (".parquet", *DATA_SUFFIXES):
        if name.endswith(suffix):
            return suffix
    with path.open("rb") as file:
        head = file.read(4)
        if head == b"PAR1":
            return ".parquet"
        if head[:2] == b"\x1f\x8b":
            return ".json.gz"  # the JSON reader also reads JSON Lines
    return ".json"


def _hash_file(path: Path, on_bytes: ByteSink) -> None:
    with path.open("rb") as file:
        while data := file.read(_CHUNK):
            on_bytes(data)


def _text(stream: IO[bytes]) -> io.TextIOWrapper:
    return io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")


def _short(error: BaseException, limit: int = 200) -> str:
    text = str(error) or type(error).__name__
    return text if len(text) <= limit else text[:limit] + "…"


def _binary_lines(stream: IO[bytes]) -> Iterator[tuple[int | None, str]]:
    for number, raw in enumerate(stream, start=1):
        # A line that is not UTF-8 becomes a defect of that row, not the end of the file.
        yield number, raw.decode("utf-8-sig" if number == 1 else "utf-8", errors="surrogateescape")


def _jsonl_rows(lines: Iterator[tuple[int | None, str]], label: str) -> Iterator[Record]:
    for number, line in lines:
        if not line.strip():
            continue
        where = f"{label} line {number}" if number is not None else label
        try:
            line.encode("utf-8")
        except UnicodeEncodeError:
            yield RowDefect("", f"{where}: not UTF-8 text: re-encode the file as UTF-8")
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError as error:
            yield RowDefect("", f"{where}: {json_problem(line, error)}: fix or remove the line")


def json_problem(line: str, error: json.JSONDecodeError) -> str:
    """What is wrong with one JSON line, at a column of that line (json counts the newline as line 2)."""
    text = line.rstrip("\r\n")
    what = error.msg.removesuffix(" at").removesuffix(":")
    if error.msg.startswith("Unterminated string"):
        return f"not valid JSON: the line ends inside a string that starts at column {error.pos + 1}, as if it " \
               "was cut off"
    if error.pos >= len(text.rstrip()):
        return (f"not valid JSON: the line ends inside a value at column {len(text) + 1}, as if it was cut off "
                f"({what})")
    return f"not valid JSON ({what} at column {error.pos + 1})"


def _csv_rows(text: io.TextIOWrapper, label: str, delimiter: str) -> Iterator[Record]:
    reader = csv.DictReader(text, delimiter=delimiter)
    for row in reader:
        if None in row:
            yield RowDefect("", f"{label}: line {reader.line_num} has more values than the header has "
                                "columns (quote values that contain the delimiter)")
        elif any(value is None for value in row.values()):
            yield RowDefect("", f"{label}: line {reader.line_num} has fewer values than the header")
        else:
            yield row


def _parquet_rows(path: Path, label: str) -> Iterator[Record]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        # One row group at a time, without read-ahead: memory follows the row group, not the file.
        parquet = pq.ParquetFile(path, pre_buffer=False)
        for batch in parquet.iter_batches(batch_size=256, use_threads=False):
            yield from batch.to_pylist()
    except (pa.ArrowException, OSError) as error:
        yield RowDefect("", f"{label}: not a readable Parquet file ({_short(error)})", row=0)


# --- JSON: streamed element by element --------------------------------------------------------

_NON_SPACE = re.compile(r"\S")
_DECODER = json.JSONDecoder()


class _JsonScanner:
    """Decodes one JSON value at a time from a text stream, holding only the current value."""

    def __init__(self, text: IO[str]) -> None:
        self._text, self._buffer, self._pos, self._eof = text, "", 0, False
        # Where the buffer starts in the file: lines before it, and its column on its first line.
        self._lines_before, self._column_before = 0, 0

    def _fill(self, size: int = _CHUNK) -> bool:
        chunk = self._text.read(size)
        if not chunk:
            self._eof = True
            return False
        self._drop_consumed()
        self._buffer += chunk
        return True

    def _drop_consumed(self) -> None:
        consumed = self._buffer[: self._pos]
        newlines = consumed.count("\n")
        self._lines_before += newlines
        self._column_before = len(consumed) - consumed.rfind("\n") - 1 if newlines else \
            self._column_before + len(consumed)
        self._buffer, self._pos = self._buffer[self._pos:], 0

    def where(self, error: json.JSONDecodeError) -> str:
        """The error's line and column in the file (json counts from the start of the buffer)."""
        column = error.colno + (self._column_before if error.lineno == 1 else 0)
        what = error.msg.removesuffix(" at").removesuffix(":")
        return f"{what} at line {self._lines_before + error.lineno}, column {column}"

    def peek(self) -> str:
        """The next non-space character ("" at the end), without consuming it."""
        while True:
            match = _NON_SPACE.search(self._buffer, self._pos)
            if match:
                self._pos = match.start()
                return self._buffer[self._pos]
            self._pos = len(self._buffer)
            if not self._fill():
                return ""

    def take(self, expected: str) -> None:
        found = self.peek()
        if found != expected:
            raise ValueError(f"expected {expected!r} but found {found or 'the end of the file'!r}")
        self._pos += 1

    def value(self) -> Any:
        self.peek()
        want = _CHUNK
        while True:
            try:
                value, end = _DECODER.raw_decode(self._buffer, self._pos)
                # A number at the end of the buffer may continue in the next chunk.
                if end < len(self._buffer) or self._eof:
                    self._pos = end
                    return value
            except json.JSONDecodeError as error:
                if self._eof:
                    raise ValueError(f"not valid JSON: {self.where(error)}") from None
            self._fill(want)
            want *= 2  # a long value is re-tried a logarithmic number of times, not once per chunk

    def array(self) -> Iterator[Any]:
        self.take("[")
        if self.peek() == "]":
            self.take("]")
            return
        while True:
            yield self.value()
            if self.peek() == ",":
                self.take(",")
                continue
            self.take("]")
            return

    def rest_lines(self) -> Iterator[tuple[int | None, str]]:
        """The remaining text as numbered lines (for JSON Lines after the first object)."""
        self._drop_consumed()
        number = self._lines_before + 1  # the rest of the line the first object ended on
        pending, self._buffer = self._buffer, ""
        while True:
            newline = pending.find("\n")
            if newline >= 0:
                yield number, pending[: newline + 1]
                number += 1
                pending = pending[newline + 1:]
                continue
            more = self._text.readline()
            if not more:
                if pending:
                    yield number, pending
                return
            pending += more


def _json_rows(text: IO[str], label: str) -> Iterator[Record]:
    """An array of rows, an object with the rows under "data" or "rows", or JSON Lines."""
    scanner = _JsonScanner(text)
    first = scanner.peek()
    if first == "":
        return
    if first == "[":
        yield from scanner.array()
    elif first == "{":
        head: dict[str, Any] = {}
        scanner.take("{")
        while scanner.peek() != "}":
            key = scanner.value()
            scanner.take(":")
            if key in ("data", "rows") and scanner.peek() == "[":
                yield from scanner.array()
                return
            head[str(key)] = scanner.value()
            if scanner.peek() != ",":
                break
            scanner.take(",")
        scanner.take("}")
        # No "data"/"rows" list: the object is the first row of a JSON Lines file.
        yield head
        yield from _jsonl_rows(scanner.rest_lines(), label)
        return
    else:
        raise ValueError(f"not JSON (it starts with {first!r}): if it is CSV or Parquet, name it .csv or .parquet")
    if scanner.peek() != "":
        raise ValueError("unexpected text after the JSON array")

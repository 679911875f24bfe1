"""An opened source's rows as Examples of one format: the one row loop of the validator and the trainer.

With format auto, the format is detected from the first DETECTION_ROWS rows (the same rows
for the validator and the trainer, so both settle on the same format). Every row then comes
out numbered, as an Example or as the RowDefect that says what is wrong with it; a defect of
the data as a whole comes numbered 0. What to do about a defect is the caller's choice: the
validator counts and lists them, the trainer stops at the first.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence

from kubetune.api.dataset import ColumnMapping, DatasetFormat
from kubetune_trainer.data.formats import Example, RowDefect, detect_format, parse_record
from kubetune_trainer.data.sources import NumberedRecord

DETECTION_ROWS = 100


class ExampleStream:
    """Numbered rows parsed as Examples. `format` is None when detection failed (see `undetected`)."""

    def __init__(self, records: Iterable[NumberedRecord], declared: DatasetFormat, columns: ColumnMapping,
                 labels: Sequence[str] = ()) -> None:
        self._records: Iterator[NumberedRecord] = iter(records)
        self._columns = columns
        self._labels = labels
        self.format: DatasetFormat | None = declared
        self.undetected: RowDefect | None = None  # why the format could not be told, as a defect of row 0
        if declared is DatasetFormat.AUTO:
            head = list(itertools.islice(self._records, DETECTION_ROWS))
            self._records = itertools.chain(head, self._records)
            try:
                self.format = detect_format([r for n, r in head if n > 0 and not isinstance(r, RowDefect)],
                                            columns)
            except RowDefect as defect:
                self.format, self.undetected = None, defect

    def __iter__(self) -> Iterator[tuple[int, Example | RowDefect]]:
        if self.format is None:
            raise RuntimeError("the format is unknown: check `undetected` before reading the rows")
        fmt = self.format
        for number, record in self._records:
            if isinstance(record, RowDefect):
                yield number, record
                continue
            try:
                yield number, parse_record(record, fmt, self._columns, labels=self._labels)
            except RowDefect as defect:
                yield number, defect

    def count_rest(self) -> int:
        """Read the rows left without parsing them; how many there were (defects of the whole data aside)."""
        return sum(1 for number, _ in self._records if number > 0)

"""Batches of variable-length rows, padded to the longest row of the batch.

Length-grouped sampling (the trainer's default) keeps rows of similar length together, so
padding to the batch's longest row wastes little; it was the fastest option measured on
CPU (FIELD-NOTES: ~2.9x trl's defaults, ahead of padding-free and packing).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kubetune_trainer.data.dataprep import IGNORE_INDEX


class PadToLongest:
    """Collator: input_ids/attention_mask padded right; labels padded with IGNORE_INDEX (per-token
    labels, generation) or stacked (class targets, classification)."""

    def __init__(self, pad_token_id: int, *, token_labels: bool) -> None:
        self.pad_token_id = pad_token_id
        self.token_labels = token_labels

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        longest = max(len(r["input_ids"]) for r in rows)
        input_ids = np.full((len(rows), longest), self.pad_token_id, dtype=np.int64)
        attention = np.zeros((len(rows), longest), dtype=np.int64)
        token_labels = np.full((len(rows), longest), IGNORE_INDEX, dtype=np.int64)
        class_labels: list[Any] = []
        for i, row in enumerate(rows):
            n = len(row["input_ids"])
            input_ids[i, :n] = row["input_ids"]
            attention[i, :n] = 1
            if "labels" not in row:
                continue
            if self.token_labels:
                token_labels[i, :n] = row["labels"]
            else:
                class_labels.append(row["labels"])
        batch: dict[str, Any] = {
            "input_ids": torch.from_numpy(input_ids),
            "attention_mask": torch.from_numpy(attention),
        }
        if class_labels:
            batch["labels"] = torch.from_numpy(np.stack([np.asarray(c) for c in class_labels]))
        elif self.token_labels and "labels" in rows[0]:
            batch["labels"] = torch.from_numpy(token_labels)
        return batch


class PackRows:
    """Collator for `packing: true`: a batch's rows become one padding-free sequence.

    position_ids restart at every row, from which transformers builds a block-diagonal
    attention (no row sees another; use_cache must be off while training). The first token
    of each row is not a target, so no row learns to predict from the previous row's end.
    With length-grouped batches this avoids all padding without the long packed rows that
    made trl's bin packing slow on CPU.
    """

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        ids = np.concatenate([np.asarray(r["input_ids"], dtype=np.int64) for r in rows])
        positions = np.concatenate([np.arange(len(r["input_ids"]), dtype=np.int64) for r in rows])
        labels = np.concatenate([np.asarray(r["labels"], dtype=np.int64) for r in rows])
        labels[positions == 0] = IGNORE_INDEX
        return {
            "input_ids": torch.from_numpy(ids)[None],
            "position_ids": torch.from_numpy(positions)[None],
            "labels": torch.from_numpy(labels)[None],
        }

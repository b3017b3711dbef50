"""Text classification data: labelled texts as batches for a BERT-family classifier.

:func:`read_table` reads a CSV (header row) or JSONL file (one object per line) with a
text column and a label column (``text`` and ``label`` by default); labels may be
class indices or class names (mapped through the model's class names,
:attr:`headlens.adapters.Adapter.class_names`; a model with only HF's ``LABEL_0``,
``LABEL_1``, … takes indices — guessing an order of names could silently mislabel). :class:`TextExamples` turns texts into the model's inputs.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path
from typing import Sequence

import torch

from ..errors import InputError
from .batch import Batch


def read_table(path: str | os.PathLike, text_column: str = "text", label_column: str = "label") -> tuple[list, list, list]:
    """``(texts, labels, ids)`` of a CSV or JSONL file; an ``id`` column, if any, names the rows."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"text data not found: {path}")
    try:
        # utf-8-sig: a byte-order mark (Excel writes one) is not part of the first column's name
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        line = path.read_bytes()[: error.start].count(b"\n") + 1
        raise InputError(f"{path}, line {line}: not UTF-8 text ({error.reason}); save the file as UTF-8") from None
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            rows.append((number, json_object(line, f"{path}, line {number}", f"{text_column!r} and {label_column!r}")))
    else:
        rows = _csv_rows(path, text)
    if not rows:
        raise InputError(f"{path}: no rows")
    texts, labels, ids = [], [], []
    for number, row in rows:
        missing = [c for c in (text_column, label_column) if c not in row or row[c] in (None, "")]
        if missing:
            columns = ", ".join(repr(c) for c in row) or "none"
            raise InputError(f"{path}, line {number}: no {' or '.join(repr(m) for m in missing)} value "
                             f"(columns: {columns}; set data.text_column / data.label_column)")  # fmt: skip
        texts.append(str(row[text_column]))
        labels.append(row[label_column])
        ids.append(str(row.get("id", f"{path.stem}-{number}")))
    return texts, labels, ids


def json_object(line: str, where: str, keys: str) -> dict:
    """One JSONL line as an object; else an error naming ``where`` and the ``keys`` it should hold."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        raise InputError(f"{where}: not JSON: {error}") from None
    if not isinstance(row, dict):
        raise InputError(f"{where}: expected a JSON object with {keys}")
    return row


def _csv_rows(path: Path, text: str) -> list[tuple[int, dict]]:
    """``(line number, row)`` of a CSV with a header row. Fields may be as long as an article:
    the csv module's per-field limit is raised for this read only (it is process-wide state)."""
    limit = csv.field_size_limit()
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        rows = []
        for row in reader:
            if None in row:  # more fields than the header names
                raise InputError(f"{path}, line {reader.line_num}: more fields than the header's {len(reader.fieldnames)}")
            rows.append((reader.line_num, row))
        return rows
    except csv.Error as error:
        raise InputError(f"{path}, line {reader.line_num}: not valid CSV ({error})") from None
    finally:
        csv.field_size_limit(limit)


def label_indices(labels: Sequence, names: Sequence[str] | None, n_classes: int, where: str) -> list[int]:
    """Class indices of ``labels`` (indices, or names looked up in ``names``)."""
    indices = []
    for label in labels:
        text = str(label).strip()
        if text.lstrip("-").isdigit():
            index = int(text)
        elif names is not None and text in names:
            index = list(names).index(text)
        else:
            valid = f"one of {list(names)}" if names is not None else f"an index below {n_classes}"
            raise InputError(f"{where}: label {text!r} is not {valid}")
        if not 0 <= index < n_classes:
            raise InputError(f"{where}: label {index} is out of range for a model with {n_classes} classes")
        indices.append(index)
    return indices


class TextExamples:
    """Texts with class indices, as batches of token ids (one-hot labels over ``n_classes``).

    Args:
        texts, labels, ids: the examples (labels are class indices).
        tokenizer: the model's tokenizer (truncation at ``max_length``).
        n_classes: how many classes the labels index.
    """

    def __init__(self, texts, labels, ids, tokenizer, n_classes: int, max_length: int = 128):
        if not len(texts) == len(labels) == len(ids):
            raise ValueError("texts, labels and ids differ in length")
        self.texts, self.labels, self.ids = list(texts), torch.as_tensor(list(labels)), [str(i) for i in ids]
        self.tokenizer, self.n_classes, self.max_length = tokenizer, n_classes, max_length

    def __len__(self) -> int:
        return len(self.texts)

    def collate(self, indices: Sequence[int]) -> Batch:
        rows = list(indices)
        encoded = self.tokenizer(
            [self.texts[i] for i in rows], padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        fields = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
        labels = torch.nn.functional.one_hot(self.labels[rows], self.n_classes).float()
        return Batch(fields, labels, [self.ids[i] for i in rows])

"""Language-model data: prompts (and continuations) as batches for a causal LM.

:func:`read_prompts` reads a text file (one prompt per line; blank lines are skipped) or a
JSONL file (one object per line: ``prompt``, and optionally ``continuation`` and ``id``).
:class:`PromptExamples` tokenizes them for a decoder (docs/formats.md#language-model-data):

* the *given tokens* are the continuation's (tokenized on its own, without special tokens,
  after the prompt's tokens); a row without a continuation gives every token of its prompt
  after the first. The perplexity and next-token accuracy of :mod:`headlens.lm` are over them;
* the *score target* is one given token, at ``position`` (an index into the given tokens,
  negative from the end; default the last): the batch's ``inputs`` are the tokens before
  it, its ``labels`` a one-hot at that token over the vocabulary (teacher forcing), so that a
  scoring method differentiates the logit of the token the data gives there (or, with the
  sweep's ``target="predicted"``, of the model's own argmax);
* ``extras["lm"]`` holds the whole sequences (``input_ids``, ``attention_mask``) and the
  next-token targets ``targets`` (``long[batch, length]``: at position ``t`` the given token
  ``t + 1``, −100 where none is given), right-padded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from ..errors import InputError
from .batch import Batch
from .text import json_object

#: targets where no token is given (cross-entropy's ignore index).
IGNORE = -100


@dataclass(frozen=True)
class PromptRow:
    """One prompt of a file, with its continuation (None: none given) and where it was read."""

    prompt: str
    continuation: str | None
    id: str
    where: str  # "file, line N"


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"language-model data not found: {path}")
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as error:
        line = path.read_bytes()[: error.start].count(b"\n") + 1
        raise InputError(f"{path}, line {line}: not UTF-8 text ({error.reason}); save the file as UTF-8") from None


def read_prompts(path: str | os.PathLike) -> list[PromptRow]:
    """The prompts of a text file (``.txt`` or any suffix but ``.jsonl``/``.ndjson``: one per
    line) or a JSONL file (``{"prompt": ..., "continuation": ..., "id": ...}`` per line)."""
    path = Path(path).expanduser()
    jsonl = path.suffix.lower() in (".jsonl", ".ndjson")
    rows = []
    for number, line in enumerate(_lines(path), 1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        if not jsonl:
            rows.append(PromptRow(line, None, f"{path.stem}-{number}", where))
            continue
        row = json_object(line, where, "'prompt' (and optionally 'continuation')")
        prompt, continuation = row.get("prompt"), row.get("continuation")
        if not isinstance(prompt, str) or not prompt:
            found = ", ".join(repr(key) for key in row) or "none"
            raise InputError(f"{where}: 'prompt' must be a non-empty string (keys: {found})")
        if continuation is not None and (not isinstance(continuation, str) or not continuation):
            raise InputError(f"{where}: 'continuation' must be a non-empty string, got {continuation!r}")
        unknown = sorted(set(row) - {"prompt", "continuation", "id"})
        if unknown:
            raise InputError(f"{where}: unknown keys {unknown}; a row holds 'prompt', 'continuation' and 'id'")
        rows.append(PromptRow(prompt, continuation, str(row.get("id", f"{path.stem}-{number}")), where))
    if not rows:
        raise InputError(f"{path}: no prompts")
    return rows


class PromptExamples:
    """Prompts (and continuations) as batches for a causal LM (see the module docstring).

    Args:
        rows: :class:`PromptRow` objects (or ``(prompt, continuation)`` pairs).
        tokenizer: the model's tokenizer; the prompt gets its special tokens, the continuation none.
        vocab_size: the width of the labels (the model's vocabulary).
        max_length: tokens per sequence; longer ones lose their end.
        position: which given token is the score target (index into the given tokens).
    """

    def __init__(self, rows: Sequence, tokenizer, vocab_size: int, max_length: int = 128, position: int = -1):
        rows = [row if isinstance(row, PromptRow) else PromptRow(row[0], row[1], f"prompt-{i}", f"prompt {i}")
                for i, row in enumerate(rows)]  # fmt: skip
        self.ids, self.vocab_size, self.tokenizer = [row.id for row in rows], vocab_size, tokenizer
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.sequences, self.starts, self.targets = [], [], []
        for row in rows:
            tokens = list(tokenizer(row.prompt)["input_ids"])
            start = len(tokens) if row.continuation is not None else 1
            if row.continuation is not None:
                tokens += list(tokenizer(row.continuation, add_special_tokens=False)["input_ids"])
            tokens = tokens[:max_length]
            given = len(tokens) - start
            if given < 1:
                what = "its prompt fills data.max_length" if row.continuation is not None else "it is one token long"
                raise InputError(f"{row.where}: no token to predict: {what} ({len(tokens)} of at most {max_length} tokens)")
            if not -given <= position < given:
                raise InputError(f"{row.where}: lm.position={position}, but the row gives {given} tokens")
            self.sequences.append(tokens)
            self.starts.append(start)
            self.targets.append(start + (position % given))  # index of the target token in the sequence

    def __len__(self) -> int:
        return len(self.sequences)

    def _padded(self, sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        length = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), length), self.pad, dtype=torch.long)
        mask = torch.zeros((len(sequences), length), dtype=torch.long)
        for row, tokens in enumerate(sequences):
            ids[row, : len(tokens)], mask[row, : len(tokens)] = torch.as_tensor(tokens), 1
        return ids, mask

    def collate(self, indices: Sequence[int]) -> Batch:
        rows = list(indices)
        prefix_ids, prefix_mask = self._padded([self.sequences[i][: self.targets[i]] for i in rows])
        target = torch.as_tensor([self.sequences[i][self.targets[i]] for i in rows])
        full_ids, full_mask = self._padded([self.sequences[i] for i in rows])
        targets = torch.full_like(full_ids, IGNORE)
        for row, i in enumerate(rows):
            given = torch.as_tensor(self.sequences[i][self.starts[i] :])
            targets[row, self.starts[i] - 1 : self.starts[i] - 1 + len(given)] = given
        labels = torch.nn.functional.one_hot(target, self.vocab_size).float()
        lm = {"input_ids": full_ids, "attention_mask": full_mask, "targets": targets}
        return Batch({"input_ids": prefix_ids, "attention_mask": prefix_mask}, labels, [self.ids[i] for i in rows],
                     extras={"lm": lm})  # fmt: skip

"""Language-model data (text/JSONL prompts), score targets and the perplexity / next-token metrics."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from headlens.data.lm import IGNORE, PromptExamples, PromptRow, read_prompts
from headlens.errors import InputError
from headlens.lm import LanguageModelMetric, token_sums


class CharTokenizer:
    """One token per character (id = code point − 90, at least 3), a BOS (1) before every prompt; pad 0."""

    pad_token_id = 0

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": ([1] if add_special_tokens else []) + [max(3, ord(c) - 90) for c in text]}


def write(tmp_path, name, lines):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_text_file_is_one_prompt_per_line(tmp_path):
    path = write(tmp_path, "p.txt", ["abc", "", "  ", "de f"])
    rows = read_prompts(path)
    assert rows == [PromptRow("abc", None, "p-1", f"{path}, line 1"), PromptRow("de f", None, "p-4", f"{path}, line 4")]


def test_jsonl_rows_and_their_ids(tmp_path):
    path = write(tmp_path, "p.jsonl", [json.dumps({"prompt": "ab", "continuation": "cd", "id": 7}), "",
                                       json.dumps({"prompt": "xy"})])  # fmt: skip
    rows = read_prompts(path)
    assert [(r.prompt, r.continuation, r.id) for r in rows] == [("ab", "cd", "7"), ("xy", None, "p-3")]


@pytest.mark.parametrize("line, message", [
    ("{not json", "not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
    ("[1, 2]", "expected a JSON object with 'prompt' (and optionally 'continuation')"),
    ('{"text": "a"}', "'prompt' must be a non-empty string (keys: 'text')"),
    ('{"prompt": ""}', "'prompt' must be a non-empty string (keys: 'prompt')"),
    ('{"prompt": "a", "continuation": 3}', "'continuation' must be a non-empty string, got 3"),
    ('{"prompt": "a", "label": 3}', "unknown keys ['label']; a row holds 'prompt', 'continuation' and 'id'"),
])  # fmt: skip
def test_bad_jsonl_lines_name_file_and_line(tmp_path, line, message):
    path = write(tmp_path, "bad.jsonl", ['{"prompt": "fine"}', line])
    with pytest.raises(InputError) as error:
        read_prompts(path)
    assert str(error.value) == f"{path}, line 2: {message}"


def test_empty_missing_and_binary_files(tmp_path):
    empty = write(tmp_path, "empty.txt", ["", " "])
    with pytest.raises(InputError, match=f"^{empty}: no prompts$"):
        read_prompts(empty)
    with pytest.raises(FileNotFoundError, match="language-model data not found"):
        read_prompts(tmp_path / "none.txt")
    binary = tmp_path / "b.txt"
    binary.write_bytes(b"fine\n\xff\xfe\n")
    with pytest.raises(InputError, match=r", line 2: not UTF-8 text"):
        read_prompts(binary)


def test_collate_scores_the_given_token_and_targets_every_given_one():
    rows = [PromptRow("ab", "cde", "x", "x"), PromptRow("fghi", None, "y", "y")]
    tok = CharTokenizer()
    examples = PromptExamples(rows, tok, vocab_size=40, position=-1)
    batch = examples.collate([0, 1])
    a, b = tok("ab")["input_ids"] + tok("cde", False)["input_ids"], tok("fghi")["input_ids"]
    # inputs: everything before the last given token; label: that token (teacher forcing)
    assert batch.fields["input_ids"].tolist() == [a[:-1], b[:-1] + [0]]
    assert batch.fields["attention_mask"].tolist() == [[1] * 5, [1] * 4 + [0]]
    assert batch.labels.argmax(-1).tolist() == [a[-1], b[-1]] and batch.labels.shape == (2, 40)
    lm = batch.extras["lm"]
    assert lm["input_ids"].tolist() == [a, b + [0]] and lm["attention_mask"].tolist() == [[1] * 6, [1] * 5 + [0]]
    # row 0 predicts the continuation only (after the prompt's 3 tokens), row 1 every token after the first
    assert lm["targets"].tolist() == [[IGNORE, IGNORE, *a[3:], IGNORE], [*b[1:], IGNORE, IGNORE]]
    first = PromptExamples(rows, tok, vocab_size=40, position=0).collate([0, 1])
    assert first.fields["input_ids"].tolist() == [a[:3], b[:1] + [0, 0]]
    assert first.labels.argmax(-1).tolist() == [a[3], b[1]]


def test_rows_with_nothing_to_predict_are_errors():
    tok = CharTokenizer()
    with pytest.raises(InputError, match=r"^f, line 3: no token to predict: its prompt fills data.max_length \(4 of at most 4"):
        PromptExamples([PromptRow("abcdef", "g", "i", "f, line 3")], tok, 40, max_length=4)
    with pytest.raises(InputError, match=r"^f, line 1: no token to predict: it is one token long"):
        PromptExamples([PromptRow("a", None, "i", "f, line 1")], tok, 40, max_length=1)
    with pytest.raises(InputError, match=r"^f, line 1: lm.position=3, but the row gives 3 tokens$"):
        PromptExamples([PromptRow("a", "bcd", "i", "f, line 1")], tok, 40, position=3)

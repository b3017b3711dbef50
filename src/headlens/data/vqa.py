"""VQA v2 questions in LXMERT's and MMF's formats, and a dataset over region features.

* LXMERT: ``valid.json`` — a list of ``{img_id, sent, label: {answer: soft score},
  question_id, question_type, answer_type}`` — with the answer list
  ``trainval_label2ans.json`` (3,129 strings); the soft score of an answer is its
  ``label`` entry (0 if absent), a number in [0, 1].
* MMF: ``imdb_val2014.npy`` — records with ``question_str``, ``image_name``,
  ``image_id``, ``question_id``, ``answers`` (10 strings; the first record may be a
  header) — with ``answers_vqa.txt`` (3,129 lines, ``<unk>`` first); soft scores by
  MMF's leave-one-out rule over the 10 answers. The ``.npy`` is an object array (a pickle),
  read as plain data by :func:`headlens.safe_pickle.read_npy`.

The two answer lists order the 3,129 answers differently: class indices are not
shared between the models.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter, OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from .. import safe_pickle
from ..errors import InputError
from .batch import Batch
from .regions import FeatureSource, Regions
from ..resources import hint


def vqa_soft_target(human_answers: Sequence[str], answer: str) -> float:
    """VQA v2 soft score of ``answer`` given the 10 human answers (MMF's rule).

    The mean, over the 10 leave-one-out subsets of 9 answers, of
    ``min(1, count(answer in subset) / 3)``.
    """
    n = len(human_answers)
    if n == 0:
        return 0.0
    hits = Counter(human_answers)[answer]
    # Leaving out one of the `hits` matching answers leaves hits-1; leaving out another leaves hits.
    subsets = hits * min(1.0, (hits - 1) / 3) + (n - hits) * min(1.0, hits / 3)
    return subsets / n


def soft_score_table(labels: Sequence[dict[int, float]], n_answers: int) -> Tensor:
    """Dense ``[batch, n_answers]`` soft scores from sparse ``{answer index: score}`` dicts."""
    table = torch.zeros(len(labels), n_answers)
    for row, label in enumerate(labels):
        for index, value in label.items():
            table[row, int(index)] = float(value)
    return table


@dataclass(frozen=True)
class Question:
    question_id: str
    text: str
    image_id: str  # key of the image's features
    image_name: str  # file stem of the image, e.g. COCO_val2014_000000262148
    labels: dict  # answer index -> soft score


def _need(path: str | os.PathLike, what: str, resource: str) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}; fetch it with `{hint(resource, path)}`")
    return path


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: not JSON ({error})") from None


def read_label2ans(path: str | os.PathLike) -> list[str]:
    """LXMERT's ``trainval_label2ans.json``: a JSON list of answer strings."""
    path = _need(path, "LXMERT answer list", "lxmert-answers")
    answers = _read_json(path)
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        raise InputError(f"{path}: expected a JSON list of answer strings")
    return answers


def read_answers_vqa(path: str | os.PathLike) -> list[str]:
    """MMF's ``answers_vqa.txt``: one answer per line, ``<unk>`` first."""
    path = _need(path, "MMF answer list", "mmf-vqa2")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def read_lxmert_questions(path: str | os.PathLike, answers: Sequence[str]) -> list[Question]:
    """Questions of LXMERT's ``valid.json``; labels are indices into ``answers``."""
    path = _need(path, "LXMERT questions", "lxmert-valid")
    records = _read_json(path)
    if not isinstance(records, list):
        raise InputError(f"{path}: expected a JSON list of question records")
    index = {a: i for i, a in enumerate(answers)}
    questions = []
    for number, record in enumerate(records):
        try:
            labels = {index[a]: _soft_score(s, path, number, a) for a, s in record.get("label", {}).items() if a in index}
            questions.append(Question(str(record["question_id"]), record["sent"], record["img_id"], record["img_id"], labels))
        except (KeyError, TypeError, AttributeError) as error:
            raise InputError(f"{path}, record {number}: missing or malformed field {error}") from None
    return questions


def _soft_score(score, path: Path, number: int, answer: str) -> float:
    """A ``label`` entry of ``valid.json``: a number in [0, 1]."""
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not (math.isfinite(score) and 0 <= score <= 1):
        raise InputError(f"{path}, record {number}, answer {answer!r}: soft score {score!r} is not a number in [0, 1]")
    return float(score)


def read_mmf_imdb(path: str | os.PathLike, answers: Sequence[str], trust_pickle: bool = False) -> list[Question]:
    """Questions of MMF's ``imdb_*.npy``; soft scores by MMF's leave-one-out rule.

    The records are unpickled as plain data; ``trust_pickle`` loads a file that pickles
    anything else with plain pickle, which runs the file's code.
    """
    path = _need(path, "MMF question annotations", "mmf-vqa2")
    records = safe_pickle.read_npy(path, trust_pickle)
    if records.ndim != 1:
        raise InputError(f"{path}: an array of shape {records.shape}, not a list of question records")
    index = {a: i for i, a in enumerate(answers)}
    questions = []
    for number, record in enumerate(records):
        if not isinstance(record, dict) or "question_str" not in record:  # the header record
            continue
        try:
            human = [str(a) for a in record.get("answers", [])]
            labels = {index[a]: vqa_soft_target(human, a) for a in set(human) if a in index}
            name = record["image_name"]
            questions.append(Question(str(record["question_id"]), record["question_str"], name, name, labels))
        except KeyError as error:
            raise InputError(f"{path}, record {number}: missing field {error}") from None
    if not questions:
        raise InputError(f"{path}: no question records (with question_str)")
    return questions


class RegionVQA:
    """Questions over region features, as batches for one model.

    Args:
        questions: the questions.
        features: where each image's regions come from.
        tokenizer: the model's tokenizer (``[CLS] question [SEP]``, truncated to ``max_length``).
        n_answers: the answer list's size.
        slots: pad every image to this many boxes (MMF: 100; the padding is masked);
            None pads to the most boxes in the batch.
        images: folder of the images (``<image_name>.jpg``), needed only for pictures.
    """

    def __init__(
        self,
        questions: Sequence[Question],
        features: FeatureSource,
        tokenizer,
        n_answers: int,
        slots: int | None = None,
        max_length: int = 128,
        images: str | os.PathLike | None = None,
    ):
        self.questions, self.features, self.tokenizer = list(questions), features, tokenizer
        self.n_answers, self.slots, self.max_length = n_answers, slots, max_length
        self.images = Path(images).expanduser() if images else None
        self._cache: OrderedDict[str, Regions] = OrderedDict()

    def __len__(self) -> int:
        return len(self.questions)

    def regions(self, image_id: str) -> Regions:
        if image_id not in self._cache:
            self._cache[image_id] = self.features.get(image_id)
            if len(self._cache) > 256:
                self._cache.popitem(last=False)
        return self._cache[image_id]

    def collate(self, indices: Sequence[int]) -> Batch:
        chosen = [self.questions[i] for i in indices]
        encoded = self.tokenizer(
            [q.text for q in chosen], padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        regions = [self.regions(q.image_id) for q in chosen]
        slots = self.slots or max(len(r.boxes) for r in regions)
        dim = regions[0].features.shape[1]
        features = torch.zeros(len(chosen), slots, dim)
        boxes = torch.zeros(len(chosen), slots, 4)
        box_mask = torch.zeros(len(chosen), slots, dtype=torch.long)
        for row, r in enumerate(regions):
            n = min(len(r.boxes), slots)
            if r.features.shape[1] != dim:
                raise ValueError(f"image {chosen[row].image_id}: {r.features.shape[1]}-d features, others {dim}-d")
            features[row, :n] = torch.from_numpy(r.features[:n])
            boxes[row, :n] = torch.from_numpy(r.normalised_boxes()[:n])
            box_mask[row, :n] = 1
        fields = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"], "features": features,
                  "boxes": boxes}  # fmt: skip
        if not bool(box_mask.all()):
            fields["box_mask"] = box_mask
        labels = soft_score_table([q.labels for q in chosen], self.n_answers)
        return Batch(fields, labels, [q.question_id for q in chosen], {"questions": chosen})

    def describe(self, index: int, scale: int = 1) -> tuple[str, str, np.ndarray, np.ndarray]:
        """``(question, image name, image uint8[H, W, 3], pixel boxes [n, 4])`` for pictures."""
        from PIL import Image

        question = self.questions[index]
        if self.images is None:
            raise ValueError("pictures need the images folder (the COCO_path of the original commands)")
        path = self.images / f"{question.image_name}.jpg"
        if not path.is_file():
            raise FileNotFoundError(f"image not found: {path}; fetch COCO val2014 with `{hint('coco-val2014', path)}`")
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
        return question.text, question.image_name, pixels, self.regions(question.image_id).boxes

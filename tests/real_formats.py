"""Small files in the real formats of VQA v2 experiments, written by the tests themselves:
LXMERT's obj36 TSV and valid.json, MMF's imdb .npy, LMDB and answers_vqa.txt, an MMF-keyed
checkpoint archive, HF checkpoints and tokenizers."""

from __future__ import annotations

import base64
import io
import json
import pickle
import tarfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from headlens.adapters import LxmertAdapter, VisualBertAdapter
from headlens.data.regions import TSV_FIELDS

WORDS = ["what", "color", "is", "the", "cat", "dog", "how", "many", "are", "there", "?"]
ANSWERS = ["yes", "no", "red", "blue", "two", "three", "cat"]
IMAGES = {"COCO_val2014_000000000042": (48, 64), "COCO_val2014_000000000073": (40, 40), "COCO_val2014_000000000074": (64, 32)}
QUESTIONS = [
    ("what color is the cat ?", "COCO_val2014_000000000042", {"red": 1.0, "blue": 0.3}),
    ("how many dogs are there ?", "COCO_val2014_000000000042", {"two": 1.0}),
    ("is the dog blue ?", "COCO_val2014_000000000073", {"no": 1.0}),
    ("what is the cat ?", "COCO_val2014_000000000073", {"cat": 0.9}),
    ("how many are there ?", "COCO_val2014_000000000074", {"three": 0.6, "two": 0.3}),
    ("is the cat red ?", "COCO_val2014_000000000074", {"yes": 1.0}),
]


def tokenizer_folder(folder: Path) -> Path:
    from transformers import BertTokenizer

    vocabulary = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS)}
    BertTokenizer(vocab=vocabulary).save_pretrained(folder)
    return folder


def regions(image: str, boxes: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    height, width = IMAGES[image]
    g = np.random.default_rng(seed)
    corners = np.sort(g.uniform(0, 1, size=(boxes, 2, 2)), axis=1) * np.array([width, height])
    return corners.reshape(boxes, 4).astype(np.float32), g.normal(size=(boxes, dim)).astype(np.float32), height, width


def b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode()


def obj36_tsv(path: Path, boxes: int = 5, dim: int = 12, skip: tuple = ()) -> Path:
    """LXMERT's feature file: one row per image, the ten tab-separated columns, base64 arrays."""
    lines = []
    for seed, image in enumerate(IMAGES):
        if image in skip:
            continue
        xyxy, features, height, width = regions(image, boxes, dim, seed)
        row = {
            "img_id": image, "img_h": height, "img_w": width,
            "objects_id": b64(np.arange(boxes, dtype=np.int64)), "objects_conf": b64(np.ones(boxes, np.float32)),
            "attrs_id": b64(np.zeros(boxes, dtype=np.int64)), "attrs_conf": b64(np.ones(boxes, np.float32)),
            "num_boxes": boxes, "boxes": b64(xyxy), "features": b64(features),
        }  # fmt: skip
        lines.append("\t".join(str(row[f]) for f in TSV_FIELDS))
    path.write_text("\n".join(lines) + "\n")
    return path


def lxmert_questions(folder: Path) -> tuple[Path, Path]:
    valid = [
        {"img_id": image, "sent": text, "label": label, "question_id": 1000 + i, "question_type": "what",
         "answer_type": "other"}
        for i, (text, image, label) in enumerate(QUESTIONS)
    ]  # fmt: skip
    (folder / "valid.json").write_text(json.dumps(valid))
    (folder / "trainval_label2ans.json").write_text(json.dumps(ANSWERS))
    return folder / "valid.json", folder / "trainval_label2ans.json"


def coco_images(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for seed, (image, (height, width)) in enumerate(IMAGES.items()):
        pixels = np.random.default_rng(seed).integers(0, 255, size=(height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{image}.jpg")
    return folder


def lxmert_checkpoint(folder: Path, seed: int = 0) -> Path:
    import transformers

    torch.manual_seed(seed)
    config = LxmertAdapter.make_config(vocab_size=len(WORDS) + 5, feature_dim=12, n_answers=len(ANSWERS), hidden=16,
                                       heads=4, layers={}, intermediate=32, init_range=0.2)  # fmt: skip
    transformers.LxmertForQuestionAnswering(config).save_pretrained(folder)
    return folder


# --- MMF ---------------------------------------------------------------------------------------
MMF_ANSWERS = ["<unk>"] + ANSWERS


def mmf_data(data_dir: Path, boxes: int = 5, dim: int = 12, skip: tuple = ()) -> Path:
    """MMF's layout under env.data_dir: imdb .npy, LMDB features, answers_vqa.txt."""
    import lmdb

    annotations = data_dir / "datasets/vqa2/defaults/annotations"
    vocabs = data_dir / "datasets/vqa2/defaults/extras/vocabs"
    features = data_dir / "datasets/coco/defaults/features/trainval2014.lmdb"
    for folder in (annotations, vocabs, features.parent):
        folder.mkdir(parents=True, exist_ok=True)
    records = [{"create_time": "test", "dataset_name": "vqa2", "version": 1}]  # MMF's header record
    for i, (text, image, label) in enumerate(QUESTIONS):
        best = max(label, key=label.get)
        human = [best] * 7 + ["yes"] * 2 + ["no"]
        records.append({"question_str": text, "image_name": image, "image_id": int(image[-12:]),
                        "question_id": 2000 + i, "answers": human, "feature_path": f"{image}.npy"})  # fmt: skip
    np.save(annotations / "imdb_val2014.npy", np.array(records, dtype=object), allow_pickle=True)
    (vocabs / "answers_vqa.txt").write_text("\n".join(MMF_ANSWERS) + "\n")
    env = lmdb.open(str(features), map_size=1 << 24)
    keys = []
    with env.begin(write=True) as txn:
        for seed, image in enumerate(IMAGES):
            if image in skip:
                continue
            xyxy, feats, height, width = regions(image, boxes, dim, seed)
            key = str(int(image[-12:]))  # MMF keys images by their numeric id
            txn.put(key.encode(), pickle.dumps({"features": feats, "bbox": xyxy, "num_boxes": boxes,
                                                "image_width": width, "image_height": height}))  # fmt: skip
            keys.append(key.encode())
        txn.put(b"keys", pickle.dumps(keys))
    env.close()
    return data_dir


def mmf_model(seed: int = 0):
    from headlens.models import MMFVisualBertForQuestionAnswering

    torch.manual_seed(seed)
    config = VisualBertAdapter.make_config(vocab_size=len(WORDS) + 5, feature_dim=12, n_answers=len(MMF_ANSWERS),
                                           hidden=16, heads=4, layers={"layers": 2}, intermediate=32, init_range=0.2)  # fmt: skip
    return MMFVisualBertForQuestionAnswering(config).eval()


def mmf_keys(state: dict) -> dict:
    """Our names → MMF's (the inverse of headlens.models.mmf.rename), with DataParallel's prefix."""
    out = {}
    for key, value in state.items():
        key = key.replace("visual_bert.", "model.bert.", 1).replace("classifier.", "model.classifier.", 1)
        key = key.replace("embeddings.visual_token_type_embeddings.", "embeddings.token_type_embeddings_visual.")
        key = key.replace("embeddings.visual_position_embeddings.", "embeddings.position_embeddings_visual.")
        key = key.replace("embeddings.visual_projection.", "embeddings.projection.")
        out["module." + key] = value
    return out


def mmf_archive(path: Path, model) -> Path:
    """The zoo's layout: a .tar.gz with one yaml and one .pth (state dict under 'model')."""
    buffer = io.BytesIO()
    torch.save({"model": mmf_keys(model.state_dict()), "optimizer": {}}, buffer)
    yaml = b"model_config:\n  visual_bert:\n    num_attention_heads: 4\n    training_head_type: classification\n"
    with tarfile.open(path, "w:gz") as archive:
        for name, data in (("visual_bert.finetuned.vqa2.from_coco_train/config.yaml", yaml),
                           ("visual_bert.finetuned.vqa2.from_coco_train/model.pth", buffer.getvalue())):  # fmt: skip
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


# --- a text classifier and its labelled texts ----------------------------------------------------
TEXT_WORDS = ["good", "bad", "movie", "great", "awful", "film", "the", "was", "plot", "fine"]
TEXT_LABELS = ["neg", "mid", "pos"]


def text_classifier_folder(folder: Path, seed: int = 0) -> Path:
    """A tiny BERT sequence classifier saved in HF format with its WordPiece tokenizer."""
    import transformers

    torch.manual_seed(seed)
    config = transformers.BertConfig(
        vocab_size=len(TEXT_WORDS) + 5, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=32, num_labels=3, initializer_range=0.3, pad_token_id=0, max_position_embeddings=128,
        id2label=dict(enumerate(TEXT_LABELS)), label2id={name: i for i, name in enumerate(TEXT_LABELS)},
    )  # fmt: skip
    transformers.BertForSequenceClassification(config).save_pretrained(folder)
    vocabulary = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + TEXT_WORDS)}
    transformers.BertTokenizer(vocab=vocabulary).save_pretrained(folder)
    return folder


def labelled_csv(path: Path, rows: int = 20, encoding: str = "utf-8") -> Path:
    """``text,label`` rows of the classifier's words, labels by class name."""
    lines = ["text,label"] + [
        " ".join(TEXT_WORDS[(i + k) % len(TEXT_WORDS)] for k in range(5)) + f",{TEXT_LABELS[i % 3]}" for i in range(rows)
    ]
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path

"""The public files of the real VQA v2 experiments: what each download is, where it lands
under the data folder, and the command that fetches it (for "not found" messages).

Data folder (:func:`headlens.paths.data_dir`): ``$HEADLENS_DATA``, else
``~/.cache/headlens/data``; ``headlens download --dir`` overrides both. Destinations below are
relative to it; loaders look there.

Where the URLs and checksums come from (read through the code/docs search, not guessed):

* HuggingFace repos: the ``tree/main`` listings. ``unc-nlp/lxmert-vqa-uncased`` has
  ``config.json`` and ``pytorch_model.bin`` (856 MB; a ``model.safetensors`` exists only in
  the bot's pull-request branch, not on ``main``). ``unc-nlp/lxmert-base-uncased`` has
  ``vocab.txt``, ``tokenizer_config.json`` and, since commit 628572c, ``tokenizer.json``.
  ``uclanlp/visualbert-vqa`` has ``config.json`` and ``pytorch_model.bin`` (455 MB; its sha256
  is the Git LFS oid shown on the file's page at commit e3da2db, the one ``main`` holds).
  ``bert-base-uncased`` now lives at ``google-bert/bert-base-uncased``; the old id only
  redirects, so the canonical one is used.
* MMF (facebookresearch/mmf): ``mmf/configs/zoo/models.yaml`` maps
  ``visual_bert.finetuned.vqa2.from_coco_train`` to ``mmf://models/visual_bert/
  visual_bert.finetuned.vqa2.train.tar.gz``; ``mmf/configs/zoo/datasets.yaml`` gives
  ``vqa2.defaults`` (``annotations/annotations.tar.gz``, ``extras.tar.gz``) and
  ``coco.defaults`` features (``features/trainval2014.tar.gz``). ``mmf/utils/download.py``
  expands ``mmf://`` to ``https://dl.fbaipublicfiles.com/mmf/data/`` and checks ``hashcode``
  as sha256, so those hashcodes are used here. ``mmf/datasets/mmf_dataset_builder.py``
  downloads a dataset's annotations/features into ``datasets/<name>/<variation>/<kind>/`` and
  its extras into ``datasets/<name>/<variation>/``, unpacking each archive where it lies;
  the layout below mirrors that (``.../annotations/imdb_val2014.npy``,
  ``.../extras/vocabs/answers_vqa.txt``, ``coco/defaults/features/trainval2014.lmdb``).
* LXMERT (airsplay/lxmert): the README's ``valid.json`` and ``val2014_obj36.zip`` URLs;
  ``data/vqa/trainval_label2ans.json`` is in the repository. The README unzips the val
  features with ``-d data`` (train with ``-d data/mscoco_imgfeat``), i.e. the val archive holds
  ``mscoco_imgfeat/val2014_obj36.tsv``; ``archive_root`` strips that folder so the file lands
  at ``lxmert/mscoco_imgfeat/val2014_obj36.tsv`` whichever way it is packed.
* COCO: ``http://images.cocodataset.org/zips/val2014.zip`` as listed in MMF's datasets.yaml.

* ``trainval_label2ans.json`` is fetched from airsplay/lxmert at commit 0db1182 (the file has
  not changed since it was added in 90a4fde); its sha256 and exact size are those of that blob.

Not published, hence ``sha256=None`` (a non-empty file of the exact size, where that is known,
is taken as present): the HF files other than VisualBERT's weights (HF pages show the sha256 of
LFS files only, and ``unc-nlp/lxmert-vqa-uncased``'s weights page was not found), LXMERT's
``valid.json`` and features, and COCO. ``size`` is approximate (HF's file pages,
cocodataset.org's "41K/6GB"), shown by ``--list`` with a ``~`` and used as the progress total
when a server sends no length, never checked; ``exact_size`` is checked.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .paths import data_dir as data_dir_or_default

MMF = "https://dl.fbaipublicfiles.com/mmf/data/"  # what MMF's ``mmf://`` prefix stands for


@dataclass(frozen=True)
class Remote:
    """One file to fetch: ``url`` → ``dest`` (relative to the data folder).

    ``unpack_to``: unpack the archive (.zip, .tar.gz) into this folder (relative to the data
    folder) after it is fetched; ``lands``: the path (relative) that exists once unpacked, which
    tells whether unpacking is done; ``archive_root``: a single top folder of the archive whose
    contents, not the folder itself, go into ``unpack_to``.
    """

    url: str
    dest: str
    sha256: str | None = None
    size: int | None = None  # approximate bytes, for --list and as a progress total fallback; never checked
    exact_size: int | None = None  # bytes, checked after every transfer and before "already present"
    unpack_to: str | None = None
    lands: str | None = None
    archive_root: str | None = None

    @property
    def landing(self) -> str:
        """Where the file, or what it unpacks to, lands (relative to the data folder)."""
        return self.lands if self.unpack_to and self.lands else self.dest


@dataclass(frozen=True)
class Resource:
    """A named set of files fetched together by ``headlens download <name>``."""

    name: str
    files: tuple[Remote, ...]
    description: str


def _hf(repo: str, into: str, *names: str, sha256: dict[str, str] | None = None,
        size: dict[str, int] | None = None) -> tuple[Remote, ...]:  # fmt: skip
    """Files of a HuggingFace model repo at ``main``, placed flat in ``into``."""
    sha256, size = sha256 or {}, size or {}
    return tuple(
        Remote(f"https://huggingface.co/{repo}/resolve/main/{name}", f"{into}/{name}", sha256.get(name), size.get(name))
        for name in names
    )


FILES: dict[str, Resource] = {
    "lxmert-vqa": Resource(
        "lxmert-vqa",
        _hf("unc-nlp/lxmert-vqa-uncased", "models/unc-nlp/lxmert-vqa-uncased", "config.json", "pytorch_model.bin",
            size={"pytorch_model.bin": 856_000_000}),
        "LXMERT fine-tuned on VQA v2 (HF unc-nlp/lxmert-vqa-uncased): config and weights",
    ),
    "lxmert-tokenizer": Resource(
        "lxmert-tokenizer",
        _hf("unc-nlp/lxmert-base-uncased", "models/unc-nlp/lxmert-base-uncased",
            "vocab.txt", "tokenizer_config.json", "tokenizer.json"),
        "LXMERT's uncased WordPiece tokenizer (HF unc-nlp/lxmert-base-uncased)",
    ),
    "visualbert-vqa": Resource(
        "visualbert-vqa",
        _hf("uclanlp/visualbert-vqa", "models/uclanlp/visualbert-vqa", "config.json", "pytorch_model.bin",
            sha256={"pytorch_model.bin": "0ae380f5aeec7fbf4e4b7c74bf543e5e7e2d6fbb88c1862d9949880af9f68200"},
            size={"pytorch_model.bin": 455_000_000}),
        "VisualBERT fine-tuned on VQA v2 (HF uclanlp/visualbert-vqa): config and weights",
    ),
    "bert-tokenizer": Resource(
        "bert-tokenizer",
        _hf("google-bert/bert-base-uncased", "models/bert-base-uncased",
            "vocab.txt", "tokenizer_config.json", "tokenizer.json"),
        "BERT's uncased tokenizer, which VisualBERT uses (HF bert-base-uncased)",
    ),
    "mmf-visual-bert-vqa2": Resource(
        "mmf-visual-bert-vqa2",
        (Remote(MMF + "models/visual_bert/visual_bert.finetuned.vqa2.train.tar.gz",
                "models/visual_bert.finetuned.vqa2.from_coco_train.tar.gz",
                "e786351503f0e19abd916cc9063b427adc60a0f98f6686e58b296672e90b74c8"),),
        "MMF zoo checkpoint visual_bert.finetuned.vqa2.from_coco_train (kept as .tar.gz)",
    ),
    "lxmert-valid": Resource(
        "lxmert-valid",
        (Remote("https://nlp.cs.unc.edu/data/lxmert_data/vqa/valid.json", "lxmert/vqa/valid.json"),),
        "LXMERT's VQA v2 validation questions with answer scores (valid.json)",
    ),
    "lxmert-answers": Resource(
        "lxmert-answers",
        (Remote("https://raw.githubusercontent.com/airsplay/lxmert/0db1182b9030da3ce41f17717cc628e1cd0a95d5/"
                "data/vqa/trainval_label2ans.json", "lxmert/vqa/trainval_label2ans.json",
                "e72e568a6303130f5a627db06360605ee3b306366ff463aa5153d782adc12a7d", exact_size=46_668),),
        "LXMERT's VQA answer vocabulary, label index -> answer (trainval_label2ans.json)",
    ),
    "lxmert-features": Resource(
        "lxmert-features",
        (Remote("https://nlp.cs.unc.edu/data/lxmert_data/mscoco_imgfeat/val2014_obj36.zip",
                "lxmert/mscoco_imgfeat/val2014_obj36.zip", unpack_to="lxmert/mscoco_imgfeat",
                lands="lxmert/mscoco_imgfeat/val2014_obj36.tsv", archive_root="mscoco_imgfeat"),),
        "LXMERT's Faster R-CNN features of COCO val2014, 36 boxes per image (val2014_obj36.tsv)",
    ),
    "mmf-vqa2": Resource(
        "mmf-vqa2",
        (
            Remote(MMF + "datasets/vqa2/defaults/annotations/annotations.tar.gz",
                   "datasets/vqa2/defaults/annotations/annotations.tar.gz",
                   "58daa4b6e5992258049f18a9d7a397e027bdd29388027aad90b41c687024a7b8",
                   unpack_to="datasets/vqa2/defaults/annotations",
                   lands="datasets/vqa2/defaults/annotations/imdb_val2014.npy"),
            Remote(MMF + "datasets/vqa2/defaults/extras.tar.gz", "datasets/vqa2/defaults/extras.tar.gz",
                   "e45c3dbef61e5cc550b08ed7299c88cf7937efa219d071342b8ed7a6a5642a55",
                   unpack_to="datasets/vqa2/defaults", lands="datasets/vqa2/defaults/extras/vocabs/answers_vqa.txt"),
            Remote(MMF + "datasets/coco/defaults/features/trainval2014.tar.gz",
                   "datasets/coco/defaults/features/trainval2014.tar.gz",
                   "242b4a2bf3ab930c3275d3ab9b4e1dccd1fb1745d3e939f8d50482d83e1fd1ad",
                   unpack_to="datasets/coco/defaults/features",
                   lands="datasets/coco/defaults/features/trainval2014.lmdb"),
        ),
        "MMF's VQA v2 annotations (imdb_*.npy), answer vocabulary and COCO trainval2014 LMDB features",
    ),
    "coco-val2014": Resource(
        "coco-val2014",
        (Remote("http://images.cocodataset.org/zips/val2014.zip", "datasets/coco/subset_val/images/val2014.zip",
                size=6_000_000_000, unpack_to="datasets/coco/subset_val/images",
                lands="datasets/coco/subset_val/images/val2014"),),
        "COCO val2014 images (COCO_val2014_*.jpg), for drawing relevance maps",
    ),
}  # fmt: skip


# --- where files land --------------------------------------------------------------------


def find_resource(name: str) -> Resource:
    if name not in FILES:
        raise KeyError(f"unknown download {name!r}; valid names: {', '.join(FILES)}")
    return FILES[name]


def expected_path(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Where resource ``name``'s first file (or what it unpacks to) lands."""
    return data_dir_or_default(data_dir) / find_resource(name).files[0].landing


def hint(name: str, looked_at: str | os.PathLike | None = None) -> str:
    """The command that fetches resource ``name``, for "not found" messages. Given the path
    a loader looked at, it adds the ``--dir`` that lands the files there, when that is not
    the default data folder (and the path is where a download lands, inside what it
    unpacks to, or the folder its files go into)."""
    command = f"headlens download {find_resource(name).name}"
    if looked_at is None:
        return command
    path = Path(looked_at).expanduser().absolute()
    for remote in find_resource(name).files:
        for landing in (Path(remote.landing).parts, Path(remote.landing).parent.parts):
            for end in range(len(path.parts), len(landing) - 1, -1):  # the path itself, then its parents
                if landing and path.parts[end - len(landing) : end] == landing:
                    root = Path(*path.parts[: end - len(landing)])
                    return command if root == data_dir_or_default().absolute() else f"{command} --dir {root}"
    return command


def is_present(resource: Resource, data_dir: str | os.PathLike | None = None) -> bool:
    """Whether every file of ``resource`` (or what it unpacks to) is in place."""
    root = data_dir_or_default(data_dir)
    return all((root / remote.landing).exists() for remote in resource.files)

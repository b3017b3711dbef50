"""Speed-up of physically pruned models (``headlens export``) at 30/50/70 % of the heads removed.

    python benchmarks/export_speed.py [--device cpu|cuda] [--size base] [--batch 16] [--json PATH]
    python benchmarks/export_speed.py --decoder[-only] [--decoder-layers 30] [--prompt 128] [--steps 32]

``--decoder`` also measures a random Llama of SmolLM2-135M's shape (hidden 576, 9 query heads
sharing 3 key/value heads, intermediate 1536, vocabulary 49152; ``--decoder-layers`` of its
30 layers) at 25/50/75 % of the query heads removed: the prefill of a prompt and KV-cache
decoding, each next to the ceiling that attention's share of the multiply-adds allows
(``1 / (1 − f·a)`` with ``a`` that share at the measured lengths: removing every head of
every layer could save no more). ``--decoder-only`` skips the encoders.

Heads are removed at random (the speed does not depend on which). The full and the pruned
models run in turn on the same batch, ``--repeat`` rounds; each model's fastest time counts
(the least disturbed by whatever else the machine does).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from headlens.export import export
from headlens.models import load_model
from _common import add_common_arguments, merge_json, random_batch, random_model

FRACTIONS = (0.3, 0.5, 0.7)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", default="base")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--decoder", action="store_true", help="also measure a SmolLM2-shaped Llama")
    parser.add_argument("--decoder-layers", type=int, default=30)
    parser.add_argument("--prompt", type=int, default=128, help="decoder prompt tokens")
    parser.add_argument("--steps", type=int, default=32, help="decoder tokens generated with the KV cache")
    add_common_arguments(parser, families=["visual_bert", "lxmert"])
    parser.add_argument("--decoder-only", action="store_true", help="measure the decoder alone")
    args = parser.parse_args()
    args.decoder = args.decoder or args.decoder_only
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, batch {args.batch}, size {args.size}")
    figures = dict(device=args.device, threads=torch.get_num_threads(), batch=args.batch, size=args.size,
                   repeat=args.repeat, models={})  # fmt: skip
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    for family in [] if args.decoder_only else args.families:
        adapter = random_model(family, args.size, args.device)
        batch = random_batch(adapter, args.size, args.batch)
        models, removed = {"full": adapter.model}, {}
        for fraction in FRACTIONS:
            scores = torch.rand(adapter.num_sites * adapter.num_heads, generator=torch.Generator().manual_seed(0))
            keep = (scores.argsort().argsort() >= int(fraction * scores.numel())).float()
            with tempfile.TemporaryDirectory() as folder:
                report = export(adapter.model, keep.view(adapter.num_sites, adapter.num_heads), folder)
                models[fraction] = load_model(family, folder).to(args.device)
            removed[fraction] = report["pruned_effective"] / report["heads"]
        best = dict.fromkeys(models, float("inf"))
        with torch.no_grad():
            for model in models.values():  # warm-up
                model(**batch.inputs)
            for _ in range(args.repeat):
                for name, model in models.items():
                    sync()
                    start = time.perf_counter()
                    model(**batch.inputs)
                    sync()
                    best[name] = min(best[name], time.perf_counter() - start)
        parts = [f"{family:<12} full {best['full']:.4f} s"]
        parts += [f"{f:.0%}: {best['full'] / best[f]:.2f}x ({removed[f]:.0%} removed)" for f in FRACTIONS]
        print(" | ".join(parts))
        figures["models"][f"{family} {args.size}"] = dict(full_s=best["full"], fractions={
            f"{f:g}": dict(seconds=best[f], speedup=best["full"] / best[f], removed=removed[f]) for f in FRACTIONS
        })  # fmt: skip
        merge_json(args.json, "export_speed", figures)
    if args.decoder:
        figures["models"][f"llama smollm2-shape {args.decoder_layers} layers"] = decoder_speed(args)
        merge_json(args.json, "export_speed", figures)


#: the shape of SmolLM2-135M (a random Llama: speed does not depend on the weights).
SMOLLM2 = dict(hidden_size=576, num_attention_heads=9, num_key_value_heads=3, intermediate_size=1536,
               vocab_size=49152, max_position_embeddings=2048, tie_word_embeddings=True)  # fmt: skip
DECODER_FRACTIONS = (0.25, 0.5, 0.75)


def attention_share(config, context: float, outputs: float = 1.0) -> float:
    """Attention's share of the multiply-adds per token (projections, and scores and mixing over
    ``context`` keys), the output layer run for ``outputs`` of the tokens (a prefill keeps the
    last token's logits only)."""
    d = config.hidden_size // config.num_attention_heads
    queries, kvs = config.num_attention_heads * d, config.num_key_value_heads * d
    attention = 2 * config.hidden_size * queries + 2 * config.hidden_size * kvs + 2 * context * queries
    layer = attention + 3 * config.hidden_size * config.intermediate_size
    total = config.num_hidden_layers * layer + outputs * config.hidden_size * config.vocab_size
    return config.num_hidden_layers * attention / total


def decoder_speed(args) -> dict:
    """Prefill and KV-cache decoding of the full and the pruned SmolLM2-shaped decoders."""
    import transformers

    config = transformers.LlamaConfig(**SMOLLM2, num_hidden_layers=args.decoder_layers)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).to(args.device).eval()
    heads = args.decoder_layers * config.num_attention_heads
    models, removed = {"full": model}, {}
    for fraction in DECODER_FRACTIONS:
        keep = (torch.rand(heads, generator=torch.Generator().manual_seed(0)).argsort().argsort()
                >= int(fraction * heads)).float()  # fmt: skip
        with tempfile.TemporaryDirectory() as folder:
            report = export(model, keep.view(args.decoder_layers, -1), folder)
            models[fraction] = load_model("decoder", folder, progress=False).to(args.device)
        removed[fraction] = report["pruned_effective"] / report["heads"]
    prompt = torch.randint(0, config.vocab_size, (args.batch, args.prompt), generator=torch.Generator().manual_seed(1))
    prompt = prompt.to(args.device)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    def prefill(m):
        return m(input_ids=prompt, use_cache=True, logits_to_keep=1)

    def decode(m):
        out = prefill(m)
        cache, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        sync()
        start = time.perf_counter()
        for _ in range(args.steps):
            out = m(input_ids=token, past_key_values=cache, use_cache=True)
            cache, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        sync()
        return time.perf_counter() - start

    best = {kind: dict.fromkeys(models, float("inf")) for kind in ("prefill", "decode")}
    with torch.no_grad():
        for m in models.values():
            prefill(m)  # warm-up
        for _ in range(args.repeat):
            for name, m in models.items():
                sync()
                start = time.perf_counter()
                prefill(m)
                sync()
                best["prefill"][name] = min(best["prefill"][name], time.perf_counter() - start)
                best["decode"][name] = min(best["decode"][name], decode(m))
    shares = {"prefill": attention_share(config, (args.prompt + 1) / 2, 1 / args.prompt),
              "decode": attention_share(config, args.prompt + args.steps / 2)}  # fmt: skip
    figures = {}
    for kind in ("prefill", "decode"):
        full = best[kind]["full"]
        parts = [f"decoder {kind:<8} full {full:.4f} s, attention {shares[kind]:.0%} of the multiply-adds"]
        figures[kind] = dict(full_s=full, attention_share=shares[kind], fractions={})
        for f in DECODER_FRACTIONS:
            ceiling = 1 / (1 - removed[f] * shares[kind])
            parts.append(f"{f:.0%}: {full / best[kind][f]:.2f}x (ceiling {ceiling:.2f}x)")
            figures[kind]["fractions"][f"{f:g}"] = dict(seconds=best[kind][f], speedup=full / best[kind][f],
                                                        ceiling=ceiling, removed=removed[f])  # fmt: skip
        print(" | ".join(parts))
    return dict(layers=args.decoder_layers, prompt=args.prompt, steps=args.steps, batch=args.batch, **figures)


if __name__ == "__main__":
    main()

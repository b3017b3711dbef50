"""Every way headlens edits a model is undone: for every scoring method, map method and gated
pass, on every family, after a normal run, an error in the forward pass and an error in the
backward pass. "Edits" are module hooks, hooks attached to the attention-function registry,
the model's attention implementation, a torch-function mode (the LRP pass), module training
flags, parameters' ``requires_grad`` and gradients, and the grad-enabled switch."""

import pytest
import torch

import headlens
from headlens.adapters import adapter_for
from headlens.edits import attention_function, gates
from headlens.relevance import relevance_maps
from headlens.relevance.maps import MAP_METHODS
from headlens.scoring import METHODS, capture_needs

from conftest import hooks_left, tiny_adapter, tiny_batch
from decoders import decoder_adapter, decoder_batch, token_lists
from helpers import MODELS

#: the VQA models, an encoder of each kind, and decoders with grouped KV heads and soft-capping.
FAMILIES = ("lxmert", "visual_bert", "bert", "vit", "llama", "gemma2", "gpt2")


class Boom(RuntimeError):
    pass


def fail_in_backward(module, args, output):
    """A forward hook whose output's gradient hook raises: the backward pass fails midway."""

    def boom(grad):
        raise Boom("backward")

    if output.requires_grad:
        output.register_hook(boom)


def subject(family: str):
    if family in ("lxmert", "visual_bert"):
        adapter = tiny_adapter(family)
        return adapter, tiny_batch(adapter, size=3).inputs
    if family in MODELS:
        make, inputs = MODELS[family]
        return adapter_for(make()), inputs()
    adapter = decoder_adapter(family)
    return adapter, decoder_batch(adapter, token_lists(3), side="left").inputs


def state(model: torch.nn.Module) -> dict:
    """Everything an edit could leave behind."""
    return {
        "hooks": hooks_left(model),
        "attention function hooks": attention_function.attached(),
        "attention implementation": getattr(model.config, "_attn_implementation", None),
        "torch function modes": torch._C._len_torch_function_stack(),
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "gradients": [p.grad is not None for p in model.parameters()],
        "grad enabled": torch.is_grad_enabled(),
    }


def last_linear(model: torch.nn.Module) -> torch.nn.Module:
    """The classifier's last linear layer: every site has run when it does."""
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]


def operations(adapter, inputs):
    """(name, whether it runs a backward pass, the call) for everything that edits the model."""
    n = len(next(iter(inputs.values())))
    for method in sorted(METHODS):
        needs = capture_needs([method])
        yield f"score {method}", needs["grad"] or needs["relevance"], lambda m=method: headlens.score(adapter, inputs, m)
    for method in sorted(MAP_METHODS):
        backward = method in ("ours", "lrp")
        yield f"map {method}", backward, lambda m=method: relevance_maps(adapter, inputs, m)
    mask = torch.ones(n, adapter.num_sites, adapter.num_heads, dtype=adapter.dtype)

    def gated():
        with torch.no_grad(), gates(adapter, mask):
            return adapter.logits(inputs)

    yield "gated forward", False, gated


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("failure", ["none", "forward", "backward"])
def test_every_edit_is_undone_after_every_operation_and_failure(family, failure):
    adapter, inputs = subject(family)
    adapter.model.train()  # a mode the operations switch away from, so restoring it is visible
    adapter.model.get_submodule(next(n for n, _ in adapter.model.named_children())).eval()
    before = state(adapter.model)
    for name, backward, run in operations(adapter, inputs):
        injected = {
            "none": None,
            "forward": lambda m, i, o: (_ for _ in ()).throw(Boom("forward")),
            "backward": fail_in_backward,
        }[failure]
        handle = last_linear(adapter.model).register_forward_hook(injected) if injected else None
        try:
            if failure == "forward" or (failure == "backward" and backward):
                with pytest.raises(Boom):
                    run()
            else:
                run()
        finally:
            if handle is not None:
                handle.remove()
        assert state(adapter.model) == before, f"{name} on {family} after a {failure} failure"

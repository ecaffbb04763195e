# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""SAM's encoder MLP, frozen, without keeping its wide hidden layer for the backward pass.

`mlp(x) = lin2(act(lin1(x)))` with a hidden layer 4x as wide as the stream. With its weights frozen (MSA
trains adapters beside it), backward still needs `act'(lin1(x))`, so autograd keeps `lin1(x)`: four stream
widths per block per image (ViT-B at 1024 px: 48 MiB per block, 576 MiB per image), the largest activation
an MSA block keeps. `lin2` keeps nothing (its weight is frozen, so its input is not needed).

`frozen_mlp_forward` runs `act(lin1(x))` under non-reentrant activation checkpointing instead: it keeps `x`
(the block's second layer-norm output, which the parallel MLP adapter keeps anyway) and recomputes
`lin1(x)` in the backward pass: one `C x 4C` product per block, about 8% of a ViT-B training step's
arithmetic. Outputs and gradients are unchanged. Whole-block checkpointing
(`activation_checkpointing_enable`) is a separate, larger trade and nests with this.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


def _hidden_layer(mlp: nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
    return mlp.act(mlp.lin1(hidden_states))


def frozen_mlp_forward(mlp: nn.Module, hidden_states: torch.Tensor, recompute: bool) -> torch.Tensor:
    """`mlp(hidden_states)` for a SAM `SamMLPBlock` (`lin1`, `act`, `lin2`).

    With `recompute`, when gradients are being recorded, the MLP is frozen and its input needs a gradient,
    the hidden layer is recomputed in the backward pass instead of kept (see the module docstring);
    otherwise this is exactly `mlp(hidden_states)`.

    Shapes: `(..., C) -> (..., C)`.
    """
    if (
        recompute
        and torch.is_grad_enabled()
        and hidden_states.requires_grad
        and not any(parameter.requires_grad for parameter in mlp.parameters())
    ):
        return mlp.lin2(checkpoint(_hidden_layer, mlp, hidden_states, use_reentrant=False))
    return mlp(hidden_states)


class RecomputesFrozenMlp:
    """Mixin of the MSA encoder blocks (native and PEFT) whose forward passes `recompute_frozen_mlp` to
    `frozen_mlp_forward`; `set_frozen_mlp_recompute` finds them by this class. On by default."""

    recompute_frozen_mlp: bool = True


def set_frozen_mlp_recompute(model: nn.Module, enabled: bool) -> int:
    """Switch the frozen-MLP recomputation of every MSA encoder block in `model` (a `SamAdapterModel` or a
    PEFT model with the `msa` method) on or off; it is on by default. Returns how many blocks were set."""
    blocks = [module for module in model.modules() if isinstance(module, RecomputesFrozenMlp)]
    for block in blocks:
        block.recompute_frozen_mlp = enabled
    return len(blocks)


__all__ = ["RecomputesFrozenMlp", "frozen_mlp_forward", "set_frozen_mlp_recompute"]

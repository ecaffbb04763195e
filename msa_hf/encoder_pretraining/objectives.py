# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The self-supervised objectives of the paper's encoder pretraining (section 2.3), on SAM's image encoder.

SAM's ViT attends in windows over the full token grid, so tokens cannot be dropped as in the original MAE:
masked patches are replaced by a learned mask token (as SimMIM does) and the grid stays whole. Token edits
happen between the patch embedding and the position embedding, so a moved or masked patch keeps the
position of the place it now occupies.

- `MaskedPatchReconstruction` (mae): reconstruct the per-patch normalised pixels of the masked patches from
  the encoder's output with a light (linear) decoder.
- `EmbeddingMixup` (e-Mix, DABS): mix two images of the batch with weight lambda; the mixed image's pooled
  embedding must be similar to the two originals in proportion (soft-target InfoNCE).
- `ShuffledEmbeddingDetection` (ShED, DABS): move a fraction of patch embeddings to other chosen positions
  (a cyclic shift among them, so every chosen position changes) and classify, per position, which moved.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

TokenEdit = Callable[[torch.Tensor], torch.Tensor]


def encode_tokens(
    encoder: nn.Module, pixel_values: torch.Tensor, edit: TokenEdit | None = None
) -> torch.Tensor:
    """SAM's image encoder with `edit` applied to the patch embeddings `(B, h, w, C)` before the position
    embedding: `(B, 3, S, S) -> (B, C_out, h, w)`. With `edit=None` it equals `encoder(pixel_values)`."""
    tokens = encoder.patch_embed(pixel_values)
    if edit is not None:
        tokens = edit(tokens)
    if encoder.pos_embed is not None:
        tokens = tokens + encoder.pos_embed
    for layer in encoder.layers:
        out = layer(tokens)
        tokens = out[0] if isinstance(out, tuple) else out
    return encoder.neck(tokens)


def random_token_choice(
    batch: int, grid: tuple[int, int], fraction: float, generator: torch.Generator, minimum: int = 1
) -> torch.Tensor:
    """`(B, h, w)` bool with exactly `round(fraction * h * w)` (at least `minimum`) positions chosen per image."""
    count = max(minimum, round(fraction * grid[0] * grid[1]))
    scores = torch.rand(batch, grid[0] * grid[1], generator=generator)
    chosen = torch.zeros_like(scores, dtype=torch.bool)
    chosen.scatter_(1, scores.argsort(dim=1)[:, :count], True)
    return chosen.view(batch, *grid)


def patch_targets(pixel_values: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Per-patch normalised pixels (MAE's target): `(B, 3, S, S) -> (B, h, w, p*p*3)`, zero mean, unit variance."""
    batch, channels, height, width = pixel_values.shape
    patches = pixel_values.reshape(
        batch, channels, height // patch_size, patch_size, width // patch_size, patch_size
    )
    patches = patches.permute(0, 2, 4, 3, 5, 1).reshape(batch, height // patch_size, width // patch_size, -1)
    mean, variance = patches.mean(-1, keepdim=True), patches.var(-1, keepdim=True)
    return (patches - mean) / (variance + 1e-6).sqrt()


class MaskedPatchReconstruction(nn.Module):
    """mae: mask `mask_ratio` of the patch tokens, reconstruct their normalised pixels."""

    def __init__(self, hidden_size: int, output_channels: int, patch_size: int, mask_ratio: float) -> None:
        super().__init__()
        self.mask_ratio, self.patch_size = mask_ratio, patch_size
        self.mask_token = nn.Parameter(torch.randn(hidden_size) * 0.02)
        self.decoder = nn.Linear(output_channels, patch_size * patch_size * 3)

    def forward(
        self, encoder: nn.Module, pixel_values: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        batch, _, height, width = pixel_values.shape
        grid = (height // self.patch_size, width // self.patch_size)
        masked = random_token_choice(batch, grid, self.mask_ratio, generator).to(pixel_values.device)
        features = encode_tokens(
            encoder, pixel_values, lambda tokens: torch.where(masked[..., None], self.mask_token, tokens)
        )
        prediction = self.decoder(features.permute(0, 2, 3, 1))
        error = (prediction - patch_targets(pixel_values, self.patch_size)) ** 2
        return error.mean(-1)[masked].mean()


class EmbeddingMixup(nn.Module):
    """e-Mix: a mixed image's embedding is pulled toward its two sources in proportion to their weights."""

    def __init__(self, output_channels: int, projection_dim: int, temperature: float) -> None:
        super().__init__()
        self.temperature = temperature
        self.head = nn.Sequential(
            nn.Linear(output_channels, output_channels), nn.ReLU(), nn.Linear(output_channels, projection_dim)
        )

    def embed(self, encoder: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(encode_tokens(encoder, pixel_values).mean(dim=(2, 3))), dim=-1)

    def forward(
        self, encoder: nn.Module, pixel_values: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        batch = len(pixel_values)
        weights = torch.rand(batch, generator=generator).to(pixel_values.device)
        partner = torch.randperm(batch, generator=generator).to(pixel_values.device)
        mixed = (
            weights.view(-1, 1, 1, 1) * pixel_values + (1 - weights.view(-1, 1, 1, 1)) * pixel_values[partner]
        )
        logits = self.embed(encoder, mixed) @ self.embed(encoder, pixel_values).T / self.temperature
        targets = weights[:, None] * F.one_hot(torch.arange(batch, device=logits.device), batch)
        targets = targets + (1 - weights[:, None]) * F.one_hot(partner, batch)
        return -(targets * logits.log_softmax(dim=-1)).sum(-1).mean()


class ShuffledEmbeddingDetection(nn.Module):
    """ShED: move `shuffle_fraction` of the patch embeddings among themselves; detect which positions moved."""

    def __init__(self, output_channels: int, patch_size: int, shuffle_fraction: float) -> None:
        super().__init__()
        self.patch_size, self.shuffle_fraction = patch_size, shuffle_fraction
        self.head = nn.Linear(output_channels, 1)

    @staticmethod
    def shuffle(tokens: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        """`tokens` `(B, h, w, C)` with the chosen positions' embeddings cyclically shifted among themselves."""
        batch, height, width, channels = tokens.shape
        flat = tokens.reshape(batch, height * width, channels)
        positions = chosen.reshape(batch, -1).nonzero()[:, 1].view(batch, -1)  # the same count in every image
        sources = positions.roll(1, dims=1)
        moved = flat.gather(1, sources[..., None].expand(-1, -1, channels))
        return flat.scatter(1, positions[..., None].expand(-1, -1, channels), moved).view_as(tokens)

    def forward(
        self, encoder: nn.Module, pixel_values: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        batch, _, height, width = pixel_values.shape
        grid = (height // self.patch_size, width // self.patch_size)
        # a shift needs two positions to move anything
        chosen = random_token_choice(batch, grid, self.shuffle_fraction, generator, minimum=2).to(
            pixel_values.device
        )
        features = encode_tokens(encoder, pixel_values, lambda tokens: self.shuffle(tokens, chosen))
        logits = self.head(features.permute(0, 2, 3, 1)).squeeze(-1)
        return F.binary_cross_entropy_with_logits(logits, chosen.float())


def build_objectives(config, vision_config) -> nn.ModuleDict:
    """The objectives named in `config.objectives`, sized for `vision_config` (their heads train with the encoder)."""
    made = {
        "mae": lambda: MaskedPatchReconstruction(
            vision_config.hidden_size,
            vision_config.output_channels,
            vision_config.patch_size,
            config.mask_ratio,
        ),
        "emix": lambda: EmbeddingMixup(
            vision_config.output_channels, config.projection_dim, config.mix_temperature
        ),
        "shed": lambda: ShuffledEmbeddingDetection(
            vision_config.output_channels, vision_config.patch_size, config.shuffle_fraction
        ),
    }
    return nn.ModuleDict({name: made[name]() for name in config.objectives})

# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Free-text prompts (paper section 2.3): a frozen CLIP text encoder embeds a description of the target, and
a trained projection inside `SamAdapterModel` turns it into prompt tokens for the mask decoder, alone or
next to points and boxes.

- `TextEncoder`: texts -> pooled CLIP text features `(B, D)`; CLIP stays frozen unless `trainable=True`.
  `TextEncoder.from_pretrained("openai/clip-vit-base-patch32")` for real use (needs the Hub once); a folder
  holding a `CLIPTextModel` and either CLIP's tokenizer files or `character_tokenizer.json` (the offline
  `CharacterTokenizer`, used by the tests) works too.
- `TextPromptProjection`: `(..., D) -> (..., K, C)` prompt tokens (K = `config.num_text_tokens`).
- `describe`: the shipped description templates, filled per class; user descriptions are added to them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

TEXT_TEMPLATES = (
    "{name}",
    "the {name}",
    "a {modality} image of the {name}",
    "the {name} in this {modality} scan",
    "segment the {name}",
)
MODALITY_WORDS = {"CT": "CT", "MR": "MRI", "MRI": "MRI", "other": "medical"}


def describe(
    names: Sequence[str],
    modality: str = "other",
    templates: Sequence[str] = TEXT_TEMPLATES,
    user: dict[str, Sequence[str]] | None = None,
) -> list[str]:
    """Descriptions of the target made of `names` (several names: one text naming all of them, whose mask is
    their union), one per template, plus the user's own for a single name. Underscores read as spaces."""
    words = [name.replace("_", " ") for name in names]
    joined = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
    modality_word = MODALITY_WORDS.get(modality, MODALITY_WORDS["other"])
    texts = [template.format(name=joined, modality=modality_word) for template in templates]
    if user and len(names) == 1:
        texts += list(user.get(names[0], ()))
    return texts


def random_description(
    names: Sequence[str],
    modality: str,
    rng: Any,
    templates: Sequence[str] = TEXT_TEMPLATES,
    user: dict[str, Sequence[str]] | None = None,
) -> str:
    """One of `describe(...)`'s texts, drawn with the numpy generator `rng`."""
    choices = describe(names, modality, templates, user)
    return choices[int(rng.integers(len(choices)))]


class TextPromptProjection(nn.Module):
    """Pooled text features `(..., D)` -> `(..., K, C)` decoder prompt tokens (a two-layer MLP)."""

    def __init__(self, text_dim: int, hidden_size: int, num_tokens: int) -> None:
        super().__init__()
        self.num_tokens, self.hidden_size = num_tokens, hidden_size
        self.fc1 = nn.Linear(text_dim, hidden_size)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden_size, num_tokens * hidden_size)

    def forward(self, text_embeddings: torch.Tensor) -> torch.Tensor:
        tokens = self.fc2(self.act(self.fc1(text_embeddings)))
        return tokens.view(*text_embeddings.shape[:-1], self.num_tokens, self.hidden_size)


class CharacterTokenizer:
    """A dependency-free tokenizer for offline use and tests: UTF-8 bytes -> ids, with begin/end tokens
    (`eos_token_id` is the last id, as CLIP's pooled output reads the end token)."""

    def __init__(self, vocab_size: int, max_length: int = 32) -> None:
        if vocab_size < 260:
            raise ValueError(
                f"vocab_size {vocab_size}: a CharacterTokenizer needs at least 260 ids (bytes + 4)."
            )
        self.vocab_size, self.max_length = vocab_size, max_length
        self.pad_token_id, self.bos_token_id, self.eos_token_id = 0, vocab_size - 2, vocab_size - 1

    def __call__(self, texts: Sequence[str], **_: Any) -> dict[str, torch.Tensor]:
        rows = [
            [self.bos_token_id, *(b + 1 for b in t.encode()[: self.max_length - 2]), self.eos_token_id]
            for t in texts
        ]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_token_id)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for index, row in enumerate(rows):
            ids[index, : len(row)], mask[index, : len(row)] = torch.tensor(row), 1
        return {"input_ids": ids, "attention_mask": mask}

    def save_pretrained(self, folder: str | Path) -> None:
        (Path(folder) / "character_tokenizer.json").write_text(
            json.dumps({"vocab_size": self.vocab_size, "max_length": self.max_length})
        )


class TextEncoder:
    """Texts -> pooled CLIP text features `(B, D)`."""

    def __init__(self, model: Any, tokenizer: Any, trainable: bool = False) -> None:
        self.model, self.tokenizer, self.trainable = model, tokenizer, trainable
        self._cache: dict[str, torch.Tensor] = {}
        model.requires_grad_(trainable)
        if not trainable:
            model.eval()

    @property
    def dim(self) -> int:
        return self.model.config.hidden_size

    @classmethod
    def from_pretrained(cls, name: str | Path, trainable: bool = False) -> TextEncoder:
        """A `CLIPTextModel` (Hub id or folder) with its tokenizer (CLIP's, or a saved `CharacterTokenizer`)."""
        from transformers import CLIPTextModel, CLIPTokenizer

        try:
            model = CLIPTextModel.from_pretrained(name)
            character = Path(name) / "character_tokenizer.json"
            if character.is_file():
                tokenizer = CharacterTokenizer(**json.loads(character.read_text()))
            else:
                tokenizer = CLIPTokenizer.from_pretrained(name)
        except OSError as error:
            raise OSError(
                f"text encoder {name}: cannot be loaded ({error}). Download it where the Hub is reachable "
                "(hf download openai/clip-vit-base-patch32 --local-dir <folder>) and pass the folder."
            ) from error
        return cls(model, tokenizer, trainable)

    def save_pretrained(self, folder: str | Path) -> None:
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        if isinstance(texts, str) or not texts or any(not t.strip() for t in texts):
            raise ValueError(f"texts must be a non-empty list of non-empty strings; got {texts!r}.")
        inputs = dict(self.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt"))
        device = next(self.model.parameters()).device
        inputs = {
            k: torch.as_tensor(v).to(device)
            for k, v in inputs.items()
            if k in ("input_ids", "attention_mask")
        }
        with torch.set_grad_enabled(self.trainable and torch.is_grad_enabled()):
            return self.model(**inputs).pooler_output

    def cached(self, texts: Sequence[str]) -> torch.Tensor:
        """`(B, D)` features of `texts`; a frozen encoder computes each distinct text once (training draws
        from a few descriptions again and again), a trainable one every time (its features must carry grads)."""
        if self.trainable:
            return self(texts)
        missing = sorted({t for t in texts if t not in self._cache})
        if missing:
            with torch.no_grad():
                self._cache.update(zip(missing, self(missing), strict=True))
        return torch.stack([self._cache[t] for t in texts])

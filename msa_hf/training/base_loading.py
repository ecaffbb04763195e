# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Loading the base a run adapts: the shipped tiny base, a local folder, a Hub id, or an original `.pth`.

Nothing falls back silently: a base that cannot be loaded is an error that says which base was asked
for, why it failed, and how to get it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TINY_BASE_NAME = "tiny"


class BaseLoadError(RuntimeError):
    """The requested base model cannot be loaded; the message says how to get it."""


def hub_id_of_base(spec: str) -> str | None:
    """The Hub repo id a base spec names (`"facebook/sam-vit-base"`), or None for the shipped tiny base, a
    local folder or a `.pth` file: what a published card or adapter config may name without leaking a
    path of the machine it was trained on."""
    if spec == TINY_BASE_NAME or spec.endswith(".pth") or Path(spec).exists():
        return None
    parts = spec.split("/")
    return spec if len(parts) == 2 and all(parts) and not spec.startswith((".", "~")) else None


def is_missing_local_path(spec: str) -> bool:
    """Whether `spec` is written as a local path (`./x`, `/x`, `~/x`, `a/b/c`, a backslash) that does not exist:
    it cannot be a Hub id (`org/name`), so loading it is an error about a missing folder, not a download."""
    written_as_path = spec.startswith((".", "/", "~")) or spec.count("/") > 1 or "\\" in spec
    return written_as_path and not Path(spec).exists()


def resolve_base(spec: str) -> str:
    """`"tiny"` -> the shipped base's folder; anything else unchanged."""
    from msa_hf.base_model.shipped import TINY_BASE

    if spec == TINY_BASE_NAME:
        if not (Path(TINY_BASE) / "model.safetensors").is_file():
            raise BaseLoadError(
                f"base 'tiny': the shipped synthetic-pretrained base is missing from this installation "
                f"({TINY_BASE} has no model.safetensors). msa_hf's package data carries it: reinstall "
                "(`pip install -e .` from a clone, or the wheel). Or pass another base: a local folder (e.g. "
                "runs/base/final after `make base`), a Hub id such as facebook/sam-vit-base (needs the Hub), or "
                "a SAM/MedSAM .pth."
            )
        return TINY_BASE
    return spec


def load_base(spec: str, model_class: Any, role: str = "base", **config_overrides: Any) -> Any:
    """Load `spec` as `model_class` (`SamAdapterModel` or `SamModel`).

    Args:
        spec: "tiny", a folder in `save_pretrained` layout, a Hub id, or an original segment-anything /
            MedSAM `.pth`.
        role: what `spec` is to the caller, as error messages name it ("base" to train on, "model" to run).
        config_overrides: adapter settings for `SamAdapterModel` (e.g. `use_depth_branch=True`).
    Raises:
        BaseLoadError: missing file/folder, unreachable Hub, or an unreadable checkpoint.
    """
    from msa_hf.modeling.modeling_msa import SamAdapterModel

    path = resolve_base(spec)
    if path.endswith(".pth"):
        if not Path(path).is_file():
            raise BaseLoadError(f"{role} {spec}: no such file.")
        from msa_hf.modeling.convert import convert_segment_anything_checkpoint

        adapter_model = convert_segment_anything_checkpoint(path, **config_overrides)
        if model_class is SamAdapterModel:
            return adapter_model
        from transformers import SamModel

        model = SamModel(adapter_model.config.to_sam_config())
        model.load_state_dict(adapter_model.state_dict(), strict=False)
        return model
    local = Path(path)
    if is_missing_local_path(path):
        raise BaseLoadError(f"{role} {spec}: no such folder (a Hub id looks like 'org/name').")
    if local.exists() and not (local / "config.json").is_file():
        raise BaseLoadError(f"{role} {spec}: {local} has no config.json; is it a save_pretrained folder?")
    try:
        return model_class.from_pretrained(path, **config_overrides)
    except Exception as error:
        mismatch = _first_shape_mismatch(local, model_class, config_overrides) if local.exists() else None
        if mismatch is not None:
            raise BaseLoadError(
                f"{role} {spec}: its config.json does not match its weights ({mismatch}); put back the "
                "config.json saved with these weights (save_pretrained writes both)."
            ) from error
        if local.exists():
            # a damaged folder: a truncated safetensors file, a config that is not JSON, weights of another shape
            raise BaseLoadError(
                f"{role} {spec}: {local} cannot be loaded ({type(error).__name__}: {error}). Its files "
                "(model.safetensors, config.json) may be truncated or from another model; save or download it again."
            ) from error
        if not isinstance(error, OSError):
            raise
        hint = "--base tiny" if role == "base" else "the shipped base, tiny"
        raise BaseLoadError(
            f"{role} {spec}: cannot be loaded as a Hub id (is the Hub reachable? HF_HUB_OFFLINE set?): {error}. "
            f"Download it where the Hub is reachable (`hf download <id> --local-dir <folder>`) and pass the "
            f"folder, or use {hint}."
        ) from error


def _first_shape_mismatch(folder: Path, model_class: Any, config_overrides: dict[str, Any]) -> str | None:
    """The first weight whose shape in `folder`'s safetensors differs from the one its config.json builds,
    as "name: weights (a, b), config (c, d)"; None when the shapes agree or cannot be read."""
    import torch
    from safetensors import safe_open

    try:
        config = model_class.config_class.from_pretrained(folder, **config_overrides)
        with torch.device("meta"):
            expected = {name: tuple(t.shape) for name, t in model_class(config).state_dict().items()}
        for file in sorted(folder.glob("*.safetensors")):
            with safe_open(str(file), framework="pt") as weights:
                for name in sorted(weights.keys()):  # noqa: SIM118 (a safetensors handle, not a dict)
                    shape = tuple(weights.get_slice(name).get_shape())
                    if name in expected and expected[name] != shape:
                        return f"{name}: weights {shape}, config {expected[name]}"
    except Exception:  # the folder is damaged in another way: the caller's general message applies
        return None
    return None

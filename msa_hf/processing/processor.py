# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""`MsaProcessor`: how a model's pictures were prepared in training, saved beside its weights.

A model must be served with the intensity mapping it was trained with: a model adapted with the lung
window scores poorly when shown the abdomen window. The processor records that mapping and the model's
frame sizes in the model folder's `processor_config.json` (next to transformers' `SamProcessor` fields,
which plain transformers keeps reading), and every entry point that serves a model (`train.py`'s test
evaluation, `msa-hf evaluate`, `msa-hf predict`, the predictors, the demo Space) loads it from there.

Intensity rule (the same as training): CT through `window` (a preset name or `(low, high)` in HU; unset:
the modality's default, abdomen), MR by its 0.5-99.5 percentiles, 8/16-bit pictures by their range.

A depth-branch model also records the slice spacing of the volumes it was trained on (`slice_spacing`, mm):
its depth attention learned what D consecutive slices look like at that spacing, so volumes at another one
are resampled along the slice axis before it sees them (`msa_hf.inference.slice_spacing`). A model trained
on one channel of multi-channel cases (FLAIR of BraTS's four sequences) records it (`channel`), so inference
reads the same sequence of a new case (`msa_hf.data.channels`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from msa_hf.data.channels import ChannelChoice

logger = logging.getLogger(__name__)

PROCESSOR_FILE = "processor_config.json"
# Our own section inside `processor_config.json`; transformers' `SamProcessor` ignores unknown keys.
MSA_SECTION = "msa_processing"
FORMAT_VERSION = 1

_warned_defaults: set[str] = set()


@dataclass(frozen=True)
class MsaProcessor:
    """Frame sizes and intensity mapping of a model, as used in training.

    Args:
        image_size: side `S` of the square model input (longest side resized to `S`, then padded).
        mask_size: side of the decoder's low-resolution mask logits.
        window: CT window: a preset name (`"abdomen"`, `"lung"`, ...), `(low, high)` in HU, or `None` for the
            modality's default.
        slice_spacing: a depth-branch model's training slice spacing in mm (the median over its training
            cases), or `None` (a 2-D model, or one trained on pictures or by an older msa_hf).
        planes: the planes its training volumes were cut into (`msa_hf.data.planes`), or `None` where unknown
            (pictures, a dataset prepared by an older msa_hf, a base).
        channel: the channel its training cases were read in where they had several (a 4-D file's, or one of
            a case's files by channel: `msa_hf.data.channels`), which inference reads too; `None` otherwise.
        channel_name: that channel's name where the dataset named it ("flair"), which inference matches
            first (`ChannelChoice.pick`).
    """

    image_size: int
    mask_size: int
    window: str | tuple[float, float] | None = None
    slice_spacing: float | None = None
    planes: tuple[str, ...] | None = None
    channel: int | None = None
    channel_name: str | None = None

    def __post_init__(self) -> None:
        from msa_hf.data.transforms import check_ct_window

        if isinstance(self.window, list):  # as read back from JSON
            object.__setattr__(self, "window", tuple(float(v) for v in self.window))
        check_ct_window(self.window)
        if self.slice_spacing is not None:
            spacing = self.slice_spacing
            if (
                isinstance(spacing, bool)
                or not isinstance(spacing, int | float)
                or not 0 < spacing < float("inf")
            ):
                raise ValueError(
                    f"slice_spacing={spacing!r}: give the training volumes' slice spacing in mm (a positive "
                    "number), or None."
                )
            object.__setattr__(self, "slice_spacing", float(spacing))
        if self.planes is not None:
            from msa_hf.data.planes import check_plane

            planes = tuple(sorted(set(self.planes)))
            for plane in planes:
                check_plane(plane)
            object.__setattr__(self, "planes", planes or None)
        if self.channel is not None and (
            isinstance(self.channel, bool) or not isinstance(self.channel, int) or self.channel < 0
        ):
            raise ValueError(f"channel={self.channel!r}: a channel's number (0, 1, ...), or None.")
        if self.channel_name is not None and (self.channel is None or not str(self.channel_name).strip()):
            raise ValueError(
                f"channel_name={self.channel_name!r}: the name of `channel`, which must be given."
            )

    @classmethod
    def for_model(
        cls,
        model: Any,
        window: str | tuple[float, float] | None = None,
        slice_spacing: float | None = None,
        planes: tuple[str, ...] | None = None,
        channel: tuple[int, str | None] | None = None,
    ) -> MsaProcessor:
        """The processor of a model's geometry (`config.vision_config.image_size`, low-res mask = 4 x the
        embedding side) with the given intensity `window`, training `slice_spacing`, `planes` and `channel`
        (its number and name)."""
        vision = model.config.vision_config
        side = vision.image_size
        index, name = channel if channel is not None else (None, None)
        return cls(side, 4 * (side // vision.patch_size), window, slice_spacing, planes, index, name)

    def channel_choice(self) -> ChannelChoice | None:
        """The channel inference reads of a multi-channel input unless told otherwise (`--channel`): the
        training cases' own, or None where they had one."""
        if self.channel is None:
            return None
        from msa_hf.data.channels import ChannelChoice

        return ChannelChoice(self.channel, self.channel_name, origin="the model")

    def to_dict(self) -> dict[str, Any]:
        """The `msa_processing` section of `processor_config.json`."""
        window = list(self.window) if isinstance(self.window, tuple) else self.window
        section: dict[str, Any] = {"format_version": FORMAT_VERSION, "window": window}
        if self.slice_spacing is not None:  # older readers ignore the key: their models had none
            section["slice_spacing"] = self.slice_spacing
        if self.planes is not None:
            section["planes"] = list(self.planes)
        if self.channel is not None:
            section["channel"] = self.channel
            if self.channel_name:
                section["channel_name"] = self.channel_name
        return section

    def save_pretrained(self, folder: str | Path) -> None:
        """Writes `processor_config.json`: transformers' `SamProcessor` fields for this geometry plus our
        `msa_processing` section."""
        from transformers import SamProcessor

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        SamProcessor(image_processor=_sam_image_processor(self.image_size, self.mask_size)).save_pretrained(
            folder
        )
        path = folder / PROCESSOR_FILE
        content = json.loads(path.read_text(encoding="utf-8"))
        content[MSA_SECTION] = self.to_dict()
        path.write_text(json.dumps(content, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    @classmethod
    def from_pretrained(cls, source: str | Path, model: Any = None) -> MsaProcessor:
        """The processor saved with a model: a folder (or `"tiny"`, the shipped base) or a Hub id.

        A folder without our section (saved by an older msa_hf, or a plain SAM) gets today's defaults: the
        geometry of `model` (or of the saved `SamProcessor`) and the modality's default intensity; that is
        said once per folder in the log.
        """
        content = _read_processor_config(source)
        section = (content or {}).get(MSA_SECTION)
        image_processor = (content or {}).get("image_processor", {})
        if model is not None:
            default = cls.for_model(model)
        else:
            default = cls(
                int(image_processor.get("size", {}).get("longest_edge", 1024)),
                int(image_processor.get("mask_size", {}).get("longest_edge", 256)),
            )
        if section is None:
            key = str(source)
            if key not in _warned_defaults:
                _warned_defaults.add(key)
                logger.warning(
                    "%s has no saved intensity settings (%s in %s); using the modality defaults (CT: abdomen "
                    "window, MR: percentiles). Save the model again with this msa_hf to record them.",
                    source,
                    MSA_SECTION,
                    PROCESSOR_FILE,
                )
            return default
        if not isinstance(section, dict) or section.get("format_version", 0) > FORMAT_VERSION:
            raise ValueError(
                f"{source}: {PROCESSOR_FILE} has a {MSA_SECTION} section this msa_hf cannot read "
                f"({section!r}); upgrade msa_hf."
            )
        planes = section.get("planes")
        return cls(
            default.image_size, default.mask_size, section.get("window"), section.get("slice_spacing"),
            tuple(planes) if planes else None, section.get("channel"), section.get("channel_name"),
        )  # fmt: skip


def _sam_image_processor(image_size: int, mask_size: int) -> Any:
    # the PIL image processor: transformers' default one needs torchvision, which msa_hf does not require
    from transformers.models.sam.image_processing_pil_sam import SamImageProcessorPil

    return SamImageProcessorPil(
        size={"longest_edge": image_size},
        pad_size={"height": image_size, "width": image_size},
        mask_size={"longest_edge": mask_size},
        mask_pad_size={"height": mask_size, "width": mask_size},
    )


def _read_processor_config(source: str | Path) -> dict[str, Any] | None:
    """`processor_config.json` of a local folder or a Hub repo, or None where there is none."""
    from msa_hf.training.base_loading import resolve_base

    local = Path(resolve_base(str(source)))
    if local.suffix in (".pth", ".pt"):  # an original segment-anything checkpoint: no processor
        return None
    if local.is_dir():
        path = local / PROCESSOR_FILE
    else:
        try:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(str(local), PROCESSOR_FILE))
        except Exception:  # no such file in the repo, or the Hub unreachable: the defaults apply
            return None
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: not a readable processor config ({error}).") from error

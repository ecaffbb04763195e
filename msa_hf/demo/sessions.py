# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The demo's model sessions: `DemoSession` (the model shared by all visitors, embeddings cached per picture)
and `VolumeSession` (one visitor's volume: slices, prompts per slice, propagation, the NIfTI download)."""

from __future__ import annotations

import shutil
import tempfile
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from msa_hf.data.dicom_stacks import SeveralStacks
from msa_hf.data.volumes import volume_output_suffix, voxel_ml
from msa_hf.demo.prompt_state import describe as describe_prompts
from msa_hf.demo.prompt_state import empty_prompts, has_prompt, to_prompt
from msa_hf.demo.uploads import MAX_SIDE, unpack_dicom_zip, without_server_paths
from msa_hf.evaluation.pictures import draw_prompts, overlay
from msa_hf.hub.task_adapters import task_adapter_names
from msa_hf.inference.image_encoding import encode_pictures, image_to_pixel_values
from msa_hf.inference.placement import Placement
from msa_hf.inference.predictor import SegmentationPredictor

if TYPE_CHECKING:
    from msa_hf.data.channels import ChannelChoice

MAX_VOXELS = 512 * 512 * 1024
# a volume's slice embeddings a visitor's session keeps (the least recently used are encoded again when asked
# for): 256 slices of a ViT-B at 1024 px, every slice of most scans; visitors' sessions live on until an hour
# after they leave, so what each holds is bounded
EMBEDDING_CACHE_BYTES = 1 << 30
# visitors' volumes whose embeddings stay in memory at once (so at most 4 GiB of them for the whole page); the
# least recently used volume's are dropped, and encoded again if its visitor comes back
MAX_WARM_VOLUMES = 4
MULTIMASK_COUNT = 3  # SAM's multimask output
KEPT_DOWNLOADS = 16  # files kept for downloads (probability maps, the API's masks), the oldest removed first


class DemoSession:
    """The model shared by all visitors.

    Embeddings are kept for the last `cache_size` pictures (per modality and adapter), so each click costs
    one decoder pass and visitors do not evict each other's image at every click; `prepare` encodes a picture
    as soon as it is uploaded, so the first click is as fast as the next. Access is serialised, so one
    visitor's adapter choice never leaks into another's result.
    """

    def __init__(
        self,
        model: Any,
        cache_size: int = 8,
        window: Any = None,
        slice_spacing: float | None = None,
        trained_planes: tuple[str, ...] | None = None,
        device: str | torch.device | Placement | None = None,
        dtype: str | torch.dtype | None = None,
        channel: ChannelChoice | None = None,
    ) -> None:
        self.model = model
        self.window = window  # the CT window the model was trained with (its MsaProcessor's)
        # a depth-branch model's training slice spacing (its MsaProcessor's): volumes are resampled to it
        self.slice_spacing = slice_spacing
        self.trained_planes = trained_planes  # the planes its training volumes were cut into (MsaProcessor's)
        self.channel = channel  # the channel read of a 4-D upload: the one the model was trained on
        # `device` / `dtype`: `resolve_placement`'s (default: a CUDA GPU with a bfloat16 encoder where there is
        # one, else the CPU in float32); volumes are encoded on the same
        self.predictor = SegmentationPredictor(model, window, device=device, dtype=dtype)
        self.adapters = task_adapter_names(model)
        self.cache_size = cache_size
        self._lock = threading.RLock()
        self._embeddings: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._warm_volumes: OrderedDict[int, weakref.ref] = OrderedDict()  # least recently used first
        self._downloads: list[Path] = []  # the demo's own downloads, the oldest removed first
        self._download_folder: Path | None = None
        self._written = 0

    @contextmanager
    def using(self, adapter: str | None) -> Iterator[None]:
        """Hold the model, with task adapter `adapter` active (ignored for a model without several)."""
        with self._lock:
            if adapter and adapter not in self.adapters:
                offered = f"this demo has {self.adapters}" if self.adapters else "this demo serves one model"
                raise ValueError(f"unknown task adapter {adapter!r}; {offered}.")
            if adapter and self.model.active_adapter != adapter:
                self.model.set_adapter(adapter)
            yield

    def _embedding(self, image: np.ndarray, modality: str, adapter: str | None) -> torch.Tensor:
        """`(1, C, h, w)` for `image`, from the cache or encoded now (call under `using(adapter)`)."""
        key = (image.shape, str(image.dtype), hash(image.tobytes()), modality, adapter)
        if key in self._embeddings:
            self._embeddings.move_to_end(key)
        else:
            pixel_values = image_to_pixel_values(image, self.predictor.image_size, modality, self.window)
            self._embeddings[key] = encode_pictures(
                self.model, pixel_values[None], placement=self.predictor.placement
            )
            while len(self._embeddings) > self.cache_size:
                self._embeddings.popitem(last=False)
        return self._embeddings[key]

    @staticmethod
    def _check_image(image: np.ndarray) -> np.ndarray:
        image = np.asarray(image)
        if image.ndim not in (2, 3) or max(image.shape[:2]) > MAX_SIDE:
            raise ValueError(
                f"image of shape {image.shape}: expected a 2-D picture up to {MAX_SIDE} pixels a side."
            )
        return image

    def prepare(self, image: np.ndarray, modality: str = "other", adapter: str | None = None) -> None:
        """Encode `image` now (on upload), so that the first click only decodes."""
        image = self._check_image(image)
        with self.using(adapter):
            self._embedding(image, modality, adapter)

    def segment(
        self,
        image: np.ndarray,
        points: list[list[float]],
        box: list[float] | None,
        modality: str = "other",
        adapter: str | None = None,
        text: str | None = None,
    ) -> np.ndarray:
        """`image` `(H, W)` or `(H, W, 3)`; `points` `[[x, y, label], ...]` (label 1 or 0); `box` `[x0, y0, x1, y1]`;
        `text` describes the target (models trained with text prompts).

        Returns the mask `(H, W)` uint8 (0/255); callers draw it on the picture they show.
        Raises:
            ValueError: no prompt, a click or box outside the image, an image too large, an unknown adapter.
        """
        return self.segment_masks(image, points, box, modality, adapter, text).mask

    def segment_masks(
        self,
        image: np.ndarray,
        points: list[list[float]],
        box: list[float] | None,
        modality: str = "other",
        adapter: str | None = None,
        text: str | None = None,
        choice: int | None = None,
    ) -> Segmentation:
        """`segment` with what the page shows beside the mask: the chosen mask's probability map and every
        decoded mask's predicted IoU.

        `choice` None follows SAM (three masks for a single click, the best by predicted IoU kept; one mask
        otherwise); 0, 1 or 2 decodes SAM's three masks for any prompt and returns that one (a click is
        ambiguous: the part, the whole, or the object around it).
        Raises:
            ValueError: as `segment`, and a choice other than None, 0, 1, 2.
        """
        multimask = multimask_for(choice)
        image = self._check_image(image)
        text = (text or "").strip() or None
        if not points and not box and not text:
            raise ValueError("add a click on the structure (or draw a box) first.")
        prompt = to_prompt(points, box, text)
        with self.using(adapter):
            self.predictor.set_image_embedding(self._embedding(image, modality, adapter), image.shape[:2])
            prediction = self.predictor.predict_masks(prompt, multimask=multimask)
        return Segmentation.of(prediction, choice)

    def warm(self, volume: VolumeSession) -> None:
        """Mark `volume` as in use: of all visitors' volumes, the `MAX_WARM_VOLUMES` used last keep their slice
        embeddings, an older one's are dropped (encoded again when its visitor returns)."""
        with self._lock:
            self._warm_volumes.pop(id(volume), None)
            self._warm_volumes[id(volume)] = weakref.ref(volume)
            while len(self._warm_volumes) > MAX_WARM_VOLUMES:
                _, oldest = self._warm_volumes.popitem(last=False)
                if (cooled := oldest()) is not None:
                    cooled.predictor.forget_embeddings()

    def _download(self, stem: str, suffix: str) -> Path:
        """A new path `<stem>-<n><suffix>` for a download in the session's own folder; only the last
        `KEPT_DOWNLOADS` are kept (Gradio serves its own copy of each)."""
        with self._lock:
            if self._download_folder is None:
                self._download_folder = Path(tempfile.mkdtemp(prefix="msa-downloads-"))
            self._written += 1
            path = self._download_folder / f"{stem}-{self._written}{suffix}"
            self._downloads.append(path)
            while len(self._downloads) > KEPT_DOWNLOADS:
                self._downloads.pop(0).unlink(missing_ok=True)
        return path

    def probability_file(self, probabilities: np.ndarray) -> str:
        """`probabilities` `(H, W)` written as a float32 TIFF for the page's download; returns its path
        (`_download`)."""
        from PIL import Image

        path = self._download("probabilities", ".tif")
        Image.fromarray(np.asarray(probabilities, np.float32), mode="F").save(path)
        return str(path)

    def segment_volume(
        self,
        files: list[str],
        index: int,
        points: list[list[float]],
        box: list[float] | None,
        propagate: bool = False,
        adapter: str | None = None,
        stop_score: float = 0.5,
        channel: ChannelChoice | None = None,
    ) -> tuple[str, str]:
        """One request of the `/segment_volume` API: the volume `files` (one NIfTI, NRRD or MetaImage file, or
        the DICOM files of one series) prompted on display slice `index` (as the page shows it) with `points`
        `[[x, y, label], ...]` and `box`, and with `propagate` carried through the volume (stopping where the
        predicted IoU falls below `stop_score`). Returns the mask on the input's grid, in its format (NIfTI for
        DICOM; `_download`), and what was done (the slice's scores, or where propagation went). `channel`: the
        one to read of a multi-channel scan (else the model's; `VolumeSession`). The volume's own temporary
        files are removed.

        Raises:
            ValueError: no prompt, a slice or click outside the volume, or a volume the page refuses.
        """
        if not points and box is None:
            raise ValueError("points and box: neither was sent; send a click or a box on the slice.")
        volume = VolumeSession(files, self, adapter, channel=channel)
        try:
            if not 0 <= index < len(volume.slices):
                raise ValueError(
                    f"slice: {index} is outside the volume's {len(volume.slices)} {volume.plane} slices "
                    f"(0 to {len(volume.slices) - 1})."
                )
            prompts = {**empty_prompts(), "points": points, "box": box}
            volume.set_prompts(index, prompts, adapter)
            done = volume.propagate(index, stop_score) if propagate else volume.describe(index)
            path = self._download("mask", volume_output_suffix(volume.source, label_map=True))
            volume.save(str(path.parent), path.name)
        finally:
            volume.close()
        return str(path), done


def multimask_for(choice: int | None) -> bool | None:
    """The decoder's `multimask` for a mask choice: None (SAM's rule) for the best, True (three masks) for one
    of them. Raises `ValueError` for a choice other than None, 0, 1, 2."""
    if choice is not None and choice not in range(MULTIMASK_COUNT):
        raise ValueError(f"mask choice {choice!r}: SAM decodes masks 0, 1 and 2 (or None for the best).")
    return None if choice is None else True


def mask_choice(which: str | None) -> int | None:
    """The page's mask choice ("best", "1", "2", "3") as `DemoSession.segment_masks`' `choice` (None, 0-2)."""
    if which in (None, "", "best"):
        return None
    if which not in ("1", "2", "3"):
        raise ValueError(f"mask choice {which!r}: pick best, 1, 2 or 3.")
    return int(which) - 1


@dataclass
class Segmentation:
    """The demo's answer to one prompt: `mask` `(H, W)` uint8 0/255 and `probabilities` `(H, W)` float32 of
    the chosen mask, `scores` every decoded mask's predicted IoU (three or one), `chosen` the one shown."""

    mask: np.ndarray
    probabilities: np.ndarray
    scores: list[float]
    chosen: int

    @classmethod
    def of(cls, prediction: Any, choice: int | None) -> Segmentation:
        """Mask `choice` of a `MaskPrediction` decoded with `multimask_for(choice)` (None: its best)."""
        chosen = prediction.best if choice is None else choice
        return cls(
            mask=(prediction.logits_of(chosen) > 0).astype(np.uint8) * 255,
            probabilities=prediction.probabilities_of(chosen),
            scores=[float(v) for v in prediction.scores],
            chosen=chosen,
        )

    def describe(self) -> str:
        """The scores line of the page: which mask is shown and how each scored."""
        if len(self.scores) == 1:
            return f"predicted IoU {self.scores[0]:.3f} (one mask for this prompt)"
        listed = " / ".join(f"{score:.3f}" for score in self.scores)
        return f"mask {self.chosen + 1} of {len(self.scores)} shown; predicted IoU {listed}"


class VolumeSession:
    """A volume file (NIfTI, NRRD, MetaImage) or DICOM series in the demo: slices of one plane, prompts per
    slice, the mask volume of the structure being segmented, propagation through the volume, the structures
    kept before it (`keep_structure`), and downloads on the input's grid (in the file's format; DICOM-SEG or RT
    structure set). A multi-channel file opens the `channel` the visitor chose, else the one the model was
    trained on (`DemoSession.channel`), else raises `SeveralChannels` for the page to offer them."""

    def __init__(
        self,
        files: str | list[str],
        session: DemoSession,
        adapter: str | None = None,
        series: str | None = None,
        plane: str = "auto",
        channel: ChannelChoice | None = None,
    ) -> None:
        from msa_hf.data import guess_modality, load_volume
        from msa_hf.data.channels import SeveralChannels, choose_volume_channel
        from msa_hf.inference.volume_predictor import VolumePredictor
        from msa_hf.inference.volume_slicing import SlicedVolume

        files = [files] if isinstance(files, str) else list(files)
        self.source, self.series = self._gather(files), series
        # the folder the uploaded DICOM files were copied into (`_gather`), removed by `close`
        self.copied = None if self.source in files else self.source
        try:
            # a 4-D upload: the channel the visitor chose, else the one the model was trained on, else the
            # visitor is offered its channels
            how = "choose one on the page (or upload that channel alone, as a 3-D volume)"
            chosen = choose_volume_channel(self.source, channel or session.channel, how)
            self.volume = load_volume(self.source, series=series, channel=chosen[0] if chosen else None)
            self.channel_name = chosen[1] if chosen else None  # what the page says it opened
        except SeveralStacks as several:  # uploaded files of a study: the page offers its stacks
            listing = "; ".join(stack.describe() for stack in several.stacks)
            message = f"the DICOM files hold {len(several.stacks)} image stacks ({listing}); choose one."
            raise SeveralStacks(several.stacks, message) from None  # without the server's folder
        except SeveralChannels as several:  # a multi-channel upload: the page offers its channels
            listing = ", ".join(label for label, _ in several.choices())
            message = f"the file holds {several.count} channels ({listing}); choose the one to open (the API: channel)."
            raise SeveralChannels(message, several.count, several.names) from None
        except (ValueError, OSError) as error:
            raise ValueError(without_server_paths(str(error), [*files, self.source])) from None
        if self.volume.array.size > MAX_VOXELS:
            raise ValueError(
                f"the volume has {self.volume.array.shape} voxels; the demo takes up to {MAX_VOXELS}."
            )
        self.modality = guess_modality(self.volume)
        # cut as predict cuts it: the visitor's plane (auto: as acquired) and slices; what the model sees, at a
        # depth branch's training spacing; and what the page says when it opens (`notes`)
        self.sliced = SlicedVolume.cut(
            self.volume, plane, session.slice_spacing, session.trained_planes, "the volume"
        )
        self.plane, self.slices = self.sliced.plane, self.sliced.slices
        self.masks = np.zeros(self.slices.shape, bool)
        self.propagated = np.zeros(self.slices.shape, bool)  # what propagation filled, which undo restores
        self.prompts: dict[int, dict[str, Any]] = {}
        self.segmentations: dict[int, Segmentation] = {}  # the last answer to each slice's own prompts
        # structures segmented before this one, in order: (name, mask volume on the slices)
        self.kept: list[tuple[str, np.ndarray]] = []
        self.displayed: int | None = None
        self.session, self.adapter = session, adapter
        self.folder = tempfile.mkdtemp(prefix="msa-mask-")
        self.predictor = VolumePredictor(
            session.model, session.window, device=session.predictor.placement,  # the session's device and dtype
            max_cached_bytes=EMBEDDING_CACHE_BYTES,
        )  # fmt: skip
        self.predictor.set_volume(self.sliced.model_slices, self.modality)

    @staticmethod
    def _gather(files: list[str]) -> str:
        """One volume file (NIfTI, NRRD, MetaImage) as is; DICOM files (a series, a study), or zips of them (a
        PACS export), copied into one folder, as `load_volume` reads it (`uploads.unpack_dicom_zip`)."""
        from msa_hf.data import is_dicom_file
        from msa_hf.data.dicom_zips import is_zip, no_dicom_message
        from msa_hf.data.volumes import ONE_FILE_VOLUME_SUFFIXES

        if len(files) == 1 and str(files[0]).lower().endswith(ONE_FILE_VOLUME_SUFFIXES):
            return files[0]
        names = [Path(f).name for f in files]
        if files and all(is_dicom_file(f) or is_zip(f) for f in files):
            folder = Path(tempfile.mkdtemp(prefix="msa-series-"))
            copied = 0
            try:
                for file in files:
                    if is_zip(file):
                        copied += unpack_dicom_zip(file, folder, copied)
                    else:
                        shutil.copy(file, folder / f"{copied:05d}.dcm")
                        copied += 1
                if not copied:
                    raise ValueError(no_dicom_message(", ".join(names)))
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            return str(folder)
        raise ValueError(
            f"{names}: upload one volume file (NIfTI .nii or .nii.gz, NRRD .nrrd, MetaImage .mha), all the DICOM "
            "files (.dcm) of one series, or a .zip of them."
        )

    def prepare(self, index: int) -> None:
        """Encode slice `index`'s window now, so that its first click only decodes."""
        self.session.warm(self)
        with self.session.using(self.adapter):
            self.predictor.embedding(self.sliced.model_slice(index))

    def prompts_of(self, index: int) -> dict[str, Any]:
        return self.prompts.get(index, empty_prompts())

    def show(self, index: int) -> np.ndarray:
        """Slice `index` with its mask and prompts drawn, `(H, W, 3)` uint8 (remembered as the one on screen)."""
        self.displayed = index
        prompts = self.prompts_of(index)
        kept = np.zeros(self.slices.shape[1:], bool)
        for _, masks in self.kept:
            kept |= masks[index]
        # the structure being segmented filled, those kept outlined
        target = kept if kept.any() else None
        picture = overlay(self.slices[index], self.masks[index], target, margin=None, scale=1)
        return np.asarray(draw_prompts(picture, prompts["points"], prompts["box"], prompts["corner"]))

    def set_prompts(
        self, index: int, prompts: dict[str, Any], adapter: str | None = None, choice: int | None = None
    ) -> np.ndarray:
        """Store slice `index`'s prompts, segment it when they are complete; returns the new view. `choice`
        as `DemoSession.segment_masks`' (None: SAM's best; 0, 1, 2: one of its three masks)."""
        self.session.warm(self)
        multimask = multimask_for(choice)
        self.prompts[index] = prompts
        self.segmentations.pop(index, None)
        if has_prompt(prompts):
            if adapter and adapter != self.adapter:  # the encoder adapters change: re-encode
                self.adapter = adapter
                self.predictor.set_volume(self.sliced.model_slices, self.modality)
            with self.session.using(self.adapter):
                prediction = self.predictor.predict_masks(
                    self.sliced.model_slice(index),
                    to_prompt(prompts["points"], prompts["box"]),
                    multimask=multimask,
                )
            self.segmentations[index] = Segmentation.of(prediction, choice)
            self.masks[index] = self.segmentations[index].mask > 0
        else:  # the visitor's own prompts are gone: the slice shows what propagation gave it, if anything
            self.masks[index] = self.propagated[index]
        return self.show(index)

    def describe(self, index: int) -> str:
        """The status line of slice `index`: its prompts and, when it was segmented from them, the scores."""
        line = f"slice {index}: {describe_prompts(self.prompts_of(index))}"
        if index in self.segmentations:
            line += f"; {self.segmentations[index].describe()}"
        return line

    def propagate(
        self, index: int, stop_score: float = 0.5, slice_range: tuple[int, int] | None = None
    ) -> str:
        """Carry slice `index`'s mask through the volume (within `slice_range`, stopping where the IoU head
        scores a slice below `stop_score` or a mask leaks); every other slice the visitor prompted inside the
        range is a seed too, so a correction on any slice re-propagates from it. Returns a summary that says
        where and why each walk stopped."""
        if not self.masks[index].any():
            raise ValueError("segment the structure on this slice first (click or box), then propagate.")
        low, high = slice_range if slice_range is not None else (0, len(self.slices) - 1)
        seeds = {
            position: self.masks[position]
            for position in range(len(self.slices))
            if low <= position <= high
            and has_prompt(self.prompts_of(position))
            and self.masks[position].any()
        }
        seeds[index] = self.masks[index]
        # slices the visitor prompted whose mask came out empty: corrected to "not here", never refilled
        empty = [
            position
            for position in range(len(self.slices))
            if position not in seeds
            and has_prompt(self.prompts_of(position))
            and not self.masks[position].any()
        ]
        self.session.warm(self)
        with self.session.using(self.adapter):
            propagated, stops = self._propagate(seeds, index, stop_score, (low, high), empty)
        # a new propagation replaces the previous one; slices the visitor prompted keep their own masks
        self.propagated = propagated.copy()
        for position in seeds:
            self.propagated[position] = False  # the seeds are the visitor's own
        for position in range(len(self.slices)):
            if not has_prompt(self.prompts_of(position)):
                self.masks[position] = self.propagated[position]
        filled = np.flatnonzero(propagated.any(axis=(1, 2)))
        origin = f"slice {index}" if len(seeds) == 1 else f"slices {', '.join(str(i) for i in sorted(seeds))}"
        if self.sliced.resampling is not None:
            stops += f" (on the model's grid: {self.sliced.resampling.describe()})"
        voxels = int(propagated.sum())
        millilitres = round(voxels * voxel_ml(self.volume.affine), 4)  # the structure's volume
        return (
            f"propagated from {origin} to slices {filled.min()}-{filled.max()} "
            f"({voxels} voxels, {millilitres:g} mL); {stops}"
        )

    def _propagate(
        self,
        seeds: dict[int, np.ndarray],
        index: int,
        stop_score: float,
        slice_range: tuple[int, int],
        empty: list[int],
    ) -> tuple[np.ndarray, str]:
        """`propagate_seeds` on the model's grid; returns the masks `(N, H, W)` on the volume's slices (the
        seeds' included) and where the walks stopped. Resampled, each seed is decoded on its model slice (where
        two share one, the slice asked to propagate wins) and the walks come back through
        `SliceResampling.propagation_to_input`, within the range and off the slices marked empty."""
        resampling = self.sliced.resampling
        if resampling is None:
            result = self.predictor.propagate_seeds(
                seeds, stop_score=stop_score, slice_range=slice_range, empty_slices=empty
            )
            return result.masks, result.describe_stops()
        to_model = self.sliced.model_slice
        # the slice asked to propagate comes last: where two seeds share a model slice, the later wins
        order = [*(position for position in seeds if position != index), index]
        model_seeds = {to_model(position): seeds[position] for position in order}
        model_empty = sorted({to_model(position) for position in empty} - set(model_seeds))
        low, high = slice_range
        result = self.predictor.propagate_seeds(
            model_seeds, stop_score=stop_score, slice_range=(to_model(low), to_model(high)),
            empty_slices=model_empty, keep_probabilities=True,
        )  # fmt: skip
        maps = {}  # each seed's own answer's map (a mask where it has none)
        for position in order:
            answer = self.segmentations.get(position)
            maps[position] = (seeds[position] if answer is None else answer.probabilities, seeds[position])
        masks, _ = resampling.propagation_to_input(result.probabilities, maps)
        masks[:low], masks[high + 1 :] = False, False
        masks[empty] = False
        return masks, result.describe_stops()

    def keep_structure(self, name: str = "") -> str:
        """Keep the structure segmented so far, called `name` (default "structure <k>"), and start the next:
        prompts, masks and propagation start afresh; the kept structure stays in the downloads (label k) and is
        outlined on the slices. Returns what the page says. Raises `ValueError` where nothing is segmented."""
        if not self.masks.any():
            raise ValueError("nothing is segmented yet: segment a structure, then keep it to start the next.")
        name = name.strip() or f"structure {len(self.kept) + 1}"
        self.kept.append((name, self.masks.copy()))
        self.masks = np.zeros(self.slices.shape, bool)
        self.propagated = np.zeros(self.slices.shape, bool)
        self.prompts, self.segmentations = {}, {}
        listed = ", ".join(
            f"{value} {kept_name!r}" for value, (kept_name, _) in enumerate(self.kept, start=1)
        )
        return f"kept {name!r}; segment the next structure (labels: {listed})"

    def structures(self, name: str = "") -> tuple[dict[int, np.ndarray], dict[int, str]]:
        """Every structure of the session as `{label value: mask volume (N, H, W) on the slices}` and their
        names: the kept ones as 1, 2, ... in order, then the one being segmented (called `name`, default
        "segmented structure"), if anything is."""
        masks = {value: mask for value, (_, mask) in enumerate(self.kept, start=1)}
        names = {value: kept_name for value, (kept_name, _) in enumerate(self.kept, start=1)}
        if self.masks.any():
            current = len(self.kept) + 1
            masks[current], names[current] = self.masks, name.strip() or "segmented structure"
        return masks, names

    def save_dicom(self, kind: str = "seg", folder: str | None = None, name: str = "") -> str:
        """Every structure (`structures`) as the DICOM object `kind` names (`dicom_outputs.DICOM_OUTPUTS`:
        "seg", a DICOM-SEG for a PACS or a viewer; "rtstruct", an RT structure set for a planning system)
        referencing the uploaded series' images, each whole where they overlap, the one being segmented
        called `name` (the segment label or ROI name a viewer lists; default "segmented structure"), in
        `folder` (default: this session's temporary folder). Raises `ValueError` for a volume file upload, nothing
        segmented, or a series whose headers it cannot copy."""
        return str(self._write_dicom(kind, folder, name)[0])

    def _write_dicom(
        self, kind: str, folder: str | None, name: str
    ) -> tuple[Path, dict[int, int], dict[int, np.ndarray]]:
        """`save_dicom`'s file, with `{label value: segment or ROI number}` of what it wrote and the
        structures' masks (`structures`)."""
        from msa_hf.inference.dicom_outputs import DICOM_OUTPUT_NAMES, check_dicom_output, write_dicom_output

        written_as = DICOM_OUTPUT_NAMES[check_dicom_output(kind)]
        if not Path(self.source).is_dir():
            raise ValueError(
                f"{written_as} references the images of a DICOM series; this volume was opened from a "
                "volume file: download the mask file."
            )
        masks, names = self.structures(name)
        if not masks:
            raise ValueError("nothing is segmented yet: click a structure first.")
        output = Path(folder or self.folder) / f"msa_mask_{kind}.dcm"  # replaced whole at each request
        whole = {value: self.sliced.to_volume(mask) for value, mask in masks.items()}
        try:
            numbers = write_dicom_output(
                kind, self.source, whole, self.volume.affine, output, names, self.series
            )
        except ValueError as error:
            raise ValueError(without_server_paths(str(error), [self.source])) from None
        return output, numbers, masks

    def save_volume_report(self, folder: str | None = None, name: str = "") -> tuple[str, str]:
        """Every structure as a DICOM-SEG of the uploaded series (`save_dicom`) and each one's volume as a DICOM
        measurement report (SR) referencing that segmentation's segments (`volume_report.write_volume_report`),
        both in `folder` (default: this session's temporary folder; replaced at each request, the report always
        beside the segmentation it references). Returns both paths. Raises `ValueError` as `save_dicom`."""
        from msa_hf.data.volumes import voxel_ml
        from msa_hf.inference.predictor import structure_volumes
        from msa_hf.inference.volume_report import write_volume_report

        segmentation, numbers, masks = self._write_dicom("seg", folder, name)
        volumes = structure_volumes(masks, masks, voxel_ml(self.volume.affine))
        report = Path(folder or self.folder) / "msa_volumes.dcm"
        try:
            write_volume_report(
                segmentation,
                self.source,
                {numbers[value]: ml for value, ml in volumes.items() if value in numbers},
                report,
                series=self.series,
            )
        except ValueError as error:
            raise ValueError(without_server_paths(str(error), [self.source])) from None
        return str(segmentation), str(report)

    def save_structure_files(self, folder: str | None = None, name: str = "") -> str:
        """Every structure (`structures`) as one binary mask file on the input's grid (in its format, as
        `save`), each whole where they overlap (`structure_files.write_structure_folder`, named `<name>.nii.gz`
        or `.nrrd`, `.mha`; the one being segmented called `name`, default "segmented structure"), zipped as `msa_structures.zip` in `folder` (default: this
        session's temporary folder; replaced at each request). Raises `ValueError` where nothing is segmented."""
        from msa_hf.inference.predictor import save_structure_files_on_input_grid

        masks, names = self.structures(name)
        if not masks:
            raise ValueError("nothing is segmented yet: click a structure first.")
        folder_path = Path(folder or self.folder)
        staged = folder_path / "msa_structures"
        save_structure_files_on_input_grid(
            staged, masks.items(), names, masks, self.sliced, self.volume.affine, self.source
        )
        archive = shutil.make_archive(str(folder_path / "msa_structures"), "zip", staged)
        shutil.rmtree(staged, ignore_errors=True)
        return archive

    def close(self) -> None:
        """Free what this volume holds: its slice embeddings, and its temporary files (its downloads' folder, the
        copy of uploaded DICOM files). Called when the visitor opens another volume or their session ends."""
        self.predictor.forget_embeddings()
        shutil.rmtree(self.folder, ignore_errors=True)
        if self.copied is not None:
            shutil.rmtree(self.copied, ignore_errors=True)

    def save(self, folder: str | None = None, name: str | None = None) -> str:
        """Every structure (`structures`) as one label map on the input's grid (its affine and voxel order;
        label k the k-th, later over earlier where they overlap) in the input's format (`volume_output_suffix`:
        NIfTI for NIfTI and DICOM, NRRD as a 3D Slicer segmentation whose segments bear the structures' names,
        MetaImage), `name` (default `msa_mask` and that suffix) in `folder` (default: this session's own
        temporary folder, overwritten at each change)."""
        folder = folder or self.folder
        name = name or f"msa_mask{volume_output_suffix(self.source, label_map=True)}"
        from msa_hf.inference.predictor import paint_mask, save_on_input_grid

        labels = np.zeros(self.slices.shape, np.uint8 if len(self.kept) < 255 else np.uint16)
        structures, names = self.structures()
        for value, mask in structures.items():
            paint_mask(labels, mask, value)
        output = str(Path(folder) / name)
        # NRRD: a 3D Slicer segmentation, its segments named (and coded) as the kept structures are named
        save_on_input_grid(
            self.sliced.to_volume(labels), self.volume.affine, Path(self.source), Path(output), names
        )
        return output

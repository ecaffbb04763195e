# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Which channel of a multi-channel case is read: one of a 4-D NIfTI's volumes (the Decathlon's BraTS keeps
FLAIR, T1w, T1gd and T2w in one file), or one of a case's image files (BraTS 2021's `_flair`, `_t1`, `_t1ce`,
`_t2`; nnU-Net's `case_0000`, `case_0001`).

MSA reads one channel. `msa-hf prepare --channel` picks it for training, by number or by the name the files
or the dataset's `dataset.json` give it; the trained model records it (`MsaProcessor.channel`), so `msa-hf
predict` reads the same sequence of a new case, by name where both sides name their channels (BraTS 2023
numbers its sequences in another order than 2021), else by number.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from msa_hf.data.sources import CaseFiles

# the files that name a 4-D dataset's channels: the Decathlon's and nnU-Net's
CHANNEL_TABLE_NAME = "dataset.json"


class SeveralChannels(ValueError):
    """A multi-channel file read without a channel chosen: its `count` channels and their `names` (`{index:
    name}`, empty where nothing names them), for a caller (the demo) to offer the choice."""

    def __init__(self, message: str, count: int, names: Mapping[int, str]) -> None:
        super().__init__(message)
        self.count, self.names = count, dict(names)

    def choices(self) -> list[tuple[str, int]]:
        """`(label, index)` per channel, as a chooser lists them ("0 = FLAIR", or "0" unnamed)."""
        return [
            (f"{index} = {self.names[index]}" if index in self.names else str(index), index)
            for index in range(self.count)
        ]


@dataclass(frozen=True)
class ChannelChoice:
    """The channel to read: by `name` where the case names its channels and a name is given, else by `index`.

    Attributes:
        index: the channel's number (from 0), or None where only a name was given.
        name: the channel's name ("flair"), compared case-insensitively, or None.
        origin: who chose it, for messages: "--channel" or "the model".
    """

    index: int | None = None
    name: str | None = None
    origin: str = "--channel"

    def __post_init__(self) -> None:
        if self.index is None and not self.name:
            raise ValueError("a channel choice needs a number or a name.")
        if self.index is not None and (isinstance(self.index, bool) or self.index < 0):
            raise ValueError(f"channel {self.index!r}: channels count from 0.")

    @classmethod
    def parse(cls, text: str | int) -> ChannelChoice:
        """`--channel`'s value: a number (`2`) or a channel's name (`flair`)."""
        text = str(text).strip()
        if text.lstrip("-").isdigit():
            return cls(index=int(text))
        if not text:
            raise ValueError("--channel: give a channel's number (0, 1, ...) or its name (flair, t1, ...).")
        return cls(name=text)

    def describe(self) -> str:
        """`0 (flair)`, `0` or `flair`."""
        if self.index is not None and self.name:
            return f"{self.index} ({self.name})"
        return str(self.index) if self.index is not None else str(self.name)

    def pick(self, names: Mapping[int, str], count: int, source: str) -> int:
        """The channel to read of `source`, which has `count` channels named `names` (`{index: name}`, empty
        where nothing names them).

        Raises:
            ValueError: a name the case does not have (or a case that names none, for a name alone), or a
                number beyond its channels; the message lists the case's channels.
        """
        if self.name and names:
            matches = [index for index, name in names.items() if name.lower() == self.name.lower()]
            if matches:
                return matches[0]
            if self.origin == "--channel" or self.index is None:
                raise ValueError(
                    f"{source}: no channel named {self.name!r} ({self.origin}); its channels are "
                    f"{channel_listing(names, count)}. Give one of them, by number or by name."
                )
            raise ValueError(
                f"{source}: the model was trained on channel {self.describe()}, and this case has no channel of "
                f"that name (its channels: {channel_listing(names, count)}); give the one that holds the same "
                "sequence with --channel."
            )
        if self.index is None:
            raise ValueError(
                f"{source}: channel {self.name!r} ({self.origin}), but nothing names this case's {count} channels "
                f"(no {CHANNEL_TABLE_NAME} beside it, no sequence in its file names); give its number, 0 to "
                f"{count - 1}."
            )
        if not 0 <= self.index < count and self.origin == "--channel":
            raise ValueError(
                f"{source}: channel {self.index} (--channel) does not exist; its channels are "
                f"{channel_listing(names, count)}."
            )
        if not 0 <= self.index < count:
            raise ValueError(
                f"{source}: the model was trained on channel {self.describe()}, which this case of {count} "
                f"channels ({channel_listing(names, count)}) does not have; give the one to read with --channel."
            )
        return self.index


def channel_listing(names: Mapping[int, str], count: int) -> str:
    """A case's channels as messages list them: `0 = flair, 1 = t1, ...` where they are named, else `0 to 3`."""
    if names:
        return ", ".join(
            f"{index} = {names[index]}" if index in names else str(index) for index in range(count)
        )
    return f"0 to {count - 1}"


def dataset_channel_names(path: str | Path) -> dict[int, str]:
    """`{index: name}` of a 4-D image's channels from the `dataset.json` of its dataset (beside it, or one
    folder up as the Decathlon and nnU-Net keep `imagesTr/` and `imagesTs/`): the Decathlon's `modality`
    (`{"0": "FLAIR", ...}`) or nnU-Net v2's `channel_names`. Empty where there is none or it names none."""
    path = Path(path)
    for folder in (path.parent, path.parent.parent):
        table = folder / CHANNEL_TABLE_NAME
        if not table.is_file():
            continue
        try:
            content = json.loads(table.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        named = content.get("channel_names") or content.get("modality") if isinstance(content, dict) else None
        if not isinstance(named, dict):
            return {}
        return {
            int(key): str(value).strip()
            for key, value in named.items()
            if str(key).isdigit() and isinstance(value, str) and value.strip()
        }
    return {}


def volume_channel_count(path: str | Path) -> int:
    """How many channels a volume file (NIfTI, NRRD, MetaImage) holds, from its header (1 for a 3-D volume
    and for anything else, a DICOM folder or file included, which the readers judge themselves)."""
    from msa_hf.data.volumes import VolumeReadError, is_volume_file, volume_file_header

    if not is_volume_file(path) or not Path(path).is_file():
        return 1
    try:
        shape = volume_file_header(path)[1]
    except VolumeReadError:  # unreadable: its reader says why
        return 1
    return int(shape[3]) if len(shape) == 4 else 1


def case_channel_names(case: CaseFiles) -> dict[int, str]:
    """`{index: name}` of a case's image files by channel: the sequences their names give (BraTS), else the
    dataset's `dataset.json` (nnU-Net's `channel_names`); empty where nothing names them."""
    return dict(case.channel_names) or dataset_channel_names(case.image)


def choose_channel_file(case: CaseFiles, choice: ChannelChoice | None) -> tuple[Path, int, str | None]:
    """The image file to read of a case with one file per channel (`case.channels`), its channel and that
    channel's name: `choice`, or the first channel where there is none.

    Raises:
        ValueError: a channel the case has no file for (`ChannelChoice.pick`)."""
    names = case_channel_names(case)
    count = max(case.channels) + 1
    index = (choice or ChannelChoice(index=0)).pick(
        names, count, f"{case.image.parent} (case {case.case_id})"
    )
    if index not in case.channels:
        raise ValueError(
            f"{case.image.parent}: case {case.case_id} has image files for channels "
            f"{', '.join(str(k) for k in sorted(case.channels))}, not for channel {index}."
        )
    return case.channels[index], index, names.get(index)


def choose_volume_channel(
    path: str | Path,
    choice: ChannelChoice | None,
    how: str = "give it with --channel (a number, or a name where the dataset names them)",
) -> tuple[int, str | None] | None:
    """The channel to read of a 4-D volume file and its name (`dataset_channel_names`), or None for a file of
    one channel (a 3-D volume; not a volume file).

    Raises:
        SeveralChannels: a 4-D file and no `choice` (the message lists its channels and says `how` to give one).
        ValueError: a channel it does not have."""
    count = volume_channel_count(path)
    if count == 1:
        return None
    names = dataset_channel_names(path)
    if choice is None:
        raise SeveralChannels(
            f"{path}: a 4-D image of {count} channels ({channel_listing(names, count)}) or time points; MSA "
            f"reads one: {how}.",
            count,
            names,
        )
    index = choice.pick(names, count, str(path))
    return index, names.get(index)

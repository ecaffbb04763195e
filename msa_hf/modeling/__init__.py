# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The model: `SamAdapterConfig`, `SamAdapterModel` and the layers they are made of.

`configuration_msa` / `modeling_msa` follow transformers' layout; `adapter_layers` holds the adapter math
shared with the peft method; `folded_attention` and `frozen_mlp` are the encoder's attention and memory
operations; `volume_batches` is the one rule for 3-D batches (flatten, D); `resolution` runs weights at another input size; `convert` reads original SAM checkpoints.
"""

from msa_hf._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "SamAdapterConfig": "configuration_msa",
        "SamAdapterModel": "modeling_msa",
        "TrainableParameterReport": "modeling_msa",
        "is_adapter_parameter": "modeling_msa",
        "build_at_image_size": "resolution",
        "set_frozen_mlp_recompute": "frozen_mlp",
        "fold_relative_position_attention": "folded_attention",
        "convert_segment_anything_checkpoint": "convert",
        "flatten_volume_pixels": "volume_batches",
        "flatten_volume_batch": "volume_batches",
        "unflatten_slices": "volume_batches",
    },
)

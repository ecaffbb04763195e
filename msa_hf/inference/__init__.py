# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Label-free inference: `SegmentationPredictor` (encode once, decode per prompt), `VolumePredictor` and
3-D propagation, `msa-hf predict` (`predict_file`), and the fast per-click decoder."""

from msa_hf._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Prompt": "predictor",
        "read_prompts": "predictor",
        "SegmentationPredictor": "predictor",
        "predict_file": "predictor",
        "check_prediction_request": "predictor",
        "MASK_IMAGE_SUFFIXES": "predictor",
        "prompts_in_display_frame": "prompt_frames",
        "VoxelToDisplay": "prompt_frames",
        "voxel_frame": "prompt_frames",
        "VolumePredictor": "volume_predictor",
        "Propagation": "volume_predictor",
        "ClickDecoder": "click_decoder",
        "FallbackClickDecoder": "click_decoder",
        "click_decoder_for": "click_decoder",
        "supports_click_decoder": "click_decoder",
        "encode_slices": "image_encoding",
        "encode_pictures": "image_encoding",
        "image_to_pixel_values": "image_encoding",
    },
)

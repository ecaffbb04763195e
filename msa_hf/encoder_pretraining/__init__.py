# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Self-supervised pretraining of SAM's image encoder on unlabelled medical images (paper section 2.3):
MAE-style masked patch reconstruction, e-Mix and ShED (DABS), alone or weighted together, training MSA's
encoder adapters (default) or the whole encoder. `accelerate launch pretrain.py` / `msa-hf pretrain-encoder`.
"""

from msa_hf.encoder_pretraining.config import OBJECTIVES, EncoderPretrainingConfig
from msa_hf.encoder_pretraining.images import StreamedImages, UnlabelledImages
from msa_hf.encoder_pretraining.objectives import (
    EmbeddingMixup,
    MaskedPatchReconstruction,
    ShuffledEmbeddingDetection,
    build_objectives,
    encode_tokens,
    random_token_choice,
)
from msa_hf.encoder_pretraining.trainer import mark_trainable, pretrain_encoder

__all__ = [
    "OBJECTIVES",
    "EmbeddingMixup",
    "EncoderPretrainingConfig",
    "MaskedPatchReconstruction",
    "ShuffledEmbeddingDetection",
    "StreamedImages",
    "UnlabelledImages",
    "build_objectives",
    "encode_tokens",
    "mark_trainable",
    "pretrain_encoder",
    "random_token_choice",
]

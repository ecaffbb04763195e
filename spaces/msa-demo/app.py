# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The demo Space: msa_hf's Gradio page (`msa_hf.demo.app`) serving the model this folder names.

`MSA_MODEL` (a Hub id or folder) picks the model, else `msa_model.txt` beside this file, else msa_hf's shipped
small base; `MSA_ADAPTERS` or `adapters.json` beside this file offer task adapters on one base. `MSA_DEVICE`
and `MSA_DTYPE` (a Space's variables) set where the model runs: by default a GPU in bfloat16 where the Space
has one, else the CPU in float32 (`MSA_DTYPE=bfloat16` encodes a ViT-B or larger about twice as fast on a
CPU with Intel AMX). On ZeroGPU hardware the images are encoded on the GPU it lends per call and the clicks
decoded on the CPU.
"""

from pathlib import Path

from msa_hf.demo.app import serve

if __name__ == "__main__":
    serve(Path(__file__).resolve().parent)

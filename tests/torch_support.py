# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""What the installed torch can do, for the tests that need more than the oldest torch we support."""

import pytest

from msa_hf.inference.placement import COMPILE_NEEDS_TORCH, torch_compiles_sam

# on an older torch the package refuses --compile instead (tests/test_placement.py checks the refusal)
needs_compiling_torch = pytest.mark.skipif(
    not torch_compiles_sam(),
    reason=f"torch.compile of the SAM image encoder needs torch {COMPILE_NEEDS_TORCH} or newer",
)

# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Saving an Accelerate training state of a SAM model without a false alarm on every save.

`SamModel` holds one positional-embedding tensor under two names (`shared_image_embedding` and the prompt
encoder's `shared_embedding`). Accelerate's safetensors writer stores it once and warns, on every save,
"Removed shared tensor {...shared_embedding.positional_embedding} while saving. This should be OK, but
check ...". The model re-ties the two names itself when it is built, and resuming is tested to reproduce
the uninterrupted run's weights exactly, so that notice tells the user nothing. Any other removal still
warns.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

# accelerate's notice, when every name it removed is SAM's tied positional embedding (any prefix: peft wraps)
_TIED_EMBEDDING_NOTICE = re.compile(
    r"Removed shared tensor \{'[\w.]*shared_embedding\.positional_embedding'"
    r"(, '[\w.]*shared_embedding\.positional_embedding')*\} while saving"
)


class _DropTiedEmbeddingNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _TIED_EMBEDDING_NOTICE.search(record.getMessage())


def save_training_state(accelerator: Any, folder: str | Path) -> None:
    """`accelerator.save_state(folder)` without accelerate's notice about SAM's tied positional embedding
    (see the module docstring); other notices pass."""
    logger = logging.getLogger("accelerate.utils.other")
    notice_filter = _DropTiedEmbeddingNotice()
    logger.addFilter(notice_filter)
    try:
        accelerator.save_state(str(folder))
    finally:
        logger.removeFilter(notice_filter)


__all__ = ["save_training_state"]

# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Adapt a SAM base to a prepared medical dataset: `accelerate launch train.py [--config run.yaml] [--flags]`.

See `python train.py --help` and the README ("Training"). The same job is `msa-hf train`.
"""

from msa_hf.training.job import main

if __name__ == "__main__":
    raise SystemExit(main())

# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""Self-supervised encoder pretraining before prompt training: `accelerate launch pretrain.py SOURCE OUTPUT`.

See `python pretrain.py --help` and the README ("Encoder pretraining"). The same job is `msa-hf pretrain-encoder`.
"""

from msa_hf.encoder_pretraining.command import main

if __name__ == "__main__":
    raise SystemExit(main())

# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""`python -m msa_hf.cli`: the `msa-hf` command."""

from msa_hf.cli import main

raise SystemExit(main())

# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The speed and memory suite behind `make bench` (`python -m benchmarks.run`); see benchmarks/README.md."""

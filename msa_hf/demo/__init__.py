# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""The Gradio demo: its page (`app`: layout and events, `msa-hf demo`, example images) and what the page runs
on: prompt state, opened files and the model sessions. All of it is in the package, so it is tested and
shipped with msa_hf; a Space's `app.py` only launches `app.serve`."""

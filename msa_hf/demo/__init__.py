# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""What the Gradio demo Space runs, apart from its page: prompt state, opened files, and the model sessions.
Kept in the package (not in the Space's `app.py`) so it is tested and shipped with msa_hf; the Space's
`app.py` only lays out the page and wires its events to these."""

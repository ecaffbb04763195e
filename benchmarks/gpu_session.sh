#!/usr/bin/env bash
# The GPU run as one prepared command for a lent machine (the device tool's `run`), or any CUDA box:
#
#     bash benchmarks/gpu_session.sh            # results and the log under $OUT (device tool) or build/gpu-bench
#     DEVICE=cpu EXTRA=--tiny bash benchmarks/gpu_session.sh   # a dry run of the same steps here, in seconds
#
# Uses the machine's own python3 (torch, transformers, peft are there); this repository on PYTHONPATH, nothing
# installed. The suite rewrites its tables after every case and lists failed or timed-out cases with why, so
# a run cut short or hit by one out-of-memory case keeps what it finished. Dry-run here against the device
# image's transformers 5.17 too: DEVICE=cpu EXTRA=--tiny PYTHON=<a venv with transformers==5.17.*>/bin/python
# Copy cuda.{csv,md}, cuda-recipes.{csv,md}, batch-inference.md and end-to-end.md into benchmarks/results/ and
# commit them.
set -uo pipefail
device=${DEVICE:-cuda}
extra=${EXTRA:-}
out=${OUT:-build/gpu-bench}
# sized for a 15-minute lease with one ~540 s command: seconds per case, and for the suite and the recipes as a
# whole (no case starts after its step's budget; the rest are listed as not run)
case_timeout=${CASE_TIMEOUT:-90}
suite_budget=${SUITE_BUDGET:-200}
recipes_budget=${RECIPES_BUDGET:-60}
end_to_end_timeout=${END_TO_END_TIMEOUT:-120}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1
python=${PYTHON:-python3}
log="$out/gpu-session.log"

"$python" - <<'PY' 2>&1 | tee "$log"
import peft, torch, transformers
print("torch", torch.__version__, "transformers", transformers.__version__, "peft", peft.__version__)
print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else "")
PY
# first whether the training paths compute the right thing on this device (seconds; the suite runs either way)
"$python" -m benchmarks.device_checks --device "$device" 2>&1 | tee -a "$log"
checks=${PIPESTATUS[0]}
# the suite (1024 px, bf16 autocast, images/s and MFU), then the recipe's memory at batches 1, 2 and 8;
# per-case timeouts and the budgets keep one stuck case or a slow machine from eating the lease; the plain
# rows the targets need (encoder MFU, MSA images/s) come first, the compiled ones last
"$python" -m benchmarks.run --device "$device" $extra --timeout "$case_timeout" --time-budget "$suite_budget" \
    --output "$out" 2>&1 | tee -a "$log"
suite=${PIPESTATUS[0]}
"$python" -m benchmarks.run --recipes --device "$device" $extra --timeout "$case_timeout" \
    --time-budget "$recipes_budget" --output "$out" 2>&1 | tee -a "$log"
recipes=${PIPESTATUS[0]}
# the serving entry points on this device (default dtype: bf16 encoder on CUDA): msa-hf predict with the
# shipped base, timed per image by the predictor after a warm-up
"$python" - "$device" <<'PY' 2>&1 | tee -a "$log"
import subprocess, sys, tempfile, time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from msa_hf.inference.loading import load_for_inference
from msa_hf.inference.predictor import Prompt, SegmentationPredictor

device = sys.argv[1]
folder = Path(tempfile.mkdtemp())
picture = np.random.default_rng(0).integers(0, 255, (300, 400)).astype(np.uint8)
picture[80:200, 100:300] = 230
Image.fromarray(picture).save(folder / "scan.png")
command = [sys.executable, "-m", "msa_hf.cli", "predict", "tiny", str(folder / "scan.png"), str(folder / "mask.png"),
           "--box", "100", "80", "299", "199", "--device", device]
print("$", " ".join(command[2:]))
done = subprocess.run(command, capture_output=True, text=True)
print(done.stdout.strip(), done.stderr.strip()[-500:], "exit", done.returncode)
model, processor = load_for_inference("tiny")
predictor = SegmentationPredictor(model, processor.window, device=device)
for _ in range(3):
    predictor.set_image(picture)
sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
sync(); start = time.perf_counter()
for _ in range(20):
    predictor.set_image(picture)
    predictor.predict(Prompt(box=[100, 80, 299, 199]))
sync()
print(f"predictor on {predictor.placement.device} ({predictor.placement.dtype}): "
      f"{(time.perf_counter() - start) / 20 * 1000:.2f} ms per image (encode + one box), tiny base 128 px")
sys.exit(done.returncode)
PY
serving=${PIPESTATUS[0]}
# batch inference end to end (read, encode, decode, write) over a folder of 1024 px pictures: images per second
# with one picture per encoder call and with eight (ViT-B, random weights: the time, not the masks)
"$python" - "$device" "$extra" "$out" <<'PY' 2>&1 | tee -a "$log"
import sys, tempfile, time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.geometry import build_model
from msa_hf.inference.batch import BatchItem, predict_batch
from msa_hf.inference.predictor import Prompt

device, tiny, out = sys.argv[1], "--tiny" in sys.argv[2], Path(sys.argv[3])
geometry, size, count = ("tiny", 128, 16) if tiny else ("ViT-B", 1024, 64)
model = build_model("msa", geometry, size).eval()
folder = Path(tempfile.mkdtemp())
rng = np.random.default_rng(0)
items = []
for index in range(count):
    picture = rng.integers(0, 255, (size, size)).astype(np.uint8)
    Image.fromarray(picture).save(folder / f"case{index}.png")
    items.append(BatchItem(folder / f"case{index}.png", folder / "masks" / f"case{index}.png",
                           [Prompt(box=[size // 4, size // 4, size // 2, size // 2])]))
predict_batch(model, items[:8], device=device, batch_size=8, show_progress=False)  # warm-up
lines = ["| model | size | pictures | batch | seconds | images/s |", "|---|---:|---:|---:|---:|---:|"]
for batch_size in (1, 8):
    start = time.perf_counter()
    rows = predict_batch(model, items, device=device, batch_size=batch_size, show_progress=False)
    seconds = time.perf_counter() - start
    assert all(row["status"] == "ok" for row in rows), rows
    lines.append(f"| {geometry} | {size} | {count} | {batch_size} | {seconds:.2f} | {count / seconds:.1f} |")
    print(lines[-1], flush=True)
(out / "batch-inference.md").write_text(
    f"msa-hf predict over a folder ({device}, default dtype), end to end:\n\n" + "\n".join(lines) + "\n"
)
PY
batch=${PIPESTATUS[0]}
# train.py end to end (workers, pinned memory, the whole job's images/s beside the bare step of the suite's
# table) and msa-hf evaluate on the GPU, on a generated 1024 px dataset. train.py needs HF Datasets; a machine
# without it and without the internet installs the wheels in WHEELHOUSE, exactly those (--no-deps): datasets and
# the two packages it needs that such an image lacks, made elsewhere with
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 -d wheels datasets==4.0.0 dill==0.3.8 multiprocess==0.70.16
# (750 KB). Letting pip resolve datasets' dependencies instead fetches 90 MB, with a huggingface_hub 2.x that
# would shadow the machine's own and that transformers 5.17 refuses. Without datasets the step says it did
# not run
if ! "$python" -c "import datasets" 2>/dev/null && [ -n "${WHEELHOUSE:-}" ]; then
    "$python" -m pip install -q --no-index --no-deps --target /tmp/msa-hf-site-packages "$WHEELHOUSE"/*.whl \
        2>&1 | tail -3 | tee -a "$log"
    export PYTHONPATH="$PYTHONPATH:/tmp/msa-hf-site-packages"
fi
timeout "$end_to_end_timeout" "$python" -m benchmarks.end_to_end --device "$device" $extra --output "$out" 2>&1 \
    | tee -a "$log"
end_to_end=${PIPESTATUS[0]}
echo "device checks exit $checks, suite exit $suite, recipes exit $recipes, serving exit $serving, batch exit $batch," \
    "end to end exit $end_to_end" | tee -a "$log"
exit $((checks || suite || recipes || serving || batch || end_to_end))

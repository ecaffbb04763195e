#!/usr/bin/env bash
# The GPU run of issue #7 as one prepared command for a lent machine (the device tool's `run`), or any CUDA box:
#
#     bash benchmarks/gpu_session.sh            # results and the log under $OUT (device tool) or build/gpu-bench
#     DEVICE=cpu EXTRA=--tiny bash benchmarks/gpu_session.sh   # a dry run of the same steps here, in seconds
#
# Uses the machine's own python3 (torch, transformers, peft are there); this repository on PYTHONPATH, nothing
# installed. The suite rewrites its tables after every case and lists failed or timed-out cases with why, so
# a run cut short or hit by one out-of-memory case keeps what it finished. Dry-run here against the device
# image's transformers 5.17 too: DEVICE=cpu EXTRA=--tiny PYTHON=<a venv with transformers==5.17.*>/bin/python
# Copy cuda.{csv,md} and cuda-recipes.{csv,md} into benchmarks/results/ and commit them.
set -uo pipefail
device=${DEVICE:-cuda}
extra=${EXTRA:-}
out=${OUT:-build/gpu-bench}
# sized for a 15-minute lease with one ~540 s command: seconds per case, and for the suite and the recipes as a
# whole (no case starts after its step's budget; the rest are listed as not run)
case_timeout=${CASE_TIMEOUT:-90}
suite_budget=${SUITE_BUDGET:-240}
recipes_budget=${RECIPES_BUDGET:-75}
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
echo "device checks exit $checks, suite exit $suite, recipes exit $recipes" | tee -a "$log"
exit $((checks || suite || recipes))

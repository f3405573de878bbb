#!/usr/bin/env bash
# The GPU check for a machine with an NVIDIA GPU (torch with CUDA, `pip install -e '.[gpu]'`):
# a short real training with a deliberately slow DataLoader, then a healthy one, each with
# `watchrun check --follow --json` beside it. Prints each phase's GPU series (from the sampler's
# JSON lines, $WATCHRUN_SAMPLES_FILE) and the alerts; gpu_starved is expected on the slow phase
# only. About 6 minutes in all (PHASE_SECONDS per phase; gpu_starved judges a 1-minute window
# here through watchrun.toml, 5 minutes by default).
#
# Prints, never asserts. Usage: benchmarks/gpu_check.sh [PHASE_SECONDS]
# GPU_CHECK_DEVICE=cpu PHASES=slow checks the plumbing on a machine without a GPU (no GPU series
# then: the sampler says "no NVIDIA GPU found" once on stderr).
set -euo pipefail
PHASE_SECONDS=${1:-150}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
PHASES=${PHASES:-slow healthy}
PY=${PYTHON:-python3}
WORK=$(mktemp -d -t watchrun-gpucheck-XXXX)
trap 'rm -rf "$WORK"' EXIT
export PYTHONPATH="${PYTHONPATH:-}:$(cd "$(dirname "$0")/.." && pwd)/src"

if [ "$DEVICE" = cuda ]; then
  nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader || {
    echo "no nvidia-smi: this check needs an NVIDIA GPU" >&2; exit 2; }
  $PY -c "import torch, pynvml; assert torch.cuda.is_available(), 'torch sees no CUDA device'"
fi

cat > "$WORK/train.py" <<'EOF'
"""A small CNN on synthetic images. slow: a Dataset that sleeps per sample, num_workers=0
(the GPU waits for data); healthy: batches made on the GPU. Logs metrics.jsonl, held open
for writing (watchrun verifies the writer by it)."""
import json, sys, time
import torch
from torch import nn

mode, out, seconds, device = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
dev = torch.device(device)
torch.backends.cudnn.benchmark = True
model = nn.Sequential(
    nn.Conv2d(3, 128, 3, padding=1), nn.ReLU(), nn.Conv2d(128, 256, 3, padding=1), nn.ReLU(),
    nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    nn.Linear(256, 10),
).to(dev)
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()


class Slow(torch.utils.data.Dataset):
    def __len__(self):
        return 10**6

    def __getitem__(self, i):
        time.sleep(0.01)  # decoding / augmentation on one CPU core
        return torch.randn(3, 64, 64), i % 10


def batches():
    if mode == "slow":
        loader = torch.utils.data.DataLoader(Slow(), batch_size=32, num_workers=0)
        for x, y in loader:
            yield x.to(dev), y.to(dev)
    else:
        while True:
            yield torch.randn(256, 3, 64, 64, device=dev), torch.randint(0, 10, (256,), device=dev)


t0 = time.time()
with open(out, "a", buffering=1) as fh:
    for step, (x, y) in enumerate(batches(), 1):
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 5 == 0:
            row = {"step": step, "loss": loss.item()}
            if step % 50 == 0:
                row["val_loss"] = loss.item() * 1.1
            fh.write(json.dumps(row) + "\n")
        if time.time() - t0 > seconds:
            break
EOF

phase() {
  local mode=$1 dir="$WORK/$1"
  mkdir -p "$dir/run"
  printf '[detectors.gpu_starved]\nminutes = 1.0\n' > "$dir/watchrun.toml"
  : > "$dir/run/metrics.jsonl"
  WATCHRUN_SAMPLES_FILE="$dir/samples.jsonl" $PY -m watchrun.cli check --follow --json --poll 0.5 "$dir" \
    > "$dir/alerts.jsonl" 2> "$dir/check.stderr" &
  local check=$!
  $PY "$WORK/train.py" "$mode" "$dir/run/metrics.jsonl" "$PHASE_SECONDS" "$DEVICE"
  sleep 5
  kill -INT "$check"; wait "$check" || true
  echo "=== $mode: sampled series (run 'run', one sample a second) ==="
  $PY - "$dir/samples.jsonl" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
samples = [r for r in rows if "values" in r]
print(f"{len(samples)} samples, devices {sorted({d for r in samples for d in r['devices']})}")
names = sorted({n for r in samples for n in r["values"]})
for n in names:
    v = [r["values"][n] for r in samples if n in r["values"]]
    print(f"  {n:<16} n={len(v):<4} mean={statistics.fmean(v):9.1f} min={min(v):9.1f} max={max(v):9.1f}"
          f"  last 10: {[round(x) for x in v[-10:]]}")
EOF
  echo "=== $mode: watchrun check --follow --json ==="
  cat "$dir/alerts.jsonl"
  echo "stderr: $(cat "$dir/check.stderr")"
  echo "gpu_starved alerts: $(grep -c '"gpu_starved"' "$dir/alerts.jsonl" || true)"
}

for mode in $PHASES; do phase "$mode"; done

#!/usr/bin/env bash
# Issue 16's device check, one prepared script for a machine with a GPU (the `device` tool's `run`):
#   1. the device-parametrised tests on cuda;  2. the quick preset with --device cuda, Dice per cell vs a CPU
#   run's results.csv (within 0.01);  3. vit_b images/s at 1024 and native 256, batch 8, fp32 / bf16 / compile.
# Usage: bash benchmarks/device_check.sh [CPU_RESULTS_CSV]   (outputs under ${OUT:-device-out})
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-device-out}
mkdir -p "$out"
python -m pip install -q -e ".[test]" ./plugins/* >"$out/install.log" 2>&1 || { echo "install failed"; tail "$out/install.log"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"

echo "== 1. device-parametrised tests on cuda"
python -m pytest -q tests/test_devices.py -k cuda 2>&1 | tail -5 | tee "$out/tests.txt"

echo "== 2. quick preset on cuda"
ADAPTSAM_DATA=${ADAPTSAM_DATA:-../shared/datasets} timeout 420 python -m adaptsam bench --device cuda \
    --out "$out/quick-cuda" --no-progress >"$out/bench.log" 2>&1; echo "bench rc=$?"
if [ -n "${1:-}" ] && [ -f "$out/quick-cuda/results.csv" ]; then
    python - "$1" "$out/quick-cuda/results.csv" <<'EOF' | tee "$out/dice.txt"
import csv, sys
def rows(path):
    with open(path) as handle:
        return {(r["adapter"], r["policy"], r["resolution"], r["seed"]): r for r in csv.DictReader(handle)}
cpu, gpu = rows(sys.argv[1]), rows(sys.argv[2])
worst = 0.0
for key in sorted(set(cpu) & set(gpu)):
    a, b = float(cpu[key]["mean_dice"] or "nan"), float(gpu[key]["mean_dice"] or "nan")
    worst = max(worst, abs(a - b))
    print(f"{'/'.join(key)}: cpu {a:.4f} cuda {b:.4f} ({gpu[key]['images_per_s']} img/s on cuda)")
print(f"largest Dice difference {worst:.4f} (acceptance: <= 0.01)")
EOF
fi

echo "== 3. vit_b speed"
python benchmarks/gpu_speed.py --device cuda --batch 8 --rounds 10 2>&1 | tee "$out/speed.txt"

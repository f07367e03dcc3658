#!/usr/bin/env bash
# The GPU checks of issue 10 in one call, as they were run on a lent H100 (bench/README.md):
#   1. bench_step.py on the paper preset (full VGG16, 224 px, batch 32): fp32 / bf16 autocast,
#      NCHW / channels-last; images/s and peak memory per arm.
#   2. bench_loop.py: does the data path (host vs on-device batches) starve the GPU?
#   3. a smoke study with --gpus-per-trial 0.25 (four trials share the GPU), GPU utilisation sampled.
#   4. the transfer preset (EfficientNet-Lite0, pretrained): step times, one calibration seed per arm.
# Usage: bash bench/device_check.sh [OUTDIR]   (OUTDIR defaults to $OUT, then ./device-out)
# Where the study's packages are missing (the machine has torch only), .devsite/site.tgz holds them
# unpacked for that machine's Python; see bench/README.md, "device_check.sh".
set -uo pipefail
out=${1:-${OUT:-device-out}}; mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if [ -f .devsite/site.tgz ]; then
  mkdir -p /tmp/site && tar xzf .devsite/site.tgz -C /tmp/site && export PYTHONPATH=$PYTHONPATH:/tmp/site
fi
py=${PYTHON:-python3}
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv;
  $py -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'cuda', torch.version.cuda)";
  nproc; } 2>&1 | tee "$out/machine.txt"

echo "== 1. step: paper preset, baseline / GAIN / peer" | tee "$out/step.txt"
for flags in "--no-channels-last" "" "--bf16 --no-channels-last" "--bf16" "--bf16 --set model.frozen_convs=0"; do
  timeout 120 $py bench/bench_step.py --preset paper --device cuda --rounds 10 --block 5 --warmup 3 $flags 2>&1 \
    | tee -a "$out/step.txt"
done

echo "== 2. data path: host vs device batches, 4 threads (a trial of 16 cores / 4)" | tee "$out/loop.txt"
for flags in "" "--bf16"; do
  timeout 120 $py bench/bench_loop.py --preset paper --device cuda --threads 4 --rounds 5 --batches 6 $flags 2>&1 \
    | tee -a "$out/loop.txt"
done

echo "== 3. smoke study, 4 trials on one GPU" | tee "$out/study.txt"
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader,nounits -lms 500 > "$out/util.csv" &
smi=$!
timeout 300 $py -m study.launch --preset paper --trials 8 --seeds 4 --alphas 1 --selection-k 1 --selection-seeds 1 \
  --gpus-per-trial 0.25 --cpus-per-trial 4 --no-dashboard --storage /tmp/gpustudy --name gpusmoke \
  --set train.max_epochs=3 --set train.bf16=true --set train.lr=1e-4 --set data.n_train=400 2>&1 | tee -a "$out/study.txt"
kill $smi
$py - "$out/util.csv" <<'PY' 2>&1 | tee -a "$out/study.txt"
import sys, statistics
rows = [l.split(", ") for l in open(sys.argv[1]) if l.count(",") == 2]
u = [float(r[1]) for r in rows]; m = [float(r[2]) for r in rows]
busy = [x for x in u if x > 0]
print(f"GPU utilisation over {len(u)} samples (0.5 s): median {statistics.median(u):.0f}%, "
      f"mean {statistics.mean(u):.0f}%, median while busy {statistics.median(busy) if busy else 0:.0f}%, "
      f"memory used max {max(m):.0f} MiB")
PY
cp /tmp/gpustudy/gpusmoke/study.json "$out/" 2>/dev/null

echo "== 4. transfer preset (EfficientNet-Lite0, issue 17): step at 96 and 224 px, then one calibration seed per arm" \
  | tee "$out/transfer.txt"
for size in 96 224; do
  timeout 120 $py bench/bench_step.py --preset transfer --device cuda --no-peer --rounds 10 --block 5 --warmup 3 \
    --set data.image_size=$size 2>&1 | tee -a "$out/transfer.txt"
done
timeout 300 $py -m bench.calibrate --preset transfer --seeds 1 --jobs 2 --set train.device=cuda 2>&1 | tee -a "$out/transfer.txt"
tar czf "$out/report.tgz" -C /tmp/gpustudy/gpusmoke report 2>/dev/null
echo done

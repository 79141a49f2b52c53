#!/usr/bin/env bash
# GPU check for the lent device (see the device tool's README): run from the repo root with .whl carried.
# 1) the quickstart (both stages) on the GPU in $PRECISION (bf16 | fp16), 2) unless RUN_TESTS=0, the test suite under
# the device's (floor) versions.
set -u
PRECISION=${PRECISION:-bf16}
source benchmarks/device_env.sh
python3 -c "import torch, timm, transformers, accelerate, datasets, evaluate, pyarrow; print('torch', torch.__version__, 'timm', timm.__version__, 'transformers', transformers.__version__, 'accelerate', accelerate.__version__, 'datasets', datasets.__version__, 'evaluate', evaluate.__version__, 'pyarrow', pyarrow.__version__)" | tee -a "$OUT/device.txt"
( time python3 recipes/quickstart.py --$PRECISION --output_dir /tmp/demo_gpu --dataloader_num_workers 4 ) > "$OUT/demo_gpu.log" 2>&1
tail -12 "$OUT/demo_gpu.log"
cp /tmp/demo_gpu/results.json "$OUT/demo_gpu_results.json" 2>/dev/null
cp /tmp/demo_gpu/student/config.json "$OUT/student_config.json" 2>/dev/null
[ "${RUN_TESTS:-1}" = "0" ] && exit 0
timeout 300 python3 -m pytest -q -x -p no:cacheprovider tests 2>&1 | tail -25 | tee "$OUT/pytest.log"

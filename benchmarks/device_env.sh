# Sourced by the device scripts: puts the carried wheels (.whl/: datasets, evaluate, dill, multiprocess, and pyarrow
# when the image's is older than 24) on PYTHONPATH, sets the offline environment and records the GPU in $OUT.
OUT=${OUT:-/tmp/out}
need_pyarrow=$(python3 -c "import pyarrow; print(int(pyarrow.__version__.split('.')[0]) < 24)" 2>/dev/null || echo True)
wheels=".whl/datasets-*.whl .whl/evaluate-*.whl .whl/dill-*.whl .whl/multiprocess-*.whl"
[ "$need_pyarrow" = "True" ] && wheels="$wheels .whl/pyarrow-*.whl"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site $wheels || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 DIVE_HF_CACHE=/tmp/dcache
nvidia-smi -L | tee "$OUT/device.txt"

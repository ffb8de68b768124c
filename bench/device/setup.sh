#!/usr/bin/env bash
# Device side: unpack what call N carried (bench/device/README.md), into /tmp, which lives while the machine
# stays warm. Source it for the environment:  source bench/device/setup.sh N
#   1: onnxruntime-gpu's CUDA provider -> /tmp/ortgpu        2: the rest of onnxruntime-gpu + wheels -> /tmp/site
#   3: polars' runtime -> /tmp/site                           4: nothing to unpack (the dataset is read in place)
set -e
step=${1:?usage: source bench/device/setup.sh STEP}
mkdir -p /tmp/ortgpu/onnxruntime/capi /tmp/site
case "$step" in
  1) python3 -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" \
       .dev/1/cuda90.so.xz /tmp/ortgpu/onnxruntime/capi/libonnxruntime_providers_cuda.so ;;
  2) tar -xJf .dev/2/ort_rest.tar.xz -C /tmp/ortgpu
     python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .dev/2/wheels/*.whl ;;
  3) tar -xJf .dev/3/polars_runtime.tar.xz -C /tmp/site ;;
  4) test -d .dev/4/kidney ;;
  *) echo "unknown step $step" >&2; return 1 2>/dev/null || exit 1 ;;
esac
# /tmp/ortgpu first: it shadows the image's CPU-only onnxruntime
export PYTHONPATH=/tmp/ortgpu:/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
export YOLO_OFFLINE=1 YOLO_CONFIG_DIR=/tmp/yolo_cfg MPLBACKEND=Agg PYTHONUNBUFFERED=1 FIFTYONE_DO_NOT_TRACK=true
ls -la /tmp/ortgpu/onnxruntime/capi/ 2>/dev/null | grep -c "\.so" | sed 's/^/shared libraries in \/tmp\/ortgpu: /'

#!/usr/bin/env bash
# Build the three carry folders a GPU session needs (see bench/device/README.md), here, with pip's index.
#
#   bash bench/device/pack.sh            # writes .dev/1 ... .dev/4 (ignored by git via .git/info/exclude)
#
# .dev/1  onnxruntime-gpu's CUDA provider with only sm_90 cubins (strip_cubins.py), xz: ~50 MiB
# .dev/2  the rest of the onnxruntime-gpu wheel, xz, and the wheels the device image lacks (ultralytics,
#         albumentations, onnxslim, polars' front end, ...) for Python 3.12: ~30 MiB
# .dev/3  polars' runtime (Ultralytics' trainer imports polars to save a checkpoint), xz: ~33 MiB
# .dev/4  the kidney-stone CT dataset from ../shared: 36 MiB
# Each call may carry 64 MiB with the working tree (~10 MiB), hence four calls.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"
PY=${PY:-.venv/bin/python}
ORT_GPU=${ORT_GPU:-1.31.1}   # CUDA 13 build, matching the device's torch 2.11+cu130
SHARED=${YOLO_FT_SHARED:-$REPO/../shared}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
grep -qxF "/.dev/" .git/info/exclude 2>/dev/null || echo "/.dev/" >> .git/info/exclude
rm -rf .dev && mkdir -p .dev/1 .dev/2/wheels .dev/3 .dev/4

pyver=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
       --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
       --platform manylinux1_x86_64 --platform any)

"$PY" -m pip download -q --no-deps "${pyver[@]}" -d "$TMP" "onnxruntime-gpu==$ORT_GPU"
mkdir "$TMP/ort" && (cd "$TMP/ort" && unzip -q "$TMP"/onnxruntime_gpu-*.whl)
"$PY" bench/device/strip_cubins.py "$TMP/ort/onnxruntime/capi/libonnxruntime_providers_cuda.so" .dev/1/cuda90.so.xz
rm "$TMP/ort/onnxruntime/capi/libonnxruntime_providers_cuda.so" "$TMP/ort/onnxruntime/capi/libonnxruntime_providers_tensorrt.so"
tar -C "$TMP/ort" -cJf .dev/2/ort_rest.tar.xz onnxruntime

# Versions as pinned in pyproject.toml / resolved in .venv; the device image has torch, numpy, opencv, onnx,
# scipy, matplotlib, pillow, pyyaml, psutil, requests, rich, tqdm, typing-extensions.
pins=$("$PY" -m pip freeze | grep -i -E '^(ultralytics|ultralytics-thop|ultralytics-platform|albumentations|albucore|simsimd|stringzilla|pydantic|pydantic_core|annotated-types|typing-inspection|onnxslim|defusedxml|pydicom|polars)==')
"$PY" -m pip download -q --no-deps "${pyver[@]}" -d "$TMP/wheels" $pins
# polars' runtime is a 55 MB wheel: unpacked and xz-compressed it fits beside the rest
"$PY" -m pip download -q --no-deps "${pyver[@]}" -d "$TMP/polars" "polars-runtime-32==$("$PY" -m pip freeze | sed -n 's/^polars-runtime-32==//p')"
mkdir "$TMP/polars/x" && (cd "$TMP/polars/x" && unzip -q ../*.whl)
tar -C "$TMP/polars/x" -cJf .dev/3/polars_runtime.tar.xz .
cp "$TMP"/wheels/*.whl .dev/2/wheels/

cp -r "$SHARED/datasets/kidney-stone-ct-yolo" .dev/4/kidney
du -sh .dev/1 .dev/2 .dev/3 .dev/4

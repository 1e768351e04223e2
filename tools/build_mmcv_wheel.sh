#!/usr/bin/env bash
# Build mmcv (full, with mmcv.ops) as a wheel for the torch of PYTHON, into DEST.
#
#   PYTHON=.venv/bin/python bash tools/build_mmcv_wheel.sh mmcv==2.1.0 DEST
#
# PyPI has no mmcv 2.1.0 wheel for torch >= 2.4, so it is built from the sdist.
# torch >= 2.13 headers require C++20 while mmcv 2.1.0's setup.py asks for
# C++17 (ATen.h: "C++20 or later compatible compiler is required"); this is
# the one-line change of mmcv's open upstream fix. pip's own wheel cache is off:
# it may hand back a wheel built against another torch.
set -euo pipefail
PYTHON=${PYTHON:-python}
spec=$1
dest=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$PYTHON" -m pip download -q --no-deps --no-binary :all: --no-cache-dir "$spec" -d "$work"
tar xzf "$work"/mmcv-*.tar.gz -C "$work"
src=$(find "$work" -maxdepth 1 -type d -name 'mmcv-*')
sed -i 's/-std=c++1[47]/-std=c++20/g' "$src/setup.py"
MMCV_WITH_OPS=1 MAX_JOBS=$(nproc) "$PYTHON" -m pip wheel -q --no-cache-dir --no-build-isolation \
  --no-deps "$src" -w "$dest"

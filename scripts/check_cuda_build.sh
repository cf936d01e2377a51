#!/usr/bin/env bash
# Compile the CUDA op plugins (torch_utils/ops/*.cu, *.cpp) with this machine's nvcc against a
# CUDA build of torch, in a throw-away virtual environment; fails on any compile or link error.
# Works without a GPU: the target architectures come from TORCH_CUDA_ARCH_LIST.
#
#   scripts/check_cuda_build.sh                 # torch 2.14.1, archs "8.0;9.0"
#   TORCH_SPEC=torch==2.4.1 TORCH_CUDA_ARCH_LIST="7.0;8.6" scripts/check_cuda_build.sh
#   KEEP_VENV=1 scripts/check_cuda_build.sh     # keep the venv (its path is printed) for reruns
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
torch_spec=${TORCH_SPEC:-torch==2.14.1}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-8.0;9.0}

nvcc_path=$(command -v nvcc || true)
if [ -z "$nvcc_path" ]; then
    echo "check_cuda_build: nvcc not found on PATH; install the CUDA toolkit or add its bin/ to PATH" >&2
    exit 2
fi
# The toolkit root: nvcc may be a wrapper script outside it (e.g. /usr/local/bin/nvcc), so look
# for the directory that really has include/cuda_runtime.h.
find_cuda_home() {
    local candidate
    for candidate in "$(dirname "$(dirname "$(readlink -f "$nvcc_path")")")" /usr/local/cuda /usr/local/cuda-*; do
        if [ -f "$candidate/include/cuda_runtime.h" ]; then echo "$candidate"; return; fi
    done
}
export CUDA_HOME=${CUDA_HOME:-$(find_cuda_home)}
if [ -z "$CUDA_HOME" ] || [ ! -f "$CUDA_HOME/include/cuda_runtime.h" ]; then
    echo "check_cuda_build: no CUDA toolkit with include/cuda_runtime.h found; set CUDA_HOME" >&2
    exit 2
fi

venv=${VENV_DIR:-$(mktemp -d /tmp/fakeclr-cuda-build.XXXXXX)}
cleanup() {
    if [ -z "${KEEP_VENV:-}" ]; then rm -rf "$venv"; else echo "check_cuda_build: venv kept at $venv"; fi
}
trap cleanup EXIT

echo "check_cuda_build: nvcc $("$nvcc_path" --version | tail -n 1), CUDA_HOME=$CUDA_HOME, archs $TORCH_CUDA_ARCH_LIST"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet "$torch_spec" ninja numpy
"$venv/bin/python" -c 'import torch; print("check_cuda_build: torch", torch.__version__, "CUDA", torch.version.cuda)'

# Build every plugin through the project's own builder (same flags as at run time).
DNNLIB_CACHE_DIR="$venv/cache" PYTHONPATH="$repo" MAX_JOBS=${MAX_JOBS:-2} "$venv/bin/python" - <<'PY'
import sys
from torch_utils import custom_ops

failed = []
for op_name in custom_ops.OP_PLUGINS:
    try:
        module = custom_ops.get_plugin_for_op(op_name, verbosity="full", require_device=False)
        print(f"check_cuda_build: {op_name}: built and imported, exports {sorted(n for n in dir(module) if not n.startswith('_'))}")
    except Exception as error:  # report every plugin, then fail
        print(f"check_cuda_build: {op_name}: FAILED: {error}", file=sys.stderr)
        failed.append(op_name)
sys.exit(1 if failed else 0)
PY
echo "check_cuda_build: all plugins compiled"

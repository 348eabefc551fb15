#!/usr/bin/env bash
# Kernel lab and CUDA op tests (not part of the meson product build).
#   cuda/dev/build_and_run.sh build          compile only (works without a GPU)
#   cuda/dev/build_and_run.sh test           compile, run test_ops_cuda
#   cuda/dev/build_and_run.sh lab [json]     compile, run gemm_lab (table as JSON to [json])
#   cuda/dev/build_and_run.sh all [outdir]   compile, run both, logs and JSON under [outdir]
# ARCH (default 90) picks the GPU target; BUILD (default /tmp/hc-cuda-dev) the object folder.
# cuBLAS is opened by gemm_lab only (dlopen), as the yardstick; never part of the product. Its
# folder is taken from PyTorch's nvidia-cublas wheel when python3 has one.
set -euo pipefail
cd "$(dirname "$0")/../.."
ARCH=${ARCH:-90}
B=${BUILD:-/tmp/hc-cuda-dev}
mode=${1:-all}
mkdir -p "$B"

NVCC="nvcc -std=c++17 -O3 -gencode=arch=compute_${ARCH},code=sm_${ARCH} --expt-relaxed-constexpr -Icore/include -Xcompiler=-fopenmp -DHC_WITH_CUDA=1"
OPS=$(cd cuda/src && ls *.cu | sed "s/\.cu$//")  # every shipped .cu, as cuda/meson.build builds them

build() {
  local pids=()
  for f in core/src/*.cpp; do
    local extra=""
    case "$f" in
      *_avx512.cpp) extra="-mavx512f -mavx512vl -mavx512dq -mfma" ;;
      *_avx2.cpp) extra="-mavx2 -mfma" ;;
    esac
    g++ -std=c++17 -O3 -fopenmp -Icore/include -DHC_VERSION='"dev"' -DHC_WITH_CUDA=1 $extra -c "$f" \
      -o "$B/core_$(basename "$f" .cpp).o" & pids+=($!)
  done
  for op in $OPS; do
    $NVCC -c "cuda/src/$op.cu" -o "$B/cuda_$op.o" & pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  $NVCC cuda/dev/test_ops_cuda.cu "$B"/cuda_*.o "$B"/core_*.o -o "$B/test_ops_cuda" -lgomp
  $NVCC cuda/dev/gemm_lab.cu "$B"/cuda_*.o "$B"/core_*.o -o "$B/gemm_lab" -ldl -lgomp
  echo "built $B/test_ops_cuda $B/gemm_lab"
}

build
cublas_dir=$(python3 -c 'import nvidia.cublas, os; print(os.path.join(list(nvidia.cublas.__path__)[0], "lib"))' 2>/dev/null || true)
[ -n "$cublas_dir" ] && export LD_LIBRARY_PATH="$cublas_dir:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
case "$mode" in
  build) ;;
  test) "$B/test_ops_cuda" ;;
  lab) "$B/gemm_lab" ${2:-} ;;
  all)
    out=${2:-$B}
    mkdir -p "$out"
    rc=0
    "$B/test_ops_cuda" 2>&1 | tee "$out/test_ops_cuda.log" || rc=1
    "$B/gemm_lab" "$out/gemm_lab.json" 2>&1 | tee "$out/gemm_lab.log" || rc=1
    exit $rc ;;
esac

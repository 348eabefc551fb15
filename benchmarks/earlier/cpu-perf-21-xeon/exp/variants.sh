#!/usr/bin/env bash
# Builds time_gemm and time_step for sgemm variants: each variant is a copy of core/src/gemm.cpp
# and gemm_avx512.cpp with one edit, linked with the other objects of a meson build ($B).
# usage: variants.sh BUILD_DIR OUTDIR NAME...   -> OUTDIR/<name>/{time_gemm,time_step}
set -eu
B=$1; O=$2; shift 2; mkdir -p $O
F="-DNDEBUG -std=c++17 -O3 -fPIC -fopenmp -Icore/include -Icore/src"
K512="-mavx512f -mavx512vl -mavx512dq -mfma -mavx2"
others=$(ls $B/core/libhc_core.a.p/*.o | grep -v src_gemm.cpp.o)
kern=$(ls $B/core/libhc_gemm_avx2.a.p/*.o $B/core/libhc_conv_direct_avx512.a.p/*.o $B/core/libhc_maxpool2d_avx512.a.p/*.o)
one() {  # name, sed for gemm.cpp, sed for gemm_avx512.cpp[, gemm_avx512.cpp to start from]
  local d=$O/$1; mkdir -p $d/src
  sed -e "$2" core/src/gemm.cpp > $d/src/gemm.cpp
  sed -e "$3" ${4:-core/src/gemm_avx512.cpp} > $d/src/gemm_avx512.cpp
  cp core/src/gemm_kernels.h core/src/scratch.h $d/src/
  c++ $F -Icore/src -c $d/src/gemm.cpp -o $d/gemm.o
  c++ $F $K512 -c $d/src/gemm_avx512.cpp -o $d/gemm_avx512.o
  c++ $F -c tests/cpp/time_gemm.cpp -o $d/tg.o
  c++ $F -c tests/cpp/time_step.cpp -o $d/ts.o
  c++ -fopenmp $d/tg.o $d/gemm.o $d/gemm_avx512.o $others $kern -o $d/time_gemm
  c++ -fopenmp $d/ts.o $d/gemm.o $d/gemm_avx512.o $others $kern -o $d/time_step
  c++ $F -c tests/cpp/time_layers.cpp -o $d/tl.o
  c++ -fopenmp $d/tl.o $d/gemm.o $d/gemm_avx512.o $others $kern -o $d/time_layers
}
# A team of at most one thread per FPT flops (at least one), instead of all threads from 2 MFLOP.
TEAM='s|if (omp_in_parallel() \|\| 2.0 \* M \* N \* K < kParallelFlops) return 1;|if (omp_in_parallel()) return 1; return (int)std::max<double>(1.0, std::min<double>(omp_get_max_threads(), 2.0 * M * N * K / FPT));|' 
PF='/bv\[v\] = _mm512_maskz_loadu_ps(mask\[v\], b + 16 \* v);/a\
    _mm_prefetch((const char*)(b + DIST * bs), _MM_HINT_T0);\
    if (V == 2) _mm_prefetch((const char*)(b + DIST * bs + 16), _MM_HINT_T0);'
for v in "$@"; do
  case $v in
    base) one base '' '' ;;
    old) one old '' '' .gpu/exp/old_gemm_avx512.cpp ;;  # 47845ba's core/src/gemm_avx512.cpp
    tm) one $v 's/if (threads % t == 0 \&\& cost < best)/if (threads % t == 0 \&\& cost <= best)/' '' ;;
    fpt1) one $v "${TEAM//FPT/1e6}" '' ;;
    fpt2) one $v "${TEAM//FPT/2e6}" '' ;;
    kc384) one $v 's/KC = 256, MC/KC = 384, MC/' '' ;;
    kc512) one $v 's/KC = 256, MC/KC = 512, MC/' '' ;;
    kc192) one $v 's/KC = 256, MC/KC = 192, MC/' '' ;;
    nc1536) one $v 's/NC = 768;/NC = 1536;/' '' ;;
    nc384) one $v 's/NC = 768;/NC = 384;/' '' ;;
    mc256) one $v 's/MC = 1024,/MC = 256,/' '' ;;
    pf8) one $v '' "${PF//DIST/8}" ;;
    pf16) one $v '' "${PF//DIST/16}" ;;
    nopfc) one $v '' '/_mm_prefetch((const char\*)(c + i \* ldc/d' ;;
    pfc1) one $v '' '/_mm_prefetch((const char\*)(c + i \* ldc/s/_MM_HINT_T0/_MM_HINT_T1/' ;;
    # timing only, wrong results: each block packed once (its first time), then reused
    nopack) one $v 's/if (!a_in_place) kr.pack_a/if (!a_in_place \&\& pc == 0 \&\& ic == 0) kr.pack_a/; s/if (!b_in_place) kr.pack_b/if (!b_in_place \&\& pc == 0 \&\& ic == 0 \&\& jc == 0) kr.pack_b/' '' ;;
    *) echo "unknown variant $v"; exit 2 ;;
  esac &
done
wait

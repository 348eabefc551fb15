#!/usr/bin/env bash
# Session 2026-12-07d call A (HEAD 47845ba): sgemm's blocks and a B prefetch on the Xeon host,
# variants against the base at 1/2 and 16 threads with numpy's OpenBLAS in the same rounds; HT
# topology; time_step mlp/convnet per variant; 8 against 16 threads per layer (time_layers).
set -u
T0=$(date +%s)
el() { echo $(( $(date +%s) - T0 )); }
R=$OUT/a; mkdir -p $R
{ lscpu | grep -E "Model name|^CPU\(s\)|Thread|Core|Socket|L1d|L2|L3|NUMA|Flags" | cut -c1-300; lscpu -e=CPU,CORE,SOCKET,NODE,L1d:L1i:L2:L3; python3 -c "import numpy; numpy.show_config()" 2>&1 | grep -iA3 "blas" | head -12; } > $R/lscpu.txt 2>&1
rm -rf /tmp/b && (meson setup /tmp/b -Dcuda=disabled && ninja -C /tmp/b -j16 tests/time_layers tests/time_step) > /tmp/build.log 2>&1 || { tail -20 /tmp/build.log; exit 1; }
bash .gpu/exp/variants.sh /tmp/b /tmp/var > /tmp/var.log 2>&1 || { tail -20 /tmp/var.log; exit 1; }
echo "built $(el) s"
S="NN,256,256,256 NN,512,512,512 NN,1024,1024,1024 NN,2048,2048,2048 NT,256,256,784 TN,256,784,256 NN,256,784,256 NT,64,256,784 TN,256,784,64 NN,64,784,256 NT,256,128,256"
V="base kc384 kc192 nc1536 nc384 pf8 pf16"
for r in 1 2 3; do
  for v in $V; do
    echo "## r$r $v 2t"; OMP_NUM_THREADS=2 /tmp/var/$v/time_gemm 0.1 $S | tail -11
    for n in "mlp 256 200" "mlp 64 400" "convnet 64 10"; do echo "step $n: $(OMP_NUM_THREADS=2 /tmp/var/$v/time_step $n 3 | tail -1)"; done
  done
  echo "## r$r numpy 2t"; OPENBLAS_NUM_THREADS=2 python3 .gpu/exp/np_gemm.py 0.1 $S
  echo "## r$r numpy 1t"; OPENBLAS_NUM_THREADS=1 python3 .gpu/exp/np_gemm.py 0.1 $S
done > $R/t2.txt 2>&1
echo "2t $(el) s"
for r in 1 2; do
  for v in $V; do echo "## r$r $v 16t"; OMP_NUM_THREADS=16 /tmp/var/$v/time_gemm 0.1 $S | tail -11 | awk '{print $1,$2,$3,$4,$5,$6,$8}'; done
  echo "## r$r numpy 16t"; OPENBLAS_NUM_THREADS=16 python3 .gpu/exp/np_gemm.py 0.1 $S
done > $R/t16.txt 2>&1
echo "16t $(el) s"
# Two threads on two cores against two siblings of one core (from lscpu -e), base and numpy.
sib=$(lscpu -p=CPU,CORE | grep -v '^#' | awk -F, '$2==0{print $1}' | paste -sd,)
two=$(lscpu -p=CPU,CORE | grep -v '^#' | awk -F, '!seen[$2]++{print $1}' | head -2 | paste -sd,)
echo "siblings of core 0: $sib; two cores: $two" > $R/pin.txt
for c in "$two" "$sib"; do
  echo "## taskset $c" ; OMP_NUM_THREADS=2 taskset -c $c /tmp/var/base/time_gemm 0.1 $S | tail -11
  echo "step mlp 256: $(OMP_NUM_THREADS=2 taskset -c $c /tmp/var/base/time_step mlp 256 200 3 | tail -1)"
  OPENBLAS_NUM_THREADS=2 taskset -c $c python3 .gpu/exp/np_gemm.py 0.1 $S
done >> $R/pin.txt 2>&1
echo "pin $(el) s"
for r in 1 2; do for t in 8 16; do
  [ $(el) -lt 540 ] && HC_TIME_WALL=1 OMP_NUM_THREADS=$t timeout 60 /tmp/b/tests/time_layers 64 0.05 auto mlp,lenet5,convnet,bnnet > $R/tl-${t}t-r$r.txt 2>&1
done; done
echo "end $(el) s"

"""tests/test_distributed.py's ranks-with-replicas run against one process, per sample count:
the largest relative difference of each weight and momentum after training.
    cd <repo> && [EX="--avgpool"] python benchmarks/earlier/cpu-perf-27-zen3/dp_err.py 37 592 600
(batch 37; 2 ranks, each a DataParallel over two CPU replicas with shares 2:1)."""
import os, subprocess, sys, numpy as np, shutil, tempfile
sys.path.insert(0, "tests")
W="tests/mpi/fit_worker.py"; MPIRUN=shutil.which("mpirun", path=os.path.dirname(sys.executable)+os.pathsep+os.environ["PATH"])
ENV=dict(os.environ, OMP_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
def run(out, ranks, *args):
    cmd=[sys.executable, W, out, *map(str,args)]; env=dict(ENV)
    if ranks==0: env["HC_NO_MPI"]="1"
    else: cmd=[MPIRUN,"-n",str(ranks)]+cmd
    p=subprocess.run(cmd, env=env, capture_output=True, text=True); assert p.returncode==0, p.stderr[-2000:]
    with np.load(out) as f: return {k:f[k] for k in f.files}
def rel(a,b): return float(np.max(np.abs(a-b))/max(np.max(np.abs(b)),1e-30))
d=tempfile.mkdtemp()
EX=os.environ.get("EX","").split()
for s in map(int, sys.argv[1:]):
    one=run(f"{d}/one.npz",0,"--batch",37,"--samples",s,*EX)
    dp=run(f"{d}/dp.npz",2,"--batch",37,"--samples",s,"--dp","cpu,cpu","--shares","2,1",*EX)
    print(s, "steps", -(-s//37), {k: f"{rel(dp[k],one[k]):.1e}" for k in one if k.endswith("weight")})

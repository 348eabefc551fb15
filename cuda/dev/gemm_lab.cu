// GEMM kernel lab: the thesis's four CUDA versions (4.4.1) beside the production kernel of
// cuda/src/gemm.cu, each validated against a double-precision CPU reference on odd sizes, then
// timed (CUDA events, warm-up, median of repeats) at 512..4096 and on CNN shapes, with cuBLAS
// FP32 (TF32 off) as the yardstick. Usage: gemm_lab [table.json]. Row-major C = A (M,K) B (K,N).
// cuBLAS is opened at run time (dlopen of libcublas.so*, e.g. the one PyTorch ships; put its
// folder on LD_LIBRARY_PATH), so the lab builds where no cuBLAS headers are installed.
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "../src/check.h"
#include "../src/gemm_cuda.h"

using namespace hc;

namespace {

constexpr int TILE = 32;

// (a) one thread per output, a single block: each of the 32x32 threads walks a strided share.
__global__ void gemm_a_single_block(int M, int N, int K, const float* A, const float* B, float* C) {
  for (int i = threadIdx.y; i < M; i += blockDim.y)
    for (int j = threadIdx.x; j < N; j += blockDim.x) {
      float s = 0.f;
      for (int k = 0; k < K; ++k) s += A[(int64_t)i * K + k] * B[(int64_t)k * N + j];
      C[(int64_t)i * N + j] = s;
    }
}

// (b) the same single block, staging TILE x TILE pieces of A and B in shared memory.
__global__ void gemm_b_single_block_shared(int M, int N, int K, const float* A, const float* B,
                                           float* C) {
  __shared__ float As[TILE][TILE], Bs[TILE][TILE];
  const int tx = threadIdx.x, ty = threadIdx.y;
  for (int i0 = 0; i0 < M; i0 += TILE)
    for (int j0 = 0; j0 < N; j0 += TILE) {
      float s = 0.f;
      for (int k0 = 0; k0 < K; k0 += TILE) {
        As[ty][tx] = (i0 + ty < M && k0 + tx < K) ? A[(int64_t)(i0 + ty) * K + k0 + tx] : 0.f;
        Bs[ty][tx] = (k0 + ty < K && j0 + tx < N) ? B[(int64_t)(k0 + ty) * N + j0 + tx] : 0.f;
        __syncthreads();
        for (int k = 0; k < TILE; ++k) s += As[ty][k] * Bs[k][tx];
        __syncthreads();
      }
      if (i0 + ty < M && j0 + tx < N) C[(int64_t)(i0 + ty) * N + j0 + tx] = s;
    }
}

// (c) a tiled grid: one thread per output, many blocks, operands straight from global memory.
__global__ void gemm_c_grid_global(int M, int N, int K, const float* A, const float* B, float* C) {
  const int i = blockIdx.y * blockDim.y + threadIdx.y, j = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= M || j >= N) return;
  float s = 0.f;
  for (int k = 0; k < K; ++k) s += A[(int64_t)i * K + k] * B[(int64_t)k * N + j];
  C[(int64_t)i * N + j] = s;
}

// (d) the tiled grid with TILE x TILE shared-memory tiles.
__global__ void gemm_d_grid_shared(int M, int N, int K, const float* A, const float* B, float* C) {
  __shared__ float As[TILE][TILE], Bs[TILE][TILE + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int i = blockIdx.y * TILE + ty, j = blockIdx.x * TILE + tx;
  float s = 0.f;
  for (int k0 = 0; k0 < K; k0 += TILE) {
    As[ty][tx] = (i < M && k0 + tx < K) ? A[(int64_t)i * K + k0 + tx] : 0.f;
    Bs[ty][tx] = (k0 + ty < K && j < N) ? B[(int64_t)(k0 + ty) * N + j] : 0.f;
    __syncthreads();
#pragma unroll
    for (int k = 0; k < TILE; ++k) s += As[ty][k] * Bs[k][tx];
    __syncthreads();
  }
  if (i < M && j < N) C[(int64_t)i * N + j] = s;
}

// The four cuBLAS entry points the lab uses (default math mode: FP32, no TF32).
using cublasHandle_t = void*;
struct Cublas {
  int (*create)(cublasHandle_t*) = nullptr;
  int (*destroy)(cublasHandle_t) = nullptr;
  int (*sgemm)(cublasHandle_t, int, int, int, int, int, const float*, const float*, int,
               const float*, int, const float*, float*, int) = nullptr;
  cublasHandle_t handle = nullptr;
};
Cublas cublas_lib;
constexpr int CUBLAS_OP_N = 0;

bool cublas_open() {
  for (const char* name : {"libcublas.so", "libcublas.so.13", "libcublas.so.12"}) {
    void* h = dlopen(name, RTLD_NOW | RTLD_GLOBAL);
    if (!h) continue;
    cublas_lib.create = reinterpret_cast<decltype(cublas_lib.create)>(dlsym(h, "cublasCreate_v2"));
    cublas_lib.destroy = reinterpret_cast<decltype(cublas_lib.destroy)>(dlsym(h, "cublasDestroy_v2"));
    cublas_lib.sgemm = reinterpret_cast<decltype(cublas_lib.sgemm)>(dlsym(h, "cublasSgemm_v2"));
    if (cublas_lib.create && cublas_lib.sgemm && cublas_lib.create(&cublas_lib.handle) == 0) {
      std::printf("cuBLAS: %s\n", name);
      return true;
    }
  }
  std::printf("cuBLAS not found (set LD_LIBRARY_PATH): no %%cuBLAS column\n");
  return false;
}

void cublas_check(int s, const char* what) {
  if (s != 0) fail(ErrorKind::Device, std::string(what) + ": cuBLAS status " + std::to_string(s));
}

struct Version {
  std::string name;
  int max_size;  // largest size it is timed at (the single-block versions are slow)
  // Enqueue C = A*B (row-major NN, M,N,K) on stream 0.
  std::function<void(int, int, int, const float*, const float*, float*)> run;
};

std::vector<Version> versions() {
  const dim3 blk(TILE, TILE);
  return {
      {"a_single_block", 1024,
       [=](int M, int N, int K, const float* A, const float* B, float* C) {
         gemm_a_single_block<<<1, blk>>>(M, N, K, A, B, C);
         HC_CUDA_CHECK_LAUNCH("gemm_a_single_block");
       }},
      {"b_single_block_shared", 1024,
       [=](int M, int N, int K, const float* A, const float* B, float* C) {
         gemm_b_single_block_shared<<<1, blk>>>(M, N, K, A, B, C);
         HC_CUDA_CHECK_LAUNCH("gemm_b_single_block_shared");
       }},
      {"c_grid_global", 1 << 30,
       [=](int M, int N, int K, const float* A, const float* B, float* C) {
         const dim3 b(16, 16), g((N + 15) / 16, (M + 15) / 16);
         gemm_c_grid_global<<<g, b>>>(M, N, K, A, B, C);
         HC_CUDA_CHECK_LAUNCH("gemm_c_grid_global");
       }},
      {"d_grid_shared_tiles", 1 << 30,
       [=](int M, int N, int K, const float* A, const float* B, float* C) {
         const dim3 g((N + TILE - 1) / TILE, (M + TILE - 1) / TILE);
         gemm_d_grid_shared<<<g, blk>>>(M, N, K, A, B, C);
         HC_CUDA_CHECK_LAUNCH("gemm_d_grid_shared");
       }},
      {"production", 1 << 30,
       [=](int M, int N, int K, const float* A, const float* B, float* C) {
         sgemm_cuda(Trans::N, Trans::N, M, N, K, 1.f, A, K, B, N, 0.f, C, N, 0);
       }},
      {"cublas_fp32", 1 << 30,
       [=](int M, int N, int K, const float* A, const float* B, float* C) {
         const float one = 1.f, zero = 0.f;
         cublas_check(cublas_lib.sgemm(cublas_lib.handle, CUBLAS_OP_N, CUBLAS_OP_N, N, M, K, &one,
                                       B, N, A, K, &zero, C, N),
                      "cublasSgemm");
       }},
  };
}

std::mt19937 rng(7);

std::vector<float> randv(size_t n) {
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

struct DevBuf {
  float* p = nullptr;
  explicit DevBuf(size_t n) {
    HC_CUDA_CHECK_BYTES(cudaMalloc(&p, n * sizeof(float)), n * sizeof(float));
  }
  DevBuf(const std::vector<float>& h) : DevBuf(h.size()) {
    HC_CUDA_CHECK(cudaMemcpy(p, h.data(), h.size() * 4, cudaMemcpyHostToDevice));
  }
  ~DevBuf() { cudaFree(p); }
};

// op(X)[r][c] for a row-major (rows, cols) op with stored layout depending on t.
double ref_rel_err(Trans ta, Trans tb, int M, int N, int K, const std::vector<float>& A,
                   const std::vector<float>& B, const std::vector<float>& C) {
  double num = 0, den = 0;
#pragma omp parallel for reduction(+ : num, den) schedule(static)
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      double s = 0;
      for (int k = 0; k < K; ++k) {
        const double a = ta == Trans::N ? A[(int64_t)i * K + k] : A[(int64_t)k * M + i];
        const double b = tb == Trans::N ? B[(int64_t)k * N + j] : B[(int64_t)j * K + k];
        s += a * b;
      }
      const double d = C[(int64_t)i * N + j] - s;
      num += d * d;
      den += s * s;
    }
  if (std::isnan(num)) return NAN;
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

float median_ms(const std::function<void()>& fn) {
  cudaEvent_t a, b;
  HC_CUDA_CHECK(cudaEventCreate(&a));
  HC_CUDA_CHECK(cudaEventCreate(&b));
  fn();  // warm-up
  HC_CUDA_CHECK(cudaEventRecord(a));
  fn();
  HC_CUDA_CHECK(cudaEventRecord(b));
  HC_CUDA_CHECK(cudaEventSynchronize(b));
  float first = 0;
  HC_CUDA_CHECK(cudaEventElapsedTime(&first, a, b));
  const int reps = std::max(3, std::min(50, int(300.f / std::max(first, 1e-3f))));
  std::vector<float> t;
  for (int r = 0; r < reps; ++r) {
    HC_CUDA_CHECK(cudaEventRecord(a));
    fn();
    HC_CUDA_CHECK(cudaEventRecord(b));
    HC_CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    HC_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms);
  }
  std::sort(t.begin(), t.end());
  HC_CUDA_CHECK(cudaEventDestroy(a));
  HC_CUDA_CHECK(cudaEventDestroy(b));
  return t[t.size() / 2];
}

struct Row {
  std::string version;
  int M, N, K;
  double ms, gflops, pct;
};

}  // namespace

int main(int argc, char** argv) {
  try {
    cudaDeviceProp prop;
    HC_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    std::printf("device: %s (sm_%d%d, %d SMs)\n", prop.name, prop.major, prop.minor,
                prop.multiProcessorCount);
    const bool have_cublas = cublas_open();
    auto vs = versions();
    if (!have_cublas) vs.pop_back();

    // ---- validation against a double-precision CPU reference
    int bad = 0;
    const int vsz[][3] = {{1, 1, 1}, {17, 33, 65}, {127, 129, 257}, {1000, 1001, 999}};
    for (auto& s : vsz) {
      const int M = s[0], N = s[1], K = s[2];
      auto A = randv((size_t)M * K), B = randv((size_t)K * N);
      DevBuf dA(A), dB(B), dC((size_t)M * N);
      std::vector<float> C((size_t)M * N);
      for (auto& v : vs) {
        HC_CUDA_CHECK(cudaMemset(dC.p, 0xFF, C.size() * 4));  // NaN: unwritten outputs fail
        v.run(M, N, K, dA.p, dB.p, dC.p);
        HC_CUDA_CHECK(cudaDeviceSynchronize());
        HC_CUDA_CHECK(cudaMemcpy(C.data(), dC.p, C.size() * 4, cudaMemcpyDeviceToHost));
        const double e = ref_rel_err(Trans::N, Trans::N, M, N, K, A, B, C);
        const bool ok = e <= 1e-5;
        bad += !ok;
        std::printf("%s validate %-22s NN %dx%dx%d rel err %.2e\n", ok ? "PASS" : "FAIL",
                    v.name.c_str(), M, N, K, e);
      }
      for (auto ta : {Trans::N, Trans::T})
        for (auto tb : {Trans::N, Trans::T}) {
          if (ta == Trans::N && tb == Trans::N) continue;
          HC_CUDA_CHECK(cudaMemset(dC.p, 0xFF, C.size() * 4));
          sgemm_cuda(ta, tb, M, N, K, 1.f, dA.p, ta == Trans::N ? K : M, dB.p,
                     tb == Trans::N ? N : K, 0.f, dC.p, N, 0);
          HC_CUDA_CHECK(cudaDeviceSynchronize());
          HC_CUDA_CHECK(cudaMemcpy(C.data(), dC.p, C.size() * 4, cudaMemcpyDeviceToHost));
          const double e = ref_rel_err(ta, tb, M, N, K, A, B, C);
          const bool ok = e <= 1e-5;
          bad += !ok;
          std::printf("%s validate %-22s %c%c %dx%dx%d rel err %.2e\n", ok ? "PASS" : "FAIL",
                      "production", ta == Trans::N ? 'N' : 'T', tb == Trans::N ? 'N' : 'T', M,
                      N, K, e);
        }
    }

    // ---- timing
    std::vector<Row> rows;
    std::vector<std::array<int, 3>> shapes = {{512, 512, 512}, {1024, 1024, 1024},
                                              {2048, 2048, 2048}, {4096, 4096, 4096},
                                              {64, 256, 784},    {6, 50176, 25},
                                              {16, 6400, 150},   {32, 50176, 288},
                                              {64, 12544, 576},  {6, 784, 25}};
    for (auto& s : shapes) {
      const int M = s[0], N = s[1], K = s[2];
      DevBuf dA(randv((size_t)M * K)), dB(randv((size_t)K * N)), dC((size_t)M * N);
      const bool square = M == N && N == K;
      std::vector<Row> here;
      for (auto& v : vs) {
        if (std::max({M, N, K}) > v.max_size) continue;
        // CNN shapes: ours (plain and split-K) vs cuBLAS only
        if (!square && v.name != "production" && v.name != "cublas_fp32") continue;
        const double ms = median_ms([&] { v.run(M, N, K, dA.p, dB.p, dC.p); });
        here.push_back({v.name, M, N, K, ms, 2.0 * M * N * K / (ms * 1e6), 0});
      }
      const int splits = sgemm_splitk_count(M, N, K);
      if (!square && splits > 1) {
        DevBuf ws(sgemm_splitk_workspace(M, N, splits));
        const double ms = median_ms([&] {
          sgemm_splitk_cuda(Trans::N, Trans::N, M, N, K, 1.f, dA.p, K, dB.p, N, 0.f, dC.p, N,
                            splits, ws.p, GemmEpilogue{}, 0);
        });
        here.push_back({"production_splitk" + std::to_string(splits), M, N, K, ms,
                        2.0 * M * N * K / (ms * 1e6), 0});
      }
      double cub = 0;
      for (auto& r : here)
        if (r.version == "cublas_fp32") cub = r.gflops;
      for (auto& r : here) {
        r.pct = cub > 0 ? 100.0 * r.gflops / cub : 0;
        rows.push_back(r);
      }
    }
    std::printf("\n%-24s %6s %6s %6s %10s %10s %8s   (%s)\n", "version", "M", "N", "K", "ms",
                "GFLOP/s", "%cuBLAS", prop.name);
    for (auto& r : rows)
      std::printf("%-24s %6d %6d %6d %10.4f %10.1f %7.1f%%\n", r.version.c_str(), r.M, r.N, r.K,
                  r.ms, r.gflops, r.pct);
    if (argc > 1) {
      FILE* f = std::fopen(argv[1], "w");
      if (!f) fail(ErrorKind::Value, std::string("cannot write ") + argv[1]);
      std::fprintf(f, "{\"device\": \"%s\", \"rows\": [\n", prop.name);
      for (size_t i = 0; i < rows.size(); ++i)
        std::fprintf(f,
                     "  {\"version\": \"%s\", \"M\": %d, \"N\": %d, \"K\": %d, \"ms\": %.6f, "
                     "\"gflops\": %.2f, \"pct_cublas\": %.2f}%s\n",
                     rows[i].version.c_str(), rows[i].M, rows[i].N, rows[i].K, rows[i].ms,
                     rows[i].gflops, rows[i].pct, i + 1 < rows.size() ? "," : "");
      std::fprintf(f, "], \"validation_failures\": %d}\n", bad);
      std::fclose(f);
    }
    if (have_cublas) cublas_lib.destroy(cublas_lib.handle);
    std::printf("validation: %d failure(s)\n", bad);
    return bad == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gemm_lab: %s\n", e.what());
    return 2;
  }
}

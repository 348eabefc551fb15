// The bit-for-bit check of CPU_PERF.md entries 17 to 20 (not a test; convnet added for 18,
// bnnet's layers for 20): build against two builds' core libraries, e.g.
//   g++ -O2 -std=c++17 -fopenmp -Icore/include cpu-perf-bits.cpp -o bits build/core/*.a
// and compare what each prints at the same OMP_NUM_THREADS.
// Trains mlp, lenet5, convnet and bnnet for 20 steps at batch 256 and 37 and prints an FNV hash of the
// weights and the summed loss bits, to compare two builds bit for bit.
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>
#include "heterocnn/layer.h"
#include "heterocnn/net.h"
#include "heterocnn/sgd.h"
using Spec = std::vector<std::pair<std::string, std::vector<double>>>;
int main() {
  const Spec specs[] = {
    {{"Flatten", {}}, {"Linear", {784, 256}}, {"ReLU", {}}, {"Linear", {256, 128}}, {"ReLU", {}}, {"Linear", {128, 10}}},
    {{"Conv2d", {1, 6, 5, 1, 2}}, {"ReLU", {}}, {"MaxPool2d", {2, 2}}, {"Conv2d", {6, 16, 5, 1, 0}}, {"ReLU", {}}, {"MaxPool2d", {2, 2}}, {"Flatten", {}},
     {"Linear", {400, 120}}, {"ReLU", {}}, {"Linear", {120, 84}}, {"ReLU", {}}, {"Linear", {84, 10}}},
    {{"Conv2d", {1, 32, 3, 1, 1}}, {"ReLU", {}}, {"Conv2d", {32, 32, 3, 1, 1}}, {"ReLU", {}}, {"MaxPool2d", {2, 2}},
     {"Conv2d", {32, 64, 3, 1, 1}}, {"ReLU", {}}, {"Conv2d", {64, 64, 3, 1, 1}}, {"ReLU", {}}, {"MaxPool2d", {2, 2}},
     {"Flatten", {}}, {"Linear", {3136, 256}}, {"ReLU", {}}, {"Linear", {256, 10}}},
    {{"Conv2d", {1, 32, 3, 1, 1, 0}}, {"BatchNorm2d", {32, 1e-5, 0.1, 1}}, {"ReLU", {}},
     {"Conv2d", {32, 32, 3, 1, 1, 0}}, {"BatchNorm2d", {32, 1e-5, 0.1, 1}}, {"ReLU", {}},
     {"Conv2d", {32, 32, 3, 1, 1, 0}}, {"BatchNorm2d", {32, 1e-5, 0.1, 1}}, {"ReLU", {}}, {"MaxPool2d", {2, 2}},
     {"Conv2d", {32, 64, 3, 1, 1, 0}}, {"BatchNorm2d", {64, 1e-5, 0.1, 1}}, {"ReLU", {}},
     {"Conv2d", {64, 64, 3, 1, 1, 0}}, {"BatchNorm2d", {64, 1e-5, 0.1, 1}}, {"ReLU", {}}, {"MaxPool2d", {2, 2}},
     {"Conv2d", {64, 128, 3, 1, 1, 0}}, {"BatchNorm2d", {128, 1e-5, 0.1, 1}}, {"ReLU", {}},
     {"Conv2d", {128, 128, 3, 1, 1, 0}}, {"BatchNorm2d", {128, 1e-5, 0.1, 1}}, {"ReLU", {}}, {"MaxPool2d", {2, 2}},
     {"AdaptiveAvgPool2d", {1}}, {"Flatten", {}}, {"Linear", {128, 10}}}};
  for (const Spec& spec : specs) {
    hc::Net net;
    for (auto& [k, a] : spec) net.add(hc::make_layer(k, a));
    net.init(3);
    for (int64_t N : {256, 37}) {
      const hc::Shape in{N, 1, 28, 28};
      std::vector<float> x(N * 784); std::vector<int64_t> y(N);
      std::mt19937 rng(1); std::uniform_real_distribution<float> u(0.f, 1.f);
      for (float& v : x) v = u(rng);
      for (int64_t& v : y) v = rng() % 10;
      hc::Sgd cfg(hc::SgdConfig{0.05f, 0.9f, 1e-4f});
      double losses = 0;
      for (int i = 0; i < 20; ++i) losses += net.train_step(x.data(), in, y.data(), cfg).loss;
      const hc::Place cpu{};
      const float* w = net.params().values(cpu);
      uint64_t h = 1469598103934665603ull;
      for (size_t i = 0; i < net.params().span(cpu); ++i) { uint32_t b; std::memcpy(&b, &w[i], 4); h = (h ^ b) * 1099511628211ull; }
      uint64_t lb; std::memcpy(&lb, &losses, 8);
      std::printf("N=%lld weights %016llx loss %016llx\n", (long long)N, (unsigned long long)h, (unsigned long long)lb);
    }
  }
}

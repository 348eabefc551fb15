// Times Net::train_step of the benchmark nets (not a test): wall ms per step, best and median
// of repeats, batch 64 (or argv[2]), random inputs, SGD with momentum 0.9.
// Usage: time_step [net=all|mlp|lenet5|convnet|bnnet] [batch=64] [steps=200] [repeats=5]
// (bnnet as hc.models.bnnet, trained without its label smoothing: the same layers' time)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "heterocnn/layer.h"
#include "heterocnn/net.h"

namespace {

using Spec = std::vector<std::pair<std::string, std::vector<double>>>;

Spec spec_of(const std::string& name) {
  if (name == "mlp")
    return {{"Flatten", {}}, {"Linear", {784, 256}}, {"ReLU", {}}, {"Linear", {256, 128}},
            {"ReLU", {}}, {"Linear", {128, 10}}};
  if (name == "lenet5")
    return {{"Conv2d", {1, 6, 5, 1, 2}}, {"ReLU", {}}, {"MaxPool2d", {2, 2}},
            {"Conv2d", {6, 16, 5, 1, 0}}, {"ReLU", {}}, {"MaxPool2d", {2, 2}}, {"Flatten", {}},
            {"Linear", {400, 120}}, {"ReLU", {}}, {"Linear", {120, 84}}, {"ReLU", {}},
            {"Linear", {84, 10}}};
  if (name == "bnnet") {
    Spec s;
    auto block = [&](double cin, double cout) {
      s.push_back({"Conv2d", {cin, cout, 3, 1, 1, 0}});
      s.push_back({"BatchNorm2d", {cout, 1e-5, 0.1, 1}});
      s.push_back({"ReLU", {}});
    };
    block(1, 32);
    for (auto [cin, cout] : {std::pair{32., 32.}, {32., 64.}, {64., 128.}}) {
      block(cin, cout), block(cout, cout);
      s.push_back({"MaxPool2d", {2, 2}});
    }
    s.push_back({"AdaptiveAvgPool2d", {1}});
    s.push_back({"Flatten", {}});
    s.push_back({"Linear", {128, 10}});
    return s;
  }
  return {{"Conv2d", {1, 32, 3, 1, 1}}, {"ReLU", {}}, {"Conv2d", {32, 32, 3, 1, 1}},
          {"ReLU", {}}, {"MaxPool2d", {2, 2}}, {"Conv2d", {32, 64, 3, 1, 1}}, {"ReLU", {}},
          {"Conv2d", {64, 64, 3, 1, 1}}, {"ReLU", {}}, {"MaxPool2d", {2, 2}}, {"Flatten", {}},
          {"Linear", {3136, 256}}, {"ReLU", {}}, {"Linear", {256, 10}}};
}

void time_net(const std::string& name, int64_t N, int steps, int repeats) {
  hc::Net net;
  for (auto& [kind, args] : spec_of(name)) net.add(hc::make_layer(kind, args));
  net.init(0);
  const hc::Shape in{N, 1, 28, 28};
  std::vector<float> x(N * 28 * 28);
  std::vector<int64_t> y(N);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  for (float& v : x) v = u(rng);
  for (int64_t& v : y) v = rng() % 10;
  hc::Sgd cfg(hc::SgdConfig{0.01f, 0.9f, 0.f});
  if (name == "convnet" || name == "bnnet") steps = std::max(1, steps / 10);
  for (int i = 0; i < steps / 4 + 1; ++i) net.train_step(x.data(), in, y.data(), cfg);
  std::vector<double> ms;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < steps; ++i) net.train_step(x.data(), in, y.data(), cfg);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                     .count() / steps);
  }
  std::sort(ms.begin(), ms.end());
  std::printf("%-8s best %8.3f ms  median %8.3f ms per step  (%.0f img/s at the median)\n",
              name.c_str(), ms.front(), ms[ms.size() / 2], N / ms[ms.size() / 2] * 1e3);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string which = argc > 1 ? argv[1] : "all";
  const int64_t N = argc > 2 ? std::atoll(argv[2]) : 64;
  const int steps = argc > 3 ? std::atoi(argv[3]) : 200;
  const int repeats = argc > 4 ? std::atoi(argv[4]) : 5;
  for (const char* name : {"mlp", "lenet5", "convnet", "bnnet"})
    if (which == "all" || which == name) time_net(name, N, steps, repeats);
}

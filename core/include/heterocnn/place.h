// Where a layer, a parameter or a buffer lives: the CPU, or CUDA device `index`.
#pragma once
#include <string>

namespace hc {

enum class Device { CPU, CUDA };

struct Place {
  Device device = Device::CPU;
  int index = 0;
  bool operator==(const Place& o) const { return device == o.device && index == o.index; }
  bool operator!=(const Place& o) const { return !(*this == o); }
  std::string str() const { return device == Device::CPU ? "cpu" : "cuda:" + std::to_string(index); }
};

}  // namespace hc

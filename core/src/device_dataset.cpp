// images (N, C, H, W) uint8 or float32, labels (N,) int64 -> copies on a CUDA device
#include "heterocnn/device_dataset.h"

#include <cstring>
#include <string>

#include "heterocnn/error.h"

namespace hc {

DeviceDataset::DeviceDataset(const void* images, bool uint8, const Shape& shape,
                             const int64_t* labels, Place place)
    : shape_(shape), uint8_(uint8) {
  if (place.device != Device::CUDA)
    fail_value("a DeviceDataset lives on a CUDA device, not on " + place.str());
  if (shape.ndim < 2 || shape[0] <= 0)
    fail_shape("a DeviceDataset needs images (N, ...) with N >= 1, got " + shape.str());
  const size_t image_bytes = shape.numel() * (uint8 ? 1 : sizeof(float));
  // The tail of the last float of a uint8 payload is copied from host memory we own below.
  images_ = Buffer(floats_for<char>(image_bytes), place);
  const size_t whole = image_bytes / sizeof(float) * sizeof(float);
  copy_floats(images_.data(), place, static_cast<const float*>(images), Place{},
              whole / sizeof(float));
  if (whole < image_bytes) {
    float tail = 0.f;
    std::memcpy(&tail, static_cast<const char*>(images) + whole, image_bytes - whole);
    copy_floats(images_.data() + whole / sizeof(float), place, &tail, Place{}, 1);
  }
  labels_ = Buffer(2 * shape[0], place);
  copy_floats(labels_.data(), place, reinterpret_cast<const float*>(labels), Place{},
              2 * shape[0]);
}

void DeviceDataset::check_indices(const int64_t* idx, int64_t n) const {
  for (int64_t i = 0; i < n; ++i)
    if (idx[i] < 0 || idx[i] >= size())
      fail_value("index " + std::to_string(idx[i]) + " at position " + std::to_string(i) +
                 " is outside the data set of " + std::to_string(size()) + " samples");
}

}  // namespace hc

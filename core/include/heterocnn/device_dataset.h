// A labelled data set copied once to a CUDA device, so that training batches are gathered on
// the device by index instead of crossing from the host every step.
//   images (N, C, H, W) as uint8 (scaled by 1/255 when gathered) or float32; labels (N,) int64.
#pragma once
#include <cstdint>

#include "heterocnn/buffer.h"
#include "heterocnn/shape.h"

namespace hc {

class DeviceDataset {
 public:
  // Copies the host arrays to `place` (a CUDA device). `images` holds shape.numel() uint8
  // values when `uint8` is true, else floats; the caller has checked labels and values.
  DeviceDataset(const void* images, bool uint8, const Shape& shape, const int64_t* labels,
                Place place);

  int64_t size() const { return shape_[0]; }
  const Shape& shape() const { return shape_; }
  Place place() const { return images_.place(); }
  bool is_uint8() const { return uint8_; }
  const void* images() const { return images_.data(); }
  const int64_t* labels() const { return reinterpret_cast<const int64_t*>(labels_.data()); }
  // Throws a Value error naming the first index outside [0, size()).
  void check_indices(const int64_t* idx, int64_t n) const;

 private:
  Shape shape_;
  bool uint8_;
  Buffer images_, labels_;  // bytes and int64 stored in float buffers
};

}  // namespace hc

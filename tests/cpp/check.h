// A tiny test harness for the C++ unit tests: CHECK records a failure and carries on, and
// test_main prints "N passed, M failed" and returns non-zero when anything failed.
#pragma once
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace hctest {

struct Registry {
  std::vector<std::pair<std::string, std::function<void()>>> tests;
  int failures_in_current = 0;
  static Registry& get() {
    static Registry r;
    return r;
  }
};

struct Register {
  Register(const char* name, std::function<void()> fn) { Registry::get().tests.emplace_back(name, fn); }
};

inline void check(bool ok, const char* expr, const char* file, int line, const std::string& msg) {
  if (ok) return;
  ++Registry::get().failures_in_current;
  std::fprintf(stderr, "  FAILED %s:%d: %s %s\n", file, line, expr, msg.c_str());
}

inline int run_all() {
  int passed = 0, failed = 0;
  for (auto& [name, fn] : Registry::get().tests) {
    Registry::get().failures_in_current = 0;
    try {
      fn();
    } catch (const std::exception& e) {
      ++Registry::get().failures_in_current;
      std::fprintf(stderr, "  FAILED %s: exception: %s\n", name.c_str(), e.what());
    }
    bool ok = Registry::get().failures_in_current == 0;
    std::printf("%s %s\n", ok ? "PASS" : "FAIL", name.c_str());
    (ok ? passed : failed)++;
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}

}  // namespace hctest

#define TEST(name)                                                  \
  static void name();                                               \
  static hctest::Register name##_reg(#name, name);                  \
  static void name()
#define CHECK(cond) hctest::check((cond), #cond, __FILE__, __LINE__, "")
#define CHECK_MSG(cond, msg) hctest::check((cond), #cond, __FILE__, __LINE__, (msg))
#define CHECK_NEAR(a, b, tol)                                                                   \
  hctest::check(std::fabs((double)(a) - (double)(b)) <= (tol), #a " ~ " #b, __FILE__, __LINE__, \
                std::to_string((double)(a)) + " vs " + std::to_string((double)(b)))
#define TEST_MAIN() \
  int main() { return hctest::run_all(); }

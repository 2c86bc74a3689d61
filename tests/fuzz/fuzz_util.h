// Shared helpers for the fuzz targets in this directory (built both as libFuzzer binaries and as
// replay tests, see tests/fuzz.cmake).
#ifndef RERANK_TESTS_FUZZ_FUZZ_UTIL_H_
#define RERANK_TESTS_FUZZ_FUZZ_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

// A property of the code under test; a violation is a finding like a crash (libFuzzer saves the
// input). Stays on in release builds, unlike assert().
#define FUZZ_CHECK(cond, ...)                                                            \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, __VA_ARGS__);                                                 \
      std::fprintf(stderr, "\n");                                                        \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)

namespace rerank::fuzz {

// A file of the source tree (RERANK_SOURCE_DIR is set by tests/fuzz.cmake), so the binaries run
// from any directory.
inline std::string SourcePath(const std::string& relative) {
  return std::string(RERANK_SOURCE_DIR) + "/" + relative;
}

// `text` split at every `sep` (empty pieces kept).
inline std::vector<std::string_view> Split(std::string_view text, char sep) {
  std::vector<std::string_view> out;
  while (true) {
    const size_t at = text.find(sep);
    out.push_back(text.substr(0, at));
    if (at == std::string_view::npos) return out;
    text.remove_prefix(at + 1);
  }
}

// Consumes the input from the front: a few control bytes, then the rest as text.
class InputReader {
 public:
  InputReader(const uint8_t* data, size_t size)
      : rest_(reinterpret_cast<const char*>(data), size) {}
  // The next byte, or 0 when the input is exhausted.
  uint8_t Byte() {
    if (rest_.empty()) return 0;
    const uint8_t b = static_cast<uint8_t>(rest_[0]);
    rest_.remove_prefix(1);
    return b;
  }
  // The text up to the next `sep` (consumed, not returned), or all that is left.
  std::string_view Until(char sep) {
    const size_t at = rest_.find(sep);
    std::string_view out = rest_.substr(0, at);
    rest_.remove_prefix(at == std::string_view::npos ? rest_.size() : at + 1);
    return out;
  }
  std::string_view Rest() {
    std::string_view out = rest_;
    rest_ = {};
    return out;
  }

 private:
  std::string_view rest_;
};

}  // namespace rerank::fuzz

#endif  // RERANK_TESTS_FUZZ_FUZZ_UTIL_H_

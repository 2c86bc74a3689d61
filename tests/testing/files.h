// Whole-file helpers for tests that check what components write to disk.
#ifndef RERANK_TESTS_TESTING_FILES_H_
#define RERANK_TESTS_TESTING_FILES_H_

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace rerank::testing {

// The file's bytes; empty if it cannot be read.
inline std::string ReadFile(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A plain, non-atomic overwrite (like `kubectl cp` or an editor that does not rename).
inline void WriteFile(const std::filesystem::path& p, const std::string& content) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << content;
}

}  // namespace rerank::testing

#endif  // RERANK_TESTS_TESTING_FILES_H_

// Where tests find what the build made, and a fresh scratch directory per test.
#ifndef RERANK_TESTS_TESTING_TEST_DIRS_H_
#define RERANK_TESTS_TESTING_TEST_DIRS_H_

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace rerank::testing {

// The build tree: $RERANK_BUILD_DIR (set for every test by rerank_add_test), else "build".
inline std::string BuildDir() {
  const char* build = std::getenv("RERANK_BUILD_DIR");
  return build != nullptr ? build : "build";
}

// The tiny random-weight test model (tests/test_models.cmake).
inline std::string TinyModelDir() { return BuildDir() + "/testdata/tiny_model"; }

// <tmp>/<prefix>_<pid>_<running test's name>, emptied and created. Callers remove it.
inline std::filesystem::path FreshTestDir(const std::string& prefix) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() /
      absl::StrCat(prefix, "_", getpid(), "_",
                   ::testing::UnitTest::GetInstance()->current_test_info()->name());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace rerank::testing

#endif  // RERANK_TESTS_TESTING_TEST_DIRS_H_

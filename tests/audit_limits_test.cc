// The audit log's bounds: a queue bounded in bytes as well as events, gzip-compressed rotated
// files, a total-size cap over all audit files, and the 90-day default retention. Real files in a
// temp directory, a fake clock.
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/audit_log.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/fake_clock.h"
#include "zlib.h"

namespace rerank {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string Gunzip(const fs::path& p) {
  gzFile gz = gzopen(p.c_str(), "rb");
  EXPECT_NE(gz, nullptr) << p;
  if (gz == nullptr) return "";
  std::string out;
  char buf[65536];
  int n;
  while ((n = gzread(gz, buf, sizeof(buf))) > 0) out.append(buf, n);
  gzclose(gz);
  return out;
}

std::vector<json> Lines(const std::string& text) {
  std::vector<json> out;
  size_t start = 0;
  while (start < text.size()) {
    const size_t nl = text.find('\n', start);
    out.push_back(json::parse(text.substr(start, nl - start)));
    start = nl + 1;
  }
  return out;
}

class AuditLimitsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           absl::StrCat("audit_limits_test_", getpid(), "_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  AuditLog::Options Options() {
    AuditLog::Options o;
    o.path = (dir_ / "audit.jsonl").string();
    return o;
  }
  std::vector<std::string> Files() {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir_)) out.push_back(e.path().filename());
    std::sort(out.begin(), out.end());
    return out;
  }
  uint64_t TotalBytes() {
    uint64_t n = 0;
    for (const auto& e : fs::directory_iterator(dir_)) n += fs::file_size(e.path());
    return n;
  }

  fs::path dir_;
  testing::FakeClock clock_;  // 2023-11-14T22:13:20Z
};

TEST_F(AuditLimitsTest, DefaultsAreTheDeploymentGuides) {
  AuditLog::Options o;
  EXPECT_EQ(o.retention_days, 90);
  EXPECT_TRUE(o.compress_rotated);
  EXPECT_EQ(o.queue_max_bytes, 64ull << 20);
}

TEST_F(AuditLimitsTest, QueueIsBoundedInBytesNotOnlyEvents) {
  AuditLog::Options o = Options();
  o.queue_capacity = 1000;
  o.queue_max_bytes = 10000;
  auto log = AuditLog::Create(o, &clock_);
  ASSERT_TRUE(log.ok()) << log.status();
  (*log)->SetWriterPausedForTesting(true);
  (*log)->Record("rerank", json{{"pad", std::string(20000, 'x')}});  // alone above the bound
  EXPECT_EQ((*log)->dropped(), 1u);
  for (int i = 0; i < 20; ++i) (*log)->Record("rerank", json{{"pad", std::string(1000, 'y')}});
  // ~1.1 KB each: 9 fit in 10,000 bytes, the rest are dropped (far below 1000 events).
  EXPECT_EQ((*log)->dropped(), 1u + 11u);
  (*log)->SetWriterPausedForTesting(false);
  (*log)->Flush();
  EXPECT_EQ((*log)->written(), 9u);
  // Once written, the bytes are free again.
  (*log)->Record("rerank", json{{"pad", std::string(1000, 'z')}});
  (*log)->Flush();
  EXPECT_EQ((*log)->written(), 10u);
  EXPECT_EQ((*log)->dropped(), 12u);
}

TEST_F(AuditLimitsTest, RotatedFilesAreGzipCompressedAndKeepEveryEvent) {
  AuditLog::Options o = Options();
  o.max_file_bytes = 1000;
  auto log = AuditLog::Create(o, &clock_);
  ASSERT_TRUE(log.ok()) << log.status();
  constexpr int kEvents = 20;
  for (int i = 0; i < kEvents; ++i) {
    (*log)->Record("rerank", json{{"i", i}, {"pad", std::string(150, 'p')}});
    (*log)->Flush();
    clock_.Advance(absl::Seconds(1));
  }
  (*log)->Shutdown();
  std::vector<int> seen;
  int compressed = 0;
  for (const std::string& name : Files()) {
    if (name == "audit.jsonl") continue;
    ASSERT_TRUE(absl::EndsWith(name, ".jsonl.gz")) << name << ": every rotated file compressed";
    ++compressed;
    for (const json& j : Lines(Gunzip(dir_ / name))) seen.push_back(j["i"]);
  }
  EXPECT_GE(compressed, 3);
  std::ifstream active(dir_ / "audit.jsonl");
  std::string text((std::istreambuf_iterator<char>(active)), std::istreambuf_iterator<char>());
  for (const json& j : Lines(text)) seen.push_back(j["i"]);
  ASSERT_EQ(seen.size(), static_cast<size_t>(kEvents));
  for (int i = 0; i < kEvents; ++i) EXPECT_EQ(seen[i], i) << "name order is event order";
}

TEST_F(AuditLimitsTest, LeftoversOfACrashAreCompressedOrRemovedAtStartup) {
  std::ofstream(dir_ / "audit-20231110T000000-0000.jsonl") << "{\"a\":1}\n";
  std::ofstream(dir_ / "audit-20231110T000000-0001.jsonl") << "{\"b\":2}\n";
  std::ofstream(dir_ / "audit-20231110T000000-0001.jsonl.gz.tmp") << "partial";
  std::ofstream(dir_ / "notes.txt") << "not ours";
  auto log = AuditLog::Create(Options(), &clock_);
  ASSERT_TRUE(log.ok()) << log.status();
  (*log)->Shutdown();
  EXPECT_EQ(Files(), (std::vector<std::string>{"audit-20231110T000000-0000.jsonl.gz",
                                               "audit-20231110T000000-0001.jsonl.gz", "audit.jsonl",
                                               "notes.txt"}));
  EXPECT_EQ(Gunzip(dir_ / "audit-20231110T000000-0001.jsonl.gz"), "{\"b\":2}\n");
}

TEST_F(AuditLimitsTest, TotalSizeCapDeletesTheOldestRotatedFiles) {
  AuditLog::Options o = Options();
  o.compress_rotated = false;  // predictable sizes
  o.max_file_bytes = 1000;
  o.max_total_bytes = 3500;
  o.retention_days = 0;  // age alone would keep everything
  auto log = AuditLog::Create(o, &clock_);
  ASSERT_TRUE(log.ok()) << log.status();
  for (int i = 0; i < 40; ++i) {
    (*log)->Record("rerank", json{{"i", i}, {"pad", std::string(150, 'p')}});
    (*log)->Flush();
    clock_.Advance(absl::Seconds(1));
  }
  (*log)->Shutdown();
  EXPECT_LE(TotalBytes(), 3500u);
  EXPECT_GT((*log)->deleted_files(), 0u);
  // What is left is the newest events, contiguous up to the last.
  std::vector<int> seen;
  for (const std::string& name : Files()) {
    if (name == "audit.jsonl") continue;
    std::ifstream in(dir_ / name);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    for (const json& j : Lines(text)) seen.push_back(j["i"]);
  }
  std::ifstream in(dir_ / "audit.jsonl");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (const json& j : Lines(text)) seen.push_back(j["i"]);
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back(), 39);
  EXPECT_GT(seen.front(), 0) << "the oldest events went";
  for (size_t k = 1; k < seen.size(); ++k) EXPECT_EQ(seen[k], seen[k - 1] + 1);
}

TEST_F(AuditLimitsTest, RetentionAppliesToCompressedFiles) {
  std::ofstream(dir_ / "audit-20000101T000000-0000.jsonl.gz") << "old";
  std::ofstream(dir_ / "audit-20231101T000000-0000.jsonl.gz") << "recent";
  AuditLog::Options o = Options();
  o.retention_days = 30;
  auto log = AuditLog::Create(o, &clock_);
  ASSERT_TRUE(log.ok()) << log.status();
  (*log)->Shutdown();
  EXPECT_FALSE(fs::exists(dir_ / "audit-20000101T000000-0000.jsonl.gz"));
  EXPECT_TRUE(fs::exists(dir_ / "audit-20231101T000000-0000.jsonl.gz"));
}

}  // namespace
}  // namespace rerank

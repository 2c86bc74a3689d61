#include "common/audit_log.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_audit_sink.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/files.h"

namespace rerank {
namespace {

using testing::ReadFile;
using testing::WriteFile;

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using json = nlohmann::json;

// Splits on '\n'; the content must end with '\n' (no partial line).
std::vector<std::string> Lines(const std::string& content) {
  std::vector<std::string> lines;
  if (content.empty()) return lines;
  EXPECT_EQ(content.back(), '\n') << "file does not end with a newline";
  std::stringstream ss(content);
  std::string line;
  while (std::getline(ss, line)) lines.push_back(line);
  return lines;
}

// Every line parses as a JSON object; returns them.
std::vector<json> ParseLines(const fs::path& p) {
  std::vector<json> out;
  for (const std::string& line : Lines(ReadFile(p))) {
    json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    EXPECT_FALSE(j.is_discarded()) << "unparseable line: " << line;
    EXPECT_TRUE(j.is_object()) << line;
    out.push_back(std::move(j));
  }
  return out;
}

class AuditLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           absl::StrCat("audit_log_test_", getpid(), "_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  AuditLog::Options DefaultOptions() {
    AuditLog::Options o;
    o.path = (dir_ / "logs" / "audit.jsonl").string();
    o.compress_rotated = false;  // plain names here; tests/audit_limits_test.cc covers gzip
    return o;
  }
  std::unique_ptr<AuditLog> Make(AuditLog::Options o) {
    auto log = AuditLog::Create(std::move(o), &clock_);
    EXPECT_TRUE(log.ok()) << log.status();
    return log.ok() ? std::move(log).value() : nullptr;
  }
  // Rotated files in the log directory, sorted by name.
  std::vector<fs::path> RotatedFiles() {
    std::vector<fs::path> out;
    for (const auto& e : fs::directory_iterator(dir_ / "logs")) {
      if (e.path().filename() != "audit.jsonl") out.push_back(e.path());
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  fs::path dir_;
  testing::FakeClock clock_;  // 2023-11-14T22:13:20Z
};

TEST(AuditLogFormatTest, TimestampIsRfc3339UtcWithMillis) {
  EXPECT_EQ(AuditLog::FormatTimestamp(absl::FromUnixSeconds(1700000000)),
            "2023-11-14T22:13:20.000Z");
  EXPECT_EQ(AuditLog::FormatTimestamp(absl::FromUnixMillis(1700000001234)),
            "2023-11-14T22:13:21.234Z");
}

TEST(AuditLogFormatTest, LineStartsWithTimestampAndTypeThenFields) {
  const std::string line = AuditLog::FormatLine(absl::FromUnixMillis(1700000000005), "rerank",
                                                json{{"client", "c1"}, {"n", 3}});
  EXPECT_EQ(
      line,
      R"({"timestamp":"2023-11-14T22:13:20.005Z","event_type":"rerank","client":"c1","n":3})");
}

TEST(AuditLogFormatTest, ReservedKeysNonObjectsAndInvalidUtf8) {
  // The log's own timestamp/event_type win over same-named fields.
  json j = json::parse(AuditLog::FormatLine(absl::UnixEpoch(), "startup",
                                            json{{"timestamp", "fake"}, {"event_type", "x"}}));
  EXPECT_EQ(j["timestamp"], "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(j["event_type"], "startup");
  EXPECT_EQ(j.size(), 2u);

  j = json::parse(AuditLog::FormatLine(absl::UnixEpoch(), "shutdown", json()));
  EXPECT_EQ(j.size(), 2u);
  j = json::parse(AuditLog::FormatLine(absl::UnixEpoch(), "shutdown", json::object()));
  EXPECT_EQ(j.size(), 2u);
  j = json::parse(AuditLog::FormatLine(absl::UnixEpoch(), "rerank", json::array({1, 2})));
  EXPECT_EQ(j["data"], json::array({1, 2}));

  // Query text is user input: invalid UTF-8 must not throw or produce an unparseable line.
  const std::string bad = "caf\xc3 \xff\xfe";
  const std::string line =
      AuditLog::FormatLine(absl::UnixEpoch(), "rerank\xff", json{{"query", bad}, {"k", bad}});
  j = json::parse(line, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << line;
  EXPECT_TRUE(j["query"].is_string());
  // A newline inside a value is escaped, so one event stays one line.
  EXPECT_EQ(AuditLog::FormatLine(absl::UnixEpoch(), "rerank", json{{"q", "a\nb"}}).find('\n'),
            std::string::npos);
}

TEST_F(AuditLogTest, CreateValidatesOptions) {
  auto expect_bad = [&](AuditLog::Options o, const std::string& field) {
    auto log = AuditLog::Create(std::move(o), &clock_);
    ASSERT_FALSE(log.ok()) << field;
    EXPECT_THAT(std::string(log.status().message()), HasSubstr(field));
  };
  AuditLog::Options o = DefaultOptions();
  o.path = "";
  expect_bad(o, "path");
  o = DefaultOptions();
  o.queue_capacity = 0;
  expect_bad(o, "queue_capacity");
  o = DefaultOptions();
  o.max_file_bytes = 0;
  expect_bad(o, "max_file_bytes");
  o = DefaultOptions();
  o.retention_days = -1;
  expect_bad(o, "retention_days");
  o = DefaultOptions();
  o.flush_interval = absl::ZeroDuration();
  expect_bad(o, "flush_interval");
  EXPECT_FALSE(AuditLog::Create(DefaultOptions(), nullptr).ok());

  // An unusable location is reported at Create(), not discovered later.
  fs::create_directories(dir_);
  WriteFile(dir_ / "not_a_dir", "x");
  o = DefaultOptions();
  o.path = (dir_ / "not_a_dir" / "audit.jsonl").string();
  auto log = AuditLog::Create(o, &clock_);
  EXPECT_FALSE(log.ok());
}

TEST_F(AuditLogTest, WritesOneParseableLinePerEventAndCreatesDirectories) {
  auto log = Make(DefaultOptions());
  ASSERT_NE(log, nullptr);
  EXPECT_TRUE(fs::exists(dir_ / "logs" / "audit.jsonl"));
  log->Record("startup", json{{"version", "1.0"}});
  clock_.Advance(absl::Milliseconds(1234));
  log->Record("rerank", json{{"client", "c1"}, {"docs", 20}, {"latency_ms", 12.5}});
  log->Record("shutdown", json::object());
  log->Shutdown();
  EXPECT_EQ(log->written(), 3u);
  EXPECT_EQ(log->dropped(), 0u);

  const std::vector<json> lines = ParseLines(dir_ / "logs" / "audit.jsonl");
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0]["event_type"], "startup");
  EXPECT_EQ(lines[0]["timestamp"], "2023-11-14T22:13:20.000Z");
  EXPECT_EQ(lines[0]["version"], "1.0");
  EXPECT_EQ(lines[1]["event_type"], "rerank");
  EXPECT_EQ(lines[1]["timestamp"], "2023-11-14T22:13:21.234Z");
  EXPECT_EQ(lines[1]["docs"], 20);
  EXPECT_EQ(lines[2]["event_type"], "shutdown");

  // After Shutdown, events are refused and counted; Shutdown is idempotent.
  log->Record("rerank", json::object());
  EXPECT_EQ(log->dropped(), 1u);
  log->Shutdown();
  EXPECT_EQ(ParseLines(dir_ / "logs" / "audit.jsonl").size(), 3u);
}

TEST_F(AuditLogTest, AppendsToAnExistingFileAcrossRestarts) {
  {
    auto log = Make(DefaultOptions());
    for (int i = 0; i < 5; ++i) log->Record("rerank", json{{"i", i}});
  }  // destructor shuts down
  {
    auto log = Make(DefaultOptions());
    EXPECT_EQ(log->repaired_bytes(), 0u);
    for (int i = 5; i < 8; ++i) log->Record("rerank", json{{"i", i}});
  }
  const std::vector<json> lines = ParseLines(dir_ / "logs" / "audit.jsonl");
  ASSERT_EQ(lines.size(), 8u);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(lines[i]["i"], i);
}

TEST_F(AuditLogTest, FlushWaitsForEarlierEvents) {
  auto log = Make(DefaultOptions());
  for (int i = 0; i < 100; ++i) log->Record("rerank", json{{"i", i}});
  log->Flush();
  EXPECT_EQ(log->written(), 100u);
  EXPECT_EQ(ParseLines(dir_ / "logs" / "audit.jsonl").size(), 100u);
}

TEST_F(AuditLogTest, FullQueueDropsAndCounts) {
  AuditLog::Options o = DefaultOptions();
  o.queue_capacity = 10;
  auto log = Make(o);
  log->SetWriterPausedForTesting(true);  // nothing leaves the queue
  for (int i = 0; i < 25; ++i) log->Record("rerank", json{{"i", i}});
  EXPECT_EQ(log->dropped(), 15u);
  EXPECT_EQ(log->written(), 0u);
  log->SetWriterPausedForTesting(false);
  log->Flush();
  EXPECT_EQ(log->written(), 10u);
  // The queue has room again.
  log->Record("rerank", json{{"i", 100}});
  log->Shutdown();
  EXPECT_EQ(log->written(), 11u);
  EXPECT_EQ(log->dropped(), 15u);
  const std::vector<json> lines = ParseLines(dir_ / "logs" / "audit.jsonl");
  ASSERT_EQ(lines.size(), 11u);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(lines[i]["i"], i);  // the first ten were kept
  EXPECT_EQ(lines[10]["i"], 100);
}

TEST_F(AuditLogTest, ShutdownDrainsEvenWhenPaused) {
  auto log = Make(DefaultOptions());
  log->SetWriterPausedForTesting(true);
  for (int i = 0; i < 50; ++i) log->Record("rerank", json{{"i", i}});
  log->Shutdown();
  EXPECT_EQ(log->written(), 50u);
  EXPECT_EQ(ParseLines(dir_ / "logs" / "audit.jsonl").size(), 50u);
}

TEST_F(AuditLogTest, RepairsTornTailOnOpen) {
  fs::create_directories(dir_ / "logs");
  const std::string good = "{\"a\":1}\n{\"b\":2}\n";
  const std::string torn = R"({"timestamp":"2023-11-14T22:13:20.000Z","ev)";
  WriteFile(dir_ / "logs" / "audit.jsonl", good + torn);
  auto log = Make(DefaultOptions());
  EXPECT_EQ(log->repaired_bytes(), torn.size());
  log->Record("startup", json::object());
  log->Shutdown();
  const std::string content = ReadFile(dir_ / "logs" / "audit.jsonl");
  EXPECT_EQ(content.substr(0, good.size()), good);
  const std::vector<json> lines = ParseLines(dir_ / "logs" / "audit.jsonl");
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[2]["event_type"], "startup");
}

TEST_F(AuditLogTest, RepairsAFileWithNoCompleteLine) {
  fs::create_directories(dir_ / "logs");
  // Longer than the 64 KiB backwards-scan window, no newline at all.
  WriteFile(dir_ / "logs" / "audit.jsonl", "{\"x\":\"" + std::string(100000, 'y'));
  auto log = Make(DefaultOptions());
  EXPECT_EQ(log->repaired_bytes(), 100006u);
  log->Record("startup", json::object());
  log->Shutdown();
  EXPECT_EQ(ParseLines(dir_ / "logs" / "audit.jsonl").size(), 1u);
}

TEST_F(AuditLogTest, RepairFindsNewlineBeyondTheScanWindow) {
  fs::create_directories(dir_ / "logs");
  const std::string good = "{\"a\":1}\n";
  WriteFile(dir_ / "logs" / "audit.jsonl", good + "{\"x\":\"" + std::string(150000, 'y'));
  auto log = Make(DefaultOptions());
  EXPECT_EQ(log->repaired_bytes(), 150006u);
  log->Shutdown();
  EXPECT_EQ(ReadFile(dir_ / "logs" / "audit.jsonl"), good);
}

TEST_F(AuditLogTest, RotatesBySizeAndKeepsEveryEvent) {
  AuditLog::Options o = DefaultOptions();
  o.max_file_bytes = 1000;
  auto log = Make(o);
  const std::string pad(100, 'x');
  constexpr int kEvents = 30;
  for (int i = 0; i < kEvents; ++i) {
    log->Record("rerank", json{{"i", i}, {"pad", pad}});  // ~170 bytes per line
    log->Flush();  // rotation happens at the fake time of this event
    clock_.Advance(absl::Seconds(1));
  }
  log->Shutdown();
  const std::vector<fs::path> rotated = RotatedFiles();
  EXPECT_GE(rotated.size(), 4u);
  EXPECT_EQ(log->rotations(), rotated.size());
  const std::regex name_re(R"(audit-\d{8}T\d{6}-\d{4}\.jsonl)");
  std::vector<int> seen;
  std::vector<fs::path> all = rotated;
  all.push_back(dir_ / "logs" / "audit.jsonl");  // newest last
  for (const fs::path& p : all) {
    EXPECT_TRUE(p.filename() == "audit.jsonl" || std::regex_match(p.filename().string(), name_re))
        << p;
    EXPECT_LE(fs::file_size(p), 1000u) << p;
    for (const json& j : ParseLines(p)) seen.push_back(j["i"].get<int>());
  }
  ASSERT_EQ(seen.size(), static_cast<size_t>(kEvents));
  for (int i = 0; i < kEvents; ++i) EXPECT_EQ(seen[i], i);  // name order == event order
  // The first rotation happened when event 5 (the first that did not fit) was written.
  EXPECT_EQ(rotated[0].filename(), "audit-20231114T221325-0000.jsonl");
}

TEST_F(AuditLogTest, RotationNamesAreUniqueWithinOneSecond) {
  AuditLog::Options o = DefaultOptions();
  o.max_file_bytes = 200;
  auto log = Make(o);
  for (int i = 0; i < 5; ++i) log->Record("rerank", json{{"pad", std::string(150, 'x')}});
  log->Shutdown();  // fake clock never moved: all rotations in the same second
  const std::vector<fs::path> rotated = RotatedFiles();
  ASSERT_EQ(rotated.size(), 4u);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(rotated[i].filename(), absl::StrCat("audit-20231114T221320-000", i, ".jsonl"));
  }
}

TEST_F(AuditLogTest, RetentionDeletesOldRotatedFilesOnly) {
  fs::create_directories(dir_ / "logs");
  // Pre-existing files: one too old, one recent, and files that are not ours.
  WriteFile(dir_ / "logs" / "audit-20000101T000000-0.jsonl", "{}\n");
  WriteFile(dir_ / "logs" / "audit-20231113T000000-0000.jsonl", "{}\n");  // ~1.9 days old
  WriteFile(dir_ / "logs" / "audit-notes.jsonl", "{}\n");
  WriteFile(dir_ / "logs" / "audit-20000101T000000-x.jsonl", "{}\n");
  WriteFile(dir_ / "logs" / "other-20000101T000000-0.jsonl", "{}\n");
  AuditLog::Options o = DefaultOptions();
  o.max_file_bytes = 300;
  o.retention_days = 7;
  auto log = Make(o);
  EXPECT_FALSE(fs::exists(dir_ / "logs" / "audit-20000101T000000-0.jsonl"));  // at startup
  EXPECT_TRUE(fs::exists(dir_ / "logs" / "audit-20231113T000000-0000.jsonl"));
  EXPECT_TRUE(fs::exists(dir_ / "logs" / "audit-notes.jsonl"));
  EXPECT_TRUE(fs::exists(dir_ / "logs" / "audit-20000101T000000-x.jsonl"));
  EXPECT_TRUE(fs::exists(dir_ / "logs" / "other-20000101T000000-0.jsonl"));

  // Rotate twice now (2023-11-14T22:13:20).
  for (int i = 0; i < 3; ++i) {
    log->Record("rerank", json{{"pad", std::string(200, 'x')}});
    log->Flush();
  }
  EXPECT_TRUE(fs::exists(dir_ / "logs" / "audit-20231114T221320-0000.jsonl"));
  EXPECT_TRUE(fs::exists(dir_ / "logs" / "audit-20231114T221320-0001.jsonl"));

  // 6 days later: nothing of ours is old enough yet (the 11-13 file is 7.9 days old -> deleted).
  clock_.Advance(absl::Hours(24 * 6));
  log->Record("rerank", json{{"pad", std::string(200, 'x')}});
  log->Flush();
  EXPECT_FALSE(fs::exists(dir_ / "logs" / "audit-20231113T000000-0000.jsonl"));
  EXPECT_TRUE(fs::exists(dir_ / "logs" / "audit-20231114T221320-0000.jsonl"));
  EXPECT_TRUE(fs::exists(dir_ / "logs" / "audit-20231120T221320-0000.jsonl"));

  // 8 days after the first rotations: those go, the 6-day one stays.
  clock_.Advance(absl::Hours(24 * 2));
  log->Record("rerank", json{{"pad", std::string(200, 'x')}});
  log->Flush();
  log->Shutdown();
  EXPECT_FALSE(fs::exists(dir_ / "logs" / "audit-20231114T221320-0000.jsonl"));
  EXPECT_FALSE(fs::exists(dir_ / "logs" / "audit-20231114T221320-0001.jsonl"));
  EXPECT_TRUE(fs::exists(dir_ / "logs" / "audit-20231120T221320-0000.jsonl"));
  EXPECT_TRUE(fs::exists(dir_ / "logs" / "audit-20231122T221320-0000.jsonl"));
  EXPECT_TRUE(fs::exists(dir_ / "logs" / "audit-notes.jsonl"));
  EXPECT_TRUE(fs::exists(dir_ / "logs" / "other-20000101T000000-0.jsonl"));
  EXPECT_EQ(ParseLines(dir_ / "logs" / "audit.jsonl").size(), 1u);
}

TEST_F(AuditLogTest, RetentionZeroKeepsEverything) {
  fs::create_directories(dir_ / "logs");
  WriteFile(dir_ / "logs" / "audit-20000101T000000-0.jsonl", "{}\n");
  AuditLog::Options o = DefaultOptions();
  o.retention_days = 0;
  auto log = Make(o);
  log->Shutdown();
  EXPECT_TRUE(fs::exists(dir_ / "logs" / "audit-20000101T000000-0.jsonl"));
}

TEST_F(AuditLogTest, ConcurrentWritersLoseNothing) {
  AuditLog::Options o = DefaultOptions();
  o.queue_capacity = 100000;
  o.max_file_bytes = 64 * 1024;  // also rotate concurrently
  auto log = Make(o);
  constexpr int kThreads = 4;
  constexpr int kPerThread = 2500;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        log->Record("rerank", json{{"t", t}, {"i", i}, {"q", "query text \xe2\x9c\x93"}});
      }
    });
  }
  for (auto& th : threads) th.join();
  log->Shutdown();
  EXPECT_EQ(log->written(), static_cast<uint64_t>(kThreads * kPerThread));
  EXPECT_EQ(log->dropped(), 0u);
  EXPECT_EQ(log->failed(), 0u);
  std::set<std::pair<int, int>> seen;
  std::vector<int> last_i(kThreads, -1);
  std::vector<fs::path> all = RotatedFiles();
  EXPECT_GE(all.size(), 1u);
  all.push_back(dir_ / "logs" / "audit.jsonl");
  for (const fs::path& p : all) {
    for (const json& j : ParseLines(p)) {
      const int t = j["t"].get<int>();
      const int i = j["i"].get<int>();
      EXPECT_TRUE(seen.emplace(t, i).second) << "duplicate " << t << "/" << i;
      EXPECT_GT(i, last_i[t]);  // each thread's events stay in order
      last_i[t] = i;
    }
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(kThreads * kPerThread));
}

TEST_F(AuditLogTest, WriterThreadIsNamed) {
  auto log = Make(DefaultOptions());
  log->Record("startup", json::object());
  log->Flush();  // the writer has certainly run (and named itself) by now
  bool found = false;
  for (const auto& task : fs::directory_iterator("/proc/self/task")) {
    std::string comm = ReadFile(task.path() / "comm");
    if (comm == "audit-writer\n") found = true;
  }
  EXPECT_TRUE(found);
}

TEST(FakeAuditSinkTest, StoresEventsThreadSafely) {
  testing::FakeAuditSink sink;
  AuditSink* base = &sink;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([base, t] {
      for (int i = 0; i < 100; ++i) base->Record(t % 2 ? "rerank" : "flag_change", json{{"i", i}});
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(sink.size(), 400u);
  EXPECT_EQ(sink.EventsOfType("rerank").size(), 200u);
  EXPECT_EQ(sink.EventsOfType("flag_change").size(), 200u);
  EXPECT_TRUE(sink.events()[0].fields.contains("i"));
  sink.Clear();
  EXPECT_EQ(sink.size(), 0u);
}

}  // namespace
}  // namespace rerank

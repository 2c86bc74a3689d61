#include "common/flag_store.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_audit_sink.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/files.h"
#include "yaml-cpp/yaml.h"

namespace rerank {
namespace {

using testing::ReadFile;
using testing::WriteFile;

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using json = nlohmann::json;

FeatureFlags StageFlags(const std::string& stage, const FeatureFlags& base = FeatureFlags{}) {
  absl::StatusOr<FeatureFlags> f = ApplyStage(stage, base);
  EXPECT_TRUE(f.ok());
  return *f;
}

// ---------------------------------------------------------------- YAML / JSON helpers

TEST(FlagsYamlTest, RoundTrip) {
  FeatureFlags custom = StageFlags("full");
  custom.stage = "custom";
  custom.rate_limit_enabled = false;
  custom.rate_limit_per_minute = 12345;
  custom.overfetch_candidates = 1000;
  custom.overfetch_top_n = 1000;
  for (const FeatureFlags& f : {FeatureFlags{}, StageFlags("cache-10"), StageFlags("full"),
                                StageFlags("rollback"), StageFlags("disabled"), custom}) {
    const FlagsMetadata meta{"alice@example.com", "2024-05-01T12:00:00.123Z"};
    const std::string yaml = FlagsToYaml(f, meta);
    FlagsMetadata parsed_meta;
    absl::StatusOr<FeatureFlags> parsed = ParseFlagsYaml(yaml, "flags.yaml", &parsed_meta);
    ASSERT_TRUE(parsed.ok()) << parsed.status() << "\n" << yaml;
    EXPECT_EQ(*parsed, f) << yaml;
    EXPECT_EQ(parsed_meta, meta);
  }
}

TEST(FlagsYamlTest, WritesTheDocumentedSchema) {
  const std::string yaml = FlagsToYaml(StageFlags("full"), {"bob", "t"});
  YAML::Node root = YAML::Load(yaml);  // plain yaml-cpp, independent of our parser
  EXPECT_EQ(root["stage"].as<std::string>(), "full");
  EXPECT_TRUE(root["reranker"]["enabled"].as<bool>());
  EXPECT_TRUE(root["cache"]["enabled"].as<bool>());
  EXPECT_EQ(root["cache"]["traffic_percent"].as<int>(), 100);
  EXPECT_EQ(root["cache"]["max_entries"].as<int>(), 1000);
  EXPECT_TRUE(root["batch"]["enabled"].as<bool>());
  EXPECT_TRUE(root["audit"]["enabled"].as<bool>());
  EXPECT_TRUE(root["overfetch"]["enabled"].as<bool>());
  EXPECT_EQ(root["overfetch"]["candidates"].as<int>(), 20);
  EXPECT_EQ(root["overfetch"]["top_n"].as<int>(), 5);
  EXPECT_TRUE(root["rate_limit"]["enabled"].as<bool>());
  EXPECT_EQ(root["rate_limit"]["per_minute"].as<int>(), 100);
  EXPECT_EQ(root["updated_by"].as<std::string>(), "bob");
  EXPECT_EQ(root["updated_at"].as<std::string>(), "t");
  EXPECT_EQ(root.size(), 9u);
}

TEST(FlagsYamlTest, HostileMetadataStillRoundTrips) {
  const FlagsMetadata meta{"eve\"\n: [x] #\t{y} 'z' caf\xc3\xa9 \xff", "2024"};
  FlagsMetadata parsed_meta;
  absl::StatusOr<FeatureFlags> parsed =
      ParseFlagsYaml(FlagsToYaml(FeatureFlags{}, meta), "f", &parsed_meta);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, FeatureFlags{});
  // Control characters and invalid UTF-8 are replaced; everything else is kept.
  EXPECT_EQ(parsed_meta.updated_by, "eve\" : [x] # {y} 'z' caf\xc3\xa9 ?");
}

TEST(FlagsYamlTest, MissingKeysTakeDefaults) {
  absl::StatusOr<FeatureFlags> f = ParseFlagsYaml(
      "stage: cache-10\ncache:\n  enabled: true\n"
      "  traffic_percent: 10\n");
  ASSERT_TRUE(f.ok()) << f.status();
  FeatureFlags expected;
  expected.stage = "cache-10";
  expected.cache_enabled = true;
  expected.cache_traffic_percent = 10;
  EXPECT_EQ(*f, expected);
  // Flow style and capitalized booleans are fine.
  f = ParseFlagsYaml("cache: {enabled: True, max_entries: 5}\nreranker: {enabled: FALSE}\n");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_TRUE(f->cache_enabled);
  EXPECT_EQ(f->cache_max_entries, 5u);
  EXPECT_FALSE(f->reranker_enabled);
}

TEST(FlagsYamlTest, StrictErrorsNameTheKey) {
  struct Case {
    std::string yaml;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"cache:\n  traffic_percent: 150\n",
       "flags.yaml: cache.traffic_percent: must be 0..100, got 150"},
      {"stage: full\nfoo: 1\n", "flags.yaml: foo: unknown key"},
      {"cache:\n  size: 5\n", "flags.yaml: cache.size: unknown key"},
      {"cache:\n  enabled: 5\n", "cache.enabled: must be true or false, got 5"},
      {"cache:\n  enabled: yes\n", "cache.enabled: must be true or false, got 'yes'"},
      {"cache:\n  enabled: on\n", "cache.enabled: must be true or false, got 'on'"},
      {"cache:\n  enabled: 'true'\n",
       "cache.enabled: must be true or false, got 'true' (quoted: a string)"},
      {"cache:\n  enabled: !!bool true\n", "cache.enabled: must be true or false, got 'true'"},
      {"cache:\n  enabled: [true]\n", "cache.enabled: must be true or false, got a list"},
      {"cache:\n  enabled:\n", "cache.enabled: must be true or false, got null"},
      {"cache:\n  traffic_percent: '10'\n",
       "cache.traffic_percent: must be a decimal integer in 0..100, got '10' (quoted: a string)"},
      {"cache:\n  traffic_percent: -1\n", "cache.traffic_percent: must be 0..100, got -1"},
      {"cache:\n  traffic_percent: 1.5\n",
       "cache.traffic_percent: must be a decimal integer in 0..100, got '1.5'"},
      {"cache:\n  traffic_percent: 010\n",
       "cache.traffic_percent: must be a decimal integer in 0..100, got '010'"},
      {"cache:\n  traffic_percent: +10\n",
       "cache.traffic_percent: must be a decimal integer in 0..100, got '+10'"},
      {"cache:\n  traffic_percent: 0x10\n",
       "cache.traffic_percent: must be a decimal integer in 0..100, got '0x10'"},
      {"cache:\n  traffic_percent:\n",
       "cache.traffic_percent: must be a decimal integer in 0..100, got null"},
      {"cache:\n  traffic_percent: {a: 1}\n",
       "cache.traffic_percent: must be a decimal integer in 0..100, got a map"},
      {"cache:\n  max_entries: 99999999999\n",
       "cache.max_entries: must be 1..10000000, got 99999999999"},
      {"cache:\n  max_entries: 99999999999999999999999\n",
       "cache.max_entries: must be a decimal integer in 1..10000000, got "
       "'99999999999999999999999'"},
      {"cache:\n  max_entries: 0\n", "cache.max_entries: must be 1.."},
      {"rate_limit:\n  per_minute: 0\n", "rate_limit.per_minute: must be 1..100000000, got 0"},
      {"overfetch:\n  candidates: 10\n  top_n: 11\n", "overfetch.top_n: must be 1..overfetch"},
      {"cache: true\n", "flags.yaml: cache: must be a map, got true"},
      {"cache.enabled: true\n", "flags.yaml: cache.enabled: unknown key"},
      {"stage: 5\n", "stage: must be a string, got 5"},
      {"reranker:\n", "reranker: must be a map"},
      {"stage: beta\n", "stage: must be one of"},
      {"stage: [full]\n", "stage: must be a string"},
      {"stage: full\nstage: rollback\n", "stage: duplicate key"},
      {"cache:\n  enabled: true\n  enabled: false\n", "cache.enabled: duplicate key"},
      {"", "flags.yaml: file is empty"},
      {"# only a comment\n", "file is empty"},
      {"- stage\n", "flags.yaml: top level: must be a map, got a list"},
      {"? [a]\n: 1\n", "top level: keys must be strings"},
      {"cache: [\n", "flags.yaml: invalid YAML"},
      {"updated_by: [a]\n", "updated_by: must be a string"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<FeatureFlags> f = ParseFlagsYaml(c.yaml, "flags.yaml");
    ASSERT_FALSE(f.ok()) << "accepted:\n" << c.yaml;
    EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument) << c.yaml;
    EXPECT_THAT(std::string(f.status().message()), HasSubstr(c.message)) << c.yaml;
  }
}

TEST(FlagsJsonTest, RoundTripAndShape) {
  const FeatureFlags full = StageFlags("full");
  const json j = FlagsToJson(full);
  EXPECT_EQ(j["stage"], "full");
  EXPECT_EQ(j["cache"]["traffic_percent"], 100);
  EXPECT_EQ(j["overfetch"]["top_n"], 5);
  EXPECT_EQ(j["rate_limit"]["per_minute"], 100);
  EXPECT_EQ(j.size(), 7u);  // stage + 6 sections
  absl::StatusOr<FeatureFlags> back = FlagsFromJson(j);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, full);
  // Through text too (numbers come back as unsigned).
  back = FlagsFromJson(json::parse(j.dump()));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, full);
}

TEST(FlagsJsonTest, PartialObjectIsAPatch) {
  const FeatureFlags base = StageFlags("full");
  absl::StatusOr<FeatureFlags> f = FlagsFromJson(
      json{{"stage", "custom"}, {"cache", {{"traffic_percent", 25}}}, {"updated_by", "x"}}, base);
  ASSERT_TRUE(f.ok()) << f.status();
  FeatureFlags expected = base;
  expected.stage = "custom";
  expected.cache_traffic_percent = 25;
  EXPECT_EQ(*f, expected);
  f = FlagsFromJson(json::object(), base);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(*f, base);
}

TEST(FlagsJsonTest, StrictErrorsNameTheKey) {
  struct Case {
    json j;
    std::string message;
  };
  const std::vector<Case> cases = {
      {json::array(), "must be a JSON object"},
      {json{{"cache", {{"traffic_percent", 150}}}},
       "cache.traffic_percent: must be 0..100, got 150"},
      {json{{"cache", {{"traffic_percent", -1}}}}, "cache.traffic_percent: must be 0..100, got -1"},
      {json{{"cache", {{"traffic_percent", 1.5}}}},
       "cache.traffic_percent: must be a decimal integer in 0..100, got 1.5"},
      {json{{"cache", {{"traffic_percent", "10"}}}},
       "cache.traffic_percent: must be a decimal integer in 0..100, got '10' (quoted: a string)"},
      {json{{"cache", {{"traffic_percent", 5000000000ull}}}},
       "cache.traffic_percent: must be 0..100, got 5000000000"},
      {json{{"cache", {{"enabled", 1}}}}, "cache.enabled: must be true or false, got 1"},
      {json{{"cache", {{"enabled", "true"}}}},
       "cache.enabled: must be true or false, got 'true' (quoted: a string)"},
      {json{{"cache", {{"bogus", true}}}}, "cache.bogus: unknown key"},
      {json{{"cache.enabled", true}}, "cache.enabled: unknown key"},
      {json{{"cache", true}}, "cache: must be a map, got true"},
      {json{{"bogus", 1}}, "bogus: unknown key"},
      {json{{"stage", 3}}, "stage: must be a string"},
      {json{{"stage", "beta"}}, "stage: must be one of"},
      {json{{"rate_limit", {{"per_minute", 0}}}}, "rate_limit.per_minute"},
      {json{{"overfetch", {{"top_n", 50}}}}, "overfetch.top_n"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<FeatureFlags> f = FlagsFromJson(c.j);
    ASSERT_FALSE(f.ok()) << c.j.dump();
    EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(f.status().message()), HasSubstr(c.message)) << c.j.dump();
  }
}

TEST(FlagsJsonTest, ChangedKeys) {
  EXPECT_TRUE(ChangedFlagKeys(FeatureFlags{}, FeatureFlags{}).empty());
  EXPECT_THAT(ChangedFlagKeys(FeatureFlags{}, StageFlags("cache-10")),
              ElementsAre("stage", "cache.enabled", "cache.traffic_percent"));
  EXPECT_THAT(ChangedFlagKeys(StageFlags("full"), StageFlags("rollback", StageFlags("full"))),
              ElementsAre("stage", "cache.enabled", "cache.traffic_percent", "batch.enabled",
                          "overfetch.enabled"));
}

// ---------------------------------------------------------------- FlagStore

class FlagStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           absl::StrCat("flag_store_test_", getpid(), "_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    path_ = dir_ / "conf" / "flags.yaml";
  }
  void TearDown() override { fs::remove_all(dir_); }

  FlagStore::Options DefaultOptions() {
    FlagStore::Options o;
    o.path = path_.string();
    o.poll_interval = absl::ZeroDuration();  // tests poll with CheckNow()
    return o;
  }
  std::unique_ptr<FlagStore> Make(FlagStore::Options o) {
    auto store = FlagStore::Create(std::move(o), &clock_, &audit_);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(store).value() : nullptr;
  }
  std::unique_ptr<FlagStore> Make() { return Make(DefaultOptions()); }
  // Records every notification.
  void Listen(FlagStore& store) {
    store.AddListener([this](const FeatureFlags& f) {
      absl::MutexLock lock(&notified_mu_);
      notified_.push_back(f);
    });
  }
  std::vector<FeatureFlags> Notified() {
    absl::MutexLock lock(&notified_mu_);
    return notified_;
  }
  std::vector<std::string> DirEntries() {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(path_.parent_path())) {
      out.push_back(e.path().filename().string());
    }
    return out;
  }

  fs::path dir_;
  fs::path path_;
  testing::FakeClock clock_;  // 2023-11-14T22:13:20Z
  testing::FakeAuditSink audit_;
  absl::Mutex notified_mu_;
  std::vector<FeatureFlags> notified_ ABSL_GUARDED_BY(notified_mu_);
};

TEST_F(FlagStoreTest, CreateValidatesOptions) {
  FlagStore::Options o = DefaultOptions();
  o.initial.cache_traffic_percent = 150;
  auto store = FlagStore::Create(o, &clock_, &audit_);
  ASSERT_FALSE(store.ok());
  EXPECT_THAT(std::string(store.status().message()),
              HasSubstr("initial.cache.traffic_percent: must be 0..100"));
  o = DefaultOptions();
  o.path = "";
  EXPECT_FALSE(FlagStore::Create(o, &clock_, &audit_).ok());
  o = DefaultOptions();
  o.poll_interval = absl::Seconds(-1);
  store = FlagStore::Create(o, &clock_, &audit_);
  ASSERT_FALSE(store.ok());
  EXPECT_THAT(std::string(store.status().message()), HasSubstr("poll_interval"));
  EXPECT_FALSE(FlagStore::Create(DefaultOptions(), nullptr, &audit_).ok());
  EXPECT_FALSE(fs::exists(path_));  // nothing written by a failed Create
}

TEST_F(FlagStoreTest, MissingFileIsCreatedFromInitial) {
  FlagStore::Options o = DefaultOptions();
  o.initial = StageFlags("cache-50");
  auto store = Make(o);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(*store->Current(), o.initial);
  ASSERT_TRUE(fs::exists(path_));
  FlagsMetadata meta;
  absl::StatusOr<FeatureFlags> on_disk = ParseFlagsYaml(ReadFile(path_), "f", &meta);
  ASSERT_TRUE(on_disk.ok()) << on_disk.status();
  EXPECT_EQ(*on_disk, o.initial);
  EXPECT_EQ(meta.updated_by, "initial");
  EXPECT_EQ(meta.updated_at, "2023-11-14T22:13:20.000Z");
  EXPECT_EQ(store->metadata(), meta);
  EXPECT_TRUE(store->last_error().ok());
  EXPECT_EQ(audit_.size(), 0u);  // loading is not a change
}

TEST_F(FlagStoreTest, ExistingFileWinsOverInitial) {
  fs::create_directories(path_.parent_path());
  WriteFile(path_, FlagsToYaml(StageFlags("full"), {"ops", "yesterday"}));
  FlagStore::Options o = DefaultOptions();
  o.initial = StageFlags("disabled");
  auto store = Make(o);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(*store->Current(), StageFlags("full"));
  EXPECT_EQ(store->metadata().updated_by, "ops");
}

TEST_F(FlagStoreTest, BadFileAtStartupIsAnError) {
  fs::create_directories(path_.parent_path());
  WriteFile(path_, "cache:\n  traffic_percent: 150\n");
  auto store = FlagStore::Create(DefaultOptions(), &clock_, &audit_);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(std::string(store.status().message()),
            path_.string() + ": cache.traffic_percent: must be 0..100, got 150");
}

TEST_F(FlagStoreTest, SetWritesAtomicallyAuditsAndNotifies) {
  auto store = Make();
  Listen(*store);
  const std::shared_ptr<const FeatureFlags> before = store->Current();
  struct stat st_before;
  ASSERT_EQ(stat(path_.c_str(), &st_before), 0);

  clock_.Advance(absl::Milliseconds(1500));
  FeatureFlags next = StageFlags("full");
  next.stage = "custom";
  next.rate_limit_per_minute = 500;
  ASSERT_TRUE(store->Set(next, "alice").ok());

  EXPECT_EQ(*store->Current(), next);
  EXPECT_EQ(*before, FeatureFlags{});  // old snapshots are immutable
  // The file holds the new flags and who/when.
  FlagsMetadata meta;
  absl::StatusOr<FeatureFlags> on_disk = ParseFlagsYaml(ReadFile(path_), "f", &meta);
  ASSERT_TRUE(on_disk.ok()) << on_disk.status();
  EXPECT_EQ(*on_disk, next);
  EXPECT_EQ(meta, (FlagsMetadata{"alice", "2023-11-14T22:13:21.500Z"}));
  EXPECT_EQ(store->metadata(), meta);
  // Replaced by rename (a new inode), and no temp file left behind.
  struct stat st_after;
  ASSERT_EQ(stat(path_.c_str(), &st_after), 0);
  EXPECT_NE(st_after.st_ino, st_before.st_ino);
  EXPECT_THAT(DirEntries(), ElementsAre("flags.yaml"));

  // Audit: old and new, actor, stage.
  const auto events = audit_.EventsOfType("flag_change");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].fields["actor"], "alice");
  EXPECT_EQ(events[0].fields["stage"], "custom");
  EXPECT_EQ(events[0].fields["old"], FlagsToJson(FeatureFlags{}));
  EXPECT_EQ(events[0].fields["new"], FlagsToJson(next));
  EXPECT_THAT(events[0].fields["changed"].get<std::vector<std::string>>(),
              ::testing::Contains("rate_limit.per_minute"));
  EXPECT_THAT(Notified(), ElementsAre(next));

  // Our own write is not mistaken for an external edit.
  absl::StatusOr<bool> changed = store->CheckNow();
  ASSERT_TRUE(changed.ok());
  EXPECT_FALSE(*changed);
  EXPECT_EQ(audit_.size(), 1u);
}

TEST_F(FlagStoreTest, InvalidOrNoOpSetChangesNothing) {
  auto store = Make();
  Listen(*store);
  const std::string file_before = ReadFile(path_);
  FeatureFlags bad;
  bad.overfetch_top_n = 50;
  absl::Status s = store->Set(bad, "alice");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("overfetch.top_n"));
  ASSERT_TRUE(store->Set(FeatureFlags{}, "alice").ok());  // same as current: no-op
  EXPECT_EQ(ReadFile(path_), file_before);
  EXPECT_EQ(audit_.size(), 0u);
  EXPECT_TRUE(Notified().empty());
}

TEST_F(FlagStoreTest, SetFailsCleanlyWhenTheFileCannotBeWritten) {
  auto store = Make();
  // Make the target a directory: the rename over it fails.
  fs::remove(path_);
  fs::create_directories(path_ / "blocker");
  absl::Status s = store->Set(StageFlags("full"), "alice");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(*store->Current(), FeatureFlags{});
  EXPECT_EQ(audit_.size(), 0u);
  std::vector<std::string> entries = DirEntries();
  EXPECT_THAT(entries, ElementsAre("flags.yaml"));  // the temp file was removed
}

TEST_F(FlagStoreTest, SurvivesRestart) {
  {
    auto store = Make();
    ASSERT_TRUE(store->SetStage("cache-10", "alice").ok());
    ASSERT_TRUE(store->SetStage("cache-50", "bob").ok());
  }
  FlagStore::Options o = DefaultOptions();
  o.initial = StageFlags("disabled");  // ignored: the file exists
  auto store = Make(o);
  EXPECT_EQ(*store->Current(), StageFlags("cache-50"));
  EXPECT_EQ(store->metadata().updated_by, "bob");
}

TEST_F(FlagStoreTest, SetStageWalksTheRollout) {
  auto store = Make();
  Listen(*store);
  FeatureFlags expected;
  for (const char* stage :
       {"cache-10", "cache-50", "cache-100", "full", "rollback", "disabled", "feature-flags"}) {
    ASSERT_TRUE(store->SetStage(stage, "ops").ok()) << stage;
    expected = StageFlags(stage, expected);
    EXPECT_EQ(*store->Current(), expected) << stage;
    absl::StatusOr<FeatureFlags> on_disk = ParseFlagsYaml(ReadFile(path_));
    ASSERT_TRUE(on_disk.ok());
    EXPECT_EQ(*on_disk, expected) << stage;
  }
  EXPECT_EQ(audit_.EventsOfType("flag_change").size(), 7u);
  EXPECT_EQ(Notified().size(), 7u);
  EXPECT_EQ(audit_.events()[4].fields["stage"], "rollback");
  EXPECT_EQ(audit_.events()[4].fields["old"]["stage"], "full");

  absl::Status s = store->SetStage("cache-75", "ops");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("cache-75"));
  EXPECT_EQ(*store->Current(), expected);
  EXPECT_EQ(audit_.size(), 7u);
}

TEST_F(FlagStoreTest, ExternalEditIsPickedUp) {
  auto store = Make();
  Listen(*store);
  FeatureFlags edited = StageFlags("cache-10");
  edited.rate_limit_per_minute = 42;
  WriteFile(path_, FlagsToYaml(edited, {"kubectl", "now"}));

  absl::StatusOr<bool> changed = store->CheckNow();
  ASSERT_TRUE(changed.ok()) << changed.status();
  EXPECT_TRUE(*changed);
  EXPECT_EQ(*store->Current(), edited);
  EXPECT_EQ(store->metadata().updated_by, "kubectl");
  EXPECT_THAT(Notified(), ElementsAre(edited));
  const auto events = audit_.EventsOfType("flag_change");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].fields["actor"], "file");
  EXPECT_EQ(events[0].fields["old"], FlagsToJson(FeatureFlags{}));
  EXPECT_EQ(events[0].fields["new"], FlagsToJson(edited));
  EXPECT_EQ(events[0].fields["stage"], "cache-10");

  // Polling again without a change does nothing.
  changed = store->CheckNow();
  ASSERT_TRUE(changed.ok());
  EXPECT_FALSE(*changed);
  EXPECT_EQ(Notified().size(), 1u);

  // An edit of the metadata only (same flags) is not a flag change.
  WriteFile(path_, FlagsToYaml(edited, {"someone-else", "later"}));
  changed = store->CheckNow();
  ASSERT_TRUE(changed.ok());
  EXPECT_FALSE(*changed);
  EXPECT_EQ(store->metadata().updated_by, "someone-else");
  EXPECT_EQ(audit_.size(), 1u);

  // A hand-written minimal file (no metadata, defaults for the rest) works too.
  WriteFile(path_, "stage: disabled\nreranker:\n  enabled: false\n");
  changed = store->CheckNow();
  ASSERT_TRUE(changed.ok()) << changed.status();
  EXPECT_TRUE(*changed);
  EXPECT_FALSE(store->Current()->reranker_enabled);
  EXPECT_EQ(store->Current()->rate_limit_per_minute, 100u);  // default, not the old 42
}

TEST_F(FlagStoreTest, BadExternalEditKeepsLastGoodFlags) {
  auto store = Make();
  ASSERT_TRUE(store->SetStage("full", "ops").ok());
  Listen(*store);
  audit_.Clear();
  const FeatureFlags good = *store->Current();

  WriteFile(path_, "stage: full\ncache:\n  traffic_percent: 150\n");
  absl::StatusOr<bool> changed = store->CheckNow();
  ASSERT_FALSE(changed.ok());
  EXPECT_THAT(std::string(changed.status().message()),
              HasSubstr("flags.yaml: cache.traffic_percent: must be 0..100, got 150"));
  EXPECT_EQ(*store->Current(), good);
  EXPECT_EQ(store->last_error(), changed.status());
  EXPECT_TRUE(Notified().empty());
  EXPECT_EQ(audit_.size(), 0u);
  // Still bad on the next poll (reported, not re-applied).
  EXPECT_FALSE(store->CheckNow().ok());
  EXPECT_EQ(*store->Current(), good);

  // A half-written file (truncated mid-way) is also rejected.
  WriteFile(path_, "stage: full\ncache:\n  enabled: tr");
  EXPECT_FALSE(store->CheckNow().ok());
  EXPECT_EQ(*store->Current(), good);

  // The file disappearing keeps the flags too.
  fs::remove(path_);
  changed = store->CheckNow();
  ASSERT_FALSE(changed.ok());
  EXPECT_EQ(changed.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(*store->Current(), good);

  // Fixing the file applies it and clears the error.
  WriteFile(path_, FlagsToYaml(StageFlags("rollback", good)));
  changed = store->CheckNow();
  ASSERT_TRUE(changed.ok()) << changed.status();
  EXPECT_TRUE(*changed);
  EXPECT_TRUE(store->last_error().ok());
  EXPECT_EQ(*store->Current(), StageFlags("rollback", good));
  ASSERT_EQ(audit_.size(), 1u);
  EXPECT_EQ(audit_.events()[0].fields["old"], FlagsToJson(good));
}

TEST_F(FlagStoreTest, WatcherThreadAppliesExternalEdits) {
  FlagStore::Options o = DefaultOptions();
  o.poll_interval = absl::Milliseconds(5);
  auto store = Make(o);
  absl::Notification seen;
  store->AddListener([&](const FeatureFlags& f) {
    if (f.stage == "cache-100" && !seen.HasBeenNotified()) seen.Notify();
  });
  WriteFile(path_, FlagsToYaml(StageFlags("cache-100")));
  // Waiting for an asynchronous event (not timing logic): generous deadline.
  ASSERT_TRUE(seen.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_EQ(store->Current()->stage, "cache-100");
  EXPECT_EQ(audit_.EventsOfType("flag_change").at(0).fields["actor"], "file");
  // The watcher has run (and named itself) by now.
  bool named = false;
  for (const auto& task : fs::directory_iterator("/proc/self/task")) {
    if (ReadFile(task.path() / "comm") == "flag-watcher\n") named = true;
  }
  EXPECT_TRUE(named);
  store->Stop();
  store->Stop();  // idempotent
  // Set still works without the watcher.
  EXPECT_TRUE(store->SetStage("full", "ops").ok());
  EXPECT_EQ(store->Current()->stage, "full");
}

TEST_F(FlagStoreTest, ConcurrentChangesStayConsistent) {
  auto store = Make();
  Listen(*store);
  std::atomic<bool> stop{false};
  std::thread reader([&] {
    while (!stop) {
      auto f = store->Current();
      ASSERT_NE(f, nullptr);
      ASSERT_TRUE(ValidateFlags(*f).ok());
    }
  });
  std::vector<std::thread> writers;
  for (int t = 0; t < 4; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        const std::string& stage = StageNames()[(t + i) % StageNames().size()];
        ASSERT_TRUE(store->SetStage(stage, "writer-" + std::to_string(t)).ok());
        if (i % 5 == 0) store->CheckNow().IgnoreError();
      }
    });
  }
  for (auto& w : writers) w.join();
  stop = true;
  reader.join();
  // The file, the snapshot and the last notification agree; every change was audited and
  // notified exactly once, in the same order.
  absl::StatusOr<FeatureFlags> on_disk = ParseFlagsYaml(ReadFile(path_));
  ASSERT_TRUE(on_disk.ok());
  EXPECT_EQ(*on_disk, *store->Current());
  const std::vector<FeatureFlags> notified = Notified();
  const auto events = audit_.EventsOfType("flag_change");
  ASSERT_EQ(notified.size(), events.size());
  ASSERT_FALSE(notified.empty());
  EXPECT_EQ(notified.back(), *store->Current());
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].fields["new"], FlagsToJson(notified[i]));
    if (i > 0) {
      EXPECT_EQ(events[i].fields["old"], events[i - 1].fields["new"]);
    }
  }
  EXPECT_THAT(DirEntries(), ElementsAre("flags.yaml"));
}

}  // namespace
}  // namespace rerank

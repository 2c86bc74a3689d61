#include "common/flags_codec.h"

#include <functional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "yaml-cpp/yaml.h"

namespace rerank {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using json = nlohmann::json;

// `base` with field `f` set to a valid value different from base's, and that value as the text
// a YAML file or an environment variable would hold.
FeatureFlags Mutated(const FlagField& f, const FeatureFlags& base, std::string* text) {
  FeatureFlags out = base;
  switch (f.type) {
    case FlagField::Type::kString:
      out.*f.string_member = base.*f.string_member == "custom" ? "full" : "custom";
      *text = out.*f.string_member;
      break;
    case FlagField::Type::kBool:
      out.*f.bool_member = !(base.*f.bool_member);
      *text = out.*f.bool_member ? "true" : "false";
      break;
    case FlagField::Type::kUint32:
      // Candidates must stay >= top_n (20 by default), so move up rather than down.
      out.*f.uint_member = base.*f.uint_member < f.max ? base.*f.uint_member + 1 : f.min;
      *text = std::to_string(out.*f.uint_member);
      break;
  }
  return out;
}

// Each field of the table reaches its FeatureFlags member, and back, through every format.
TEST(FlagsCodecTest, EveryFieldRoundTripsThroughEveryFormat) {
  const FeatureFlags base;
  ASSERT_FALSE(FlagFields().empty());
  for (const FlagField& field : FlagFields()) {
    SCOPED_TRACE(field.key);
    std::string text;
    const FeatureFlags changed = Mutated(field, base, &text);
    ASSERT_NE(changed, base) << "FeatureFlags::operator== ignores the field";
    ASSERT_TRUE(ValidateFlags(changed).ok()) << ValidateFlags(changed);
    EXPECT_THAT(ChangedFlagKeys(base, changed), ElementsAre(field.key));

    absl::StatusOr<FeatureFlags> from_json = FlagsFromJson(FlagsToJson(changed));
    ASSERT_TRUE(from_json.ok()) << from_json.status();
    EXPECT_EQ(*from_json, changed);
    from_json = FlagsFromJson(json::parse(FlagsToJson(changed).dump()));
    ASSERT_TRUE(from_json.ok()) << from_json.status();
    EXPECT_EQ(*from_json, changed);

    absl::StatusOr<FeatureFlags> from_yaml = ParseFlagsYaml(FlagsToYaml(changed));
    ASSERT_TRUE(from_yaml.ok()) << from_yaml.status();
    EXPECT_EQ(*from_yaml, changed);

    FeatureFlags from_text = base;
    ASSERT_TRUE(SetFlagFromText(field.key, text, field.key, &from_text).ok());
    EXPECT_EQ(from_text, changed);

    // The dotted key is the nesting: "cache.enabled" is json["cache"]["enabled"].
    const json j = FlagsToJson(changed);
    std::string pointer = "/" + std::string(field.key);
    for (char& c : pointer) c = c == '.' ? '/' : c;
    ASSERT_TRUE(j.contains(json::json_pointer(pointer))) << j.dump();
    // A single-key patch changes that field only.
    FeatureFlags patched = base;
    json patch = json::object();
    patch[json::json_pointer(pointer)] = j[json::json_pointer(pointer)];
    ASSERT_TRUE(ApplyFlagsJson(patch, "", FlagsMetadataKeys::kReject, &patched, nullptr).ok());
    EXPECT_EQ(patched, changed) << patch.dump();
  }
}

// The other direction: every member of FeatureFlags has a table entry (a member missing from the
// table would be silently dropped by every format). Keep in step with FeatureFlags, like
// FeatureFlagsTest.EqualityComparesEveryField.
TEST(FlagsCodecTest, TableCoversEveryMember) {
  const std::vector<std::function<void(FeatureFlags&)>> mutations = {
      [](FeatureFlags& f) { f.stage = "full"; },
      [](FeatureFlags& f) { f.reranker_enabled = !f.reranker_enabled; },
      [](FeatureFlags& f) { f.cache_enabled = !f.cache_enabled; },
      [](FeatureFlags& f) { f.cache_traffic_percent += 1; },
      [](FeatureFlags& f) { f.cache_max_entries += 1; },
      [](FeatureFlags& f) { f.batch_enabled = !f.batch_enabled; },
      [](FeatureFlags& f) { f.audit_enabled = !f.audit_enabled; },
      [](FeatureFlags& f) { f.overfetch_enabled = !f.overfetch_enabled; },
      [](FeatureFlags& f) { f.overfetch_candidates += 1; },
      [](FeatureFlags& f) { f.overfetch_top_n += 1; },
      [](FeatureFlags& f) { f.rate_limit_enabled = !f.rate_limit_enabled; },
      [](FeatureFlags& f) { f.rate_limit_per_minute += 1; },
  };
  EXPECT_EQ(FlagFields().size(), mutations.size());
  for (size_t i = 0; i < mutations.size(); ++i) {
    FeatureFlags f;
    mutations[i](f);
    EXPECT_EQ(ChangedFlagKeys(FeatureFlags{}, f).size(), 1u) << "mutation " << i;
    absl::StatusOr<FeatureFlags> back = FlagsFromJson(FlagsToJson(f));
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, f) << "mutation " << i;
  }
}

TEST(FlagsCodecTest, OneShapeForJsonAndYaml) {
  const json expected = json::parse(R"({
    "stage": "feature-flags",
    "reranker": {"enabled": true},
    "cache": {"enabled": false, "traffic_percent": 0, "max_entries": 1000},
    "batch": {"enabled": true},
    "audit": {"enabled": true},
    "overfetch": {"enabled": false, "candidates": 20, "top_n": 5},
    "rate_limit": {"enabled": true, "per_minute": 100}
  })");
  EXPECT_EQ(FlagsToJson(FeatureFlags{}), expected);
  // The YAML file is the same tree plus metadata, keys in table order (stage first).
  const std::string yaml = FlagsToYaml(FeatureFlags{}, {"bob", "t"});
  YAML::Node root = YAML::Load(yaml);
  std::vector<std::string> top;
  for (const auto& kv : root) top.push_back(kv.first.as<std::string>());
  EXPECT_THAT(top, ElementsAre("stage", "reranker", "cache", "batch", "audit", "overfetch",
                               "rate_limit", "updated_by", "updated_at"));
  for (const auto& [section, value] : expected.items()) {
    if (!value.is_object()) continue;
    for (const auto& [key, v] : value.items()) {
      ASSERT_TRUE(root[section][key].IsScalar()) << section << "." << key;
      EXPECT_EQ(root[section][key].Scalar(), v.dump()) << section << "." << key;
    }
  }
}

// The same bad value gets the same error from the file, the admin JSON and a variable.
TEST(FlagsCodecTest, SameRulesInEveryFormat) {
  struct Case {
    std::string key;
    std::string yaml;  // the value as written in YAML (and, unquoted, in a variable)
    json json_value;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"cache.enabled", "yes", "yes", "cache.enabled: must be true or false, got 'yes'"},
      {"cache.enabled", "off", "off", "cache.enabled: must be true or false, got 'off'"},
      {"cache.enabled", "1", 1, "cache.enabled: must be true or false, got 1"},
      {"cache.traffic_percent", "150", 150, "cache.traffic_percent: must be 0..100, got 150"},
      {"cache.traffic_percent", "-1", -1, "cache.traffic_percent: must be 0..100, got -1"},
      {"cache.traffic_percent", "12abc", "12abc",
       "cache.traffic_percent: must be a decimal integer in 0..100, got '12abc'"},
      {"cache.traffic_percent", "true", true,
       "cache.traffic_percent: must be a decimal integer in 0..100, got true"},
      {"rate_limit.per_minute", "0", 0, "rate_limit.per_minute: must be 1..100000000, got 0"},
      {"overfetch.candidates", "1001", 1001, "overfetch.candidates: must be 1..1000, got 1001"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.key + " = " + c.yaml);
    const size_t dot = c.key.find('.');
    const std::string section = c.key.substr(0, dot), name = c.key.substr(dot + 1);

    absl::StatusOr<FeatureFlags> file =
        ParseFlagsYaml(section + ":\n  " + name + ": " + c.yaml + "\n", "f.yaml");
    ASSERT_FALSE(file.ok());
    EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(file.status().message(), "f.yaml: " + c.message);

    absl::StatusOr<FeatureFlags> patch = FlagsFromJson(json{{section, {{name, c.json_value}}}});
    ASSERT_FALSE(patch.ok());
    EXPECT_EQ(patch.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(patch.status().message(), c.message);

    FeatureFlags flags;
    absl::Status text = SetFlagFromText(c.key, " " + c.yaml + " ", c.key, &flags);
    EXPECT_EQ(text.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(text.message(), c.message);
    EXPECT_EQ(flags, FeatureFlags{}) << "a rejected value is not stored";
  }
}

TEST(FlagsCodecTest, BooleansInAnyCaseAreBooleans) {
  for (const char* t : {"true", "True", "TRUE"}) {
    absl::StatusOr<FeatureFlags> f = ParseFlagsYaml(std::string("cache: {enabled: ") + t + "}\n");
    ASSERT_TRUE(f.ok()) << t << ": " << f.status();
    EXPECT_TRUE(f->cache_enabled);
    FeatureFlags g;
    ASSERT_TRUE(SetFlagFromText("cache.enabled", t, "X", &g).ok());
    EXPECT_TRUE(g.cache_enabled);
  }
}

TEST(FlagsCodecTest, MetadataKeysPerPlace) {
  const json doc = {
      {"updated_by", "alice"}, {"updated_at", "2024"}, {"batch", {{"enabled", false}}}};
  FeatureFlags flags;
  FlagsMetadata meta;
  ASSERT_TRUE(ApplyFlagsJson(doc, "", FlagsMetadataKeys::kRead, &flags, &meta).ok());
  EXPECT_EQ(meta, (FlagsMetadata{"alice", "2024"}));
  EXPECT_FALSE(flags.batch_enabled);

  flags = FeatureFlags{};
  ASSERT_TRUE(ApplyFlagsJson(doc, "", FlagsMetadataKeys::kIgnore, &flags, nullptr).ok());
  EXPECT_FALSE(flags.batch_enabled);

  flags = FeatureFlags{};
  absl::Status s =
      ApplyFlagsJson(doc, "flags.initial", FlagsMetadataKeys::kReject, &flags, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "flags.initial.updated_at: unknown key");
  // Metadata is top-level only.
  s = ApplyFlagsJson(json{{"cache", {{"updated_by", "x"}}}}, "", FlagsMetadataKeys::kRead, &flags,
                     &meta);
  EXPECT_EQ(s.message(), "cache.updated_by: unknown key");
}

TEST(FlagsCodecTest, PrefixNamesTheWholeKey) {
  FeatureFlags flags;
  absl::Status s = ApplyFlagsYaml(YAML::Load("cache: {traffic_percent: 101}"), "flags.initial",
                                  FlagsMetadataKeys::kReject, &flags, nullptr);
  EXPECT_EQ(s.message(), "flags.initial.cache.traffic_percent: must be 0..100, got 101");
  s = ApplyFlagsYaml(YAML::Load("cache: {enabled: true}\ncache: {enabled: false}"), "flags.initial",
                     FlagsMetadataKeys::kReject, &flags, nullptr);
  EXPECT_EQ(s.message(), "flags.initial.cache: duplicate key");
  s = ApplyFlagsYaml(YAML::Load("- 1"), "flags.initial", FlagsMetadataKeys::kReject, &flags,
                     nullptr);
  EXPECT_EQ(s.message(), "flags.initial: must be a map, got a list");
  EXPECT_EQ(SetFlagFromText("cache.size", "1", "X (from $Y)", &flags).message(),
            "X (from $Y): unknown key");
}

// A patch keeps what it does not mention, and does not validate across fields until asked.
TEST(FlagsCodecTest, ApplyIsAPatch) {
  FeatureFlags flags;
  flags.rate_limit_per_minute = 7;
  ASSERT_TRUE(ApplyFlagsYaml(YAML::Load("overfetch: {top_n: 50}"), "", FlagsMetadataKeys::kReject,
                             &flags, nullptr)
                  .ok());
  EXPECT_EQ(flags.overfetch_top_n, 50u);
  EXPECT_EQ(flags.rate_limit_per_minute, 7u);
  EXPECT_THAT(std::string(ValidateFlags(flags).message()),
              HasSubstr("overfetch.top_n: must be 1..overfetch.candidates (20), got 50"));
  // FlagsFromJson does validate.
  EXPECT_THAT(std::string(FlagsFromJson(json{{"overfetch", {{"top_n", 50}}}}).status().message()),
              HasSubstr("overfetch.top_n: must be 1..overfetch.candidates"));
}

TEST(FlagsCodecTest, LongBadValuesAreCutInErrors) {
  const std::string huge(10000, 'x');
  absl::StatusOr<FeatureFlags> f = FlagsFromJson(json{{"cache", {{"enabled", huge}}}});
  ASSERT_FALSE(f.ok());
  EXPECT_LT(f.status().message().size(), 200u);
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("xxx...'"));
}

}  // namespace
}  // namespace rerank

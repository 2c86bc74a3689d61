#include "common/config.h"

#include <algorithm>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/files.h"
#include "yaml-cpp/yaml.h"

namespace rerank {
namespace {

using testing::ReadFile;

using ::testing::HasSubstr;
using ::testing::IsEmpty;

EnvLookup Env(std::map<std::string, std::string> vars) {
  return [vars](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

// Every leaf key of a YAML document, dotted ("server.listen", "flags.initial.cache.enabled").
void LeafKeys(const YAML::Node& node, const std::string& prefix, std::set<std::string>* out) {
  if (!node.IsMap()) {
    out->insert(prefix);
    return;
  }
  for (const auto& kv : node) {
    const std::string name = kv.first.as<std::string>();
    LeafKeys(kv.second, prefix.empty() ? name : prefix + "." + name, out);
  }
}

std::set<std::string> KeysOf(const std::map<std::string, std::string>& m) {
  std::set<std::string> keys;
  for (const auto& [k, v] : m) keys.insert(k);
  return keys;
}

// The documented example must list every key the parser knows, each with its built-in default
// (docs cannot drift): a key missing from the file, or a new Config field nobody documented,
// fails here.
TEST(ConfigTest, ExampleFileEqualsDefaults) {
  const std::string text = ReadFile("deploy/rerankd.example.yaml");
  ASSERT_FALSE(text.empty());
  const Config default_config;  // a named object: GCC 12 misreports a temporary as uninitialized
  const std::map<std::string, std::string> defaults = FlattenConfig(default_config);
  std::set<std::string> documented;
  LeafKeys(YAML::Load(text), "", &documented);
  const std::set<std::string> known = KeysOf(defaults);
  std::vector<std::string> missing, unknown;
  std::set_difference(known.begin(), known.end(), documented.begin(), documented.end(),
                      std::back_inserter(missing));
  std::set_difference(documented.begin(), documented.end(), known.begin(), known.end(),
                      std::back_inserter(unknown));
  EXPECT_THAT(missing, IsEmpty()) << "keys the example file does not document";
  EXPECT_THAT(unknown, IsEmpty()) << "keys in the example file that the parser does not know";
  auto parsed = ParseConfigYaml(text);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(FlattenConfig(*parsed), defaults);
  EXPECT_TRUE(ValidateConfig(*parsed, 2).ok());
}

// FlattenConfig is what the test above trusts: it must see every field of every section, and
// every key it lists must be one the parser accepts (and sets).
TEST(ConfigTest, FlattenConfigCoversEveryKey) {
  const Config default_config;  // a named object: GCC 12 misreports a temporary as uninitialized
  const std::map<std::string, std::string> defaults = FlattenConfig(default_config);
  for (const char* key :
       {"server.listen", "model.warmup", "execution.max_queue_pairs", "rerank.target_latency_ms",
        "cache.max_bytes", "audit.include_query_text", "flags.poll_interval_ms",
        "flags.initial.stage", "flags.initial.cache.max_entries",
        "flags.initial.rate_limit.per_minute", "admin.stats_window_seconds", "logging.level"}) {
    EXPECT_EQ(defaults.count(key), 1u) << key;
  }
  EXPECT_EQ(defaults.count("cache.max_entries"), 0u) << "dead key: the flag is the entry bound";
  EXPECT_EQ(defaults.at("flags.initial.cache.max_entries"), "1000");
  EXPECT_EQ(defaults.at("model.precision"), "\"bf16\"");
  // Each key, written back as YAML with a value the parser takes, parses and changes exactly it.
  for (const auto& [key, value] : defaults) {
    std::string changed;
    if (value == "true" || value == "false") {
      changed = value == "true" ? "false" : "true";
    } else if (!value.empty() && value[0] == '"') {
      if (key == "flags.initial.stage") {
        changed = "\"custom\"";
      } else {
        changed = "\"x\"";
      }
    } else {
      changed = std::to_string(std::stoull(value) + 1);
    }
    std::string yaml;
    std::string indent;
    size_t start = 0;
    for (size_t dot = key.find('.'); dot != std::string::npos; dot = key.find('.', start)) {
      yaml += indent + key.substr(start, dot - start) + ":\n";
      indent += "  ";
      start = dot + 1;
    }
    yaml += indent + key.substr(start) + ": " + changed + "\n";
    absl::StatusOr<Config> c = ParseConfigYaml(yaml);
    ASSERT_TRUE(c.ok()) << c.status() << "\n" << yaml;
    std::map<std::string, std::string> expected = defaults;
    expected[key] = changed;
    EXPECT_EQ(FlattenConfig(*c), expected) << yaml;
  }
}

TEST(ConfigTest, UnknownKeysAndWrongTypesNameTheKey) {
  auto a = ParseConfigYaml("execution:\n  workerz: 2\n");
  EXPECT_THAT(a.status().message(), HasSubstr("execution.workerz: unknown key"));
  auto b = ParseConfigYaml("execution:\n  workers: two\n");
  EXPECT_THAT(b.status().message(),
              HasSubstr("execution.workers: expected a non-negative integer"));
  auto c = ParseConfigYaml("model:\n  warmup: maybe\n");
  EXPECT_THAT(c.status().message(), HasSubstr("model.warmup: expected a boolean"));
  auto d = ParseConfigYaml("bogus: 1\n");
  EXPECT_THAT(d.status().message(), HasSubstr("bogus: unknown key"));
  auto e = ParseConfigYaml("model: [1, 2]\n");
  EXPECT_THAT(e.status().message(), HasSubstr("model: expected a mapping"));
  auto f = ParseConfigYaml("model:\n  dir: [a]\n");
  EXPECT_THAT(f.status().message(), HasSubstr("model.dir: expected a scalar"));
  auto g = ParseConfigYaml("model: {precision: \"fp32\"");
  EXPECT_THAT(g.status().message(), HasSubstr("invalid YAML"));
}

TEST(ConfigTest, ValidationNamesTheKey) {
  Config c;
  c.model.precision = "fp16";
  EXPECT_THAT(ValidateConfig(c, 0).message(), HasSubstr("model.precision: must be one of"));
  c = Config();
  c.execution.workers = 0;
  EXPECT_THAT(ValidateConfig(c, 0).message(), HasSubstr("execution.workers: must be >= 1"));
  c = Config();
  c.execution.workers = 2;
  c.execution.intra_op_threads = 2;
  EXPECT_THAT(ValidateConfig(c, 2).message(), HasSubstr("exceeds the 2 cores"));
  EXPECT_TRUE(ValidateConfig(c, 4).ok());
  c = Config();
  c.flags.initial.cache_traffic_percent = 150;
  EXPECT_EQ(ValidateConfig(c, 0).message(),
            "flags.initial.cache.traffic_percent: must be 0..100, got 150");
  c = Config();
  c.flags.initial.overfetch_top_n = 30;
  EXPECT_THAT(ValidateConfig(c, 0).message(),
              HasSubstr("flags.initial.overfetch.top_n: must be 1..overfetch.candidates (20)"));
  c = Config();
  c.rerank.long_document_mode = "split";
  EXPECT_THAT(ValidateConfig(c, 0).message(), HasSubstr("rerank.long_document_mode"));
}

TEST(ConfigTest, EnvironmentOverridesTheFile) {
  const std::string path = ::testing::TempDir() + "/rerankd_config_test.yaml";
  std::ofstream(path) << "flags:\n  initial:\n    rate_limit: {per_minute: 7}\n"
                         "    reranker: {enabled: true}\n";
  auto c = LoadConfig(path, Env({{"ENABLE_RERANKER", "false"},
                                 {"RERANKER_CACHE_ENABLED", "true"},
                                 {"RERANKER_RATE_LIMIT_PER_MINUTE", "250"},
                                 {"RERANKER_MODEL_DIR", "/models/x"}}));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->flags.initial.reranker_enabled);
  EXPECT_TRUE(c->flags.initial.cache_enabled);
  EXPECT_EQ(c->flags.initial.rate_limit_per_minute, 250u);
  EXPECT_EQ(c->model.dir, "/models/x");
  auto bad = LoadConfig(path, Env({{"RERANKER_RATE_LIMIT_PER_MINUTE", "lots"}}));
  EXPECT_THAT(bad.status().message(), HasSubstr("flags.initial.rate_limit.per_minute (from "
                                                "$RERANKER_RATE_LIMIT_PER_MINUTE)"));
  auto staged = LoadConfig("", Env({{"RERANKER_STAGE", "cache-50"}}));
  ASSERT_TRUE(staged.ok()) << staged.status();
  EXPECT_EQ(staged->flags.initial.stage, "cache-50");
  EXPECT_TRUE(staged->flags.initial.cache_enabled);
  EXPECT_EQ(staged->flags.initial.cache_traffic_percent, 50u);
  EXPECT_THAT(LoadConfig("", Env({{"RERANKER_STAGE", "cache-42"}})).status().message(),
              HasSubstr("RERANKER_STAGE"));
  EXPECT_EQ(LoadConfig("/nonexistent.yaml", Env({})).status().code(), absl::StatusCode::kNotFound);
}

// flags.initial is a flags document: the flags file's keys and rules, errors naming the full key.
TEST(ConfigTest, FlagsInitialUsesTheFlagsSchema) {
  auto ok = ParseConfigYaml(
      "flags:\n  initial:\n    stage: cache-10\n    cache: {enabled: TRUE, traffic_percent: 10}\n");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->flags.initial.stage, "cache-10");
  EXPECT_TRUE(ok->flags.initial.cache_enabled);
  EXPECT_EQ(ok->flags.initial.cache_traffic_percent, 10u);
  EXPECT_EQ(ok->flags.initial.cache_max_entries, FeatureFlags{}.cache_max_entries);
  struct Case {
    std::string initial;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"cache: {enabled: yes}", "flags.initial.cache.enabled: must be true or false, got 'yes'"},
      {"cache: {enabled: 1}", "flags.initial.cache.enabled: must be true or false, got 1"},
      {"cache: {enabled: 'true'}", "flags.initial.cache.enabled: must be true or false"},
      {"cache: {traffic_percent: 150}",
       "flags.initial.cache.traffic_percent: must be 0..100, got 150"},
      {"cache: {traffic_percent: '5'}", "flags.initial.cache.traffic_percent: must be a decimal"},
      {"cache: {max_entries: 0}", "flags.initial.cache.max_entries: must be 1..10000000, got 0"},
      {"cache: {size: 5}", "flags.initial.cache.size: unknown key"},
      {"cache_enabled: true", "flags.initial.cache_enabled: unknown key"},  // the old flat keys
      {"cache.enabled: true", "flags.initial.cache.enabled: unknown key"},
      {"updated_by: alice", "flags.initial.updated_by: unknown key"},
      {"cache: true", "flags.initial.cache: must be a map"},
      {"stage: [full]", "flags.initial.stage: must be a string"},
      {"[1, 2]", "flags.initial: must be a map"},
      {"{cache: {enabled: true, enabled: false}}", "flags.initial.cache.enabled: duplicate key"},
  };
  for (const Case& c : cases) {
    const bool flow = c.initial[0] == '[' || c.initial[0] == '{';
    const std::string initial = flow ? c.initial : "{" + c.initial + "}";
    auto parsed = ParseConfigYaml("flags:\n  initial: " + initial + "\n");
    ASSERT_FALSE(parsed.ok()) << c.initial;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << c.initial;
    EXPECT_THAT(std::string(parsed.status().message()), HasSubstr(c.message)) << c.initial;
  }
}

TEST(ConfigTest, CacheMaxEntriesIsAFlagNotAConfigKey) {
  EXPECT_THAT(ParseConfigYaml("cache:\n  max_entries: 5\n").status().message(),
              HasSubstr("cache.max_entries: unknown key"));
  auto c = LoadConfig("", Env({{"RERANKER_CACHE_SIZE", "5000"}}));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->flags.initial.cache_max_entries, 5000u);
}

// Booleans are true/false (any case) in the config and in every variable, as in the flags.
TEST(ConfigTest, BooleansAreTrueOrFalseOnly) {
  for (const char* yes : {"true", "TRUE", " True "}) {
    auto c = LoadConfig("", Env({{"RERANKER_CACHE_ENABLED", yes}}));
    ASSERT_TRUE(c.ok()) << yes << ": " << c.status();
    EXPECT_TRUE(c->flags.initial.cache_enabled) << yes;
  }
  for (const char* bad : {"1", "yes", "on", "0", "off", ""}) {
    auto c = LoadConfig("", Env({{"RERANKER_CACHE_ENABLED", bad}}));
    EXPECT_THAT(c.status().message(),
                HasSubstr("flags.initial.cache.enabled (from $RERANKER_CACHE_ENABLED): must be "
                          "true or false"))
        << bad;
  }
  EXPECT_THAT(ParseConfigYaml("model:\n  warmup: yes\n").status().message(),
              HasSubstr("model.warmup: expected a boolean"));
  EXPECT_THAT(LoadConfig("", Env({{"RERANKER_CACHE_SIZE", "0x10"}})).status().message(),
              HasSubstr("flags.initial.cache.max_entries (from $RERANKER_CACHE_SIZE): must be a "
                        "decimal integer"));
  EXPECT_THAT(LoadConfig("", Env({{"RERANKER_CACHE_TRAFFIC_PERCENT", "101"}})).status().message(),
              HasSubstr("flags.initial.cache.traffic_percent (from "
                        "$RERANKER_CACHE_TRAFFIC_PERCENT): must be 0..100, got 101"));
}

}  // namespace
}  // namespace rerank

#include "common/config.h"

#include <fstream>
#include <map>
#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/files.h"

namespace rerank {
namespace {

using testing::ReadFile;

using ::testing::HasSubstr;

EnvLookup Env(std::map<std::string, std::string> vars) {
  return [vars](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

// The documented example must be exactly the built-in defaults (docs cannot drift).
TEST(ConfigTest, ExampleFileEqualsDefaults) {
  std::string text = ReadFile("deploy/rerankd.example.yaml");
  ASSERT_FALSE(text.empty());
  auto parsed = ParseConfigYaml(text);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  Config d;
  const Config& c = *parsed;
  EXPECT_EQ(c.server.listen, d.server.listen);
  EXPECT_EQ(c.server.max_message_bytes, d.server.max_message_bytes);
  EXPECT_EQ(c.server.drain_timeout_ms, d.server.drain_timeout_ms);
  EXPECT_EQ(c.model.dir, d.model.dir);
  EXPECT_EQ(c.model.precision, d.model.precision);
  EXPECT_EQ(c.model.max_length, d.model.max_length);
  EXPECT_EQ(c.model.score_activation, d.model.score_activation);
  EXPECT_EQ(c.model.warmup, d.model.warmup);
  EXPECT_EQ(c.execution.workers, d.execution.workers);
  EXPECT_EQ(c.execution.intra_op_threads, d.execution.intra_op_threads);
  EXPECT_EQ(c.execution.max_batch_pairs, d.execution.max_batch_pairs);
  EXPECT_EQ(c.execution.max_batch_tokens, d.execution.max_batch_tokens);
  EXPECT_EQ(c.execution.max_queue_delay_us, d.execution.max_queue_delay_us);
  EXPECT_EQ(c.execution.max_queue_pairs, d.execution.max_queue_pairs);
  EXPECT_EQ(c.rerank.default_top_n, d.rerank.default_top_n);
  EXPECT_EQ(c.rerank.max_documents, d.rerank.max_documents);
  EXPECT_EQ(c.rerank.max_query_bytes, d.rerank.max_query_bytes);
  EXPECT_EQ(c.rerank.max_document_bytes, d.rerank.max_document_bytes);
  EXPECT_EQ(c.rerank.max_batch_requests, d.rerank.max_batch_requests);
  EXPECT_EQ(c.rerank.long_document_mode, d.rerank.long_document_mode);
  EXPECT_EQ(c.rerank.max_chunks_per_doc, d.rerank.max_chunks_per_doc);
  EXPECT_EQ(c.rerank.chunk_overlap_tokens, d.rerank.chunk_overlap_tokens);
  EXPECT_EQ(c.rerank.target_latency_ms, d.rerank.target_latency_ms);
  EXPECT_EQ(c.cache.max_entries, d.cache.max_entries);
  EXPECT_EQ(c.cache.max_bytes, d.cache.max_bytes);
  EXPECT_EQ(c.audit.path, d.audit.path);
  EXPECT_EQ(c.audit.queue_capacity, d.audit.queue_capacity);
  EXPECT_EQ(c.audit.max_file_mb, d.audit.max_file_mb);
  EXPECT_EQ(c.audit.retention_days, d.audit.retention_days);
  EXPECT_EQ(c.audit.include_query_text, d.audit.include_query_text);
  EXPECT_EQ(c.flags.path, d.flags.path);
  EXPECT_EQ(c.flags.poll_interval_ms, d.flags.poll_interval_ms);
  EXPECT_TRUE(c.flags.initial == d.flags.initial);
  EXPECT_EQ(c.admin.http_listen, d.admin.http_listen);
  EXPECT_EQ(c.admin.grpc_listen, d.admin.grpc_listen);
  EXPECT_EQ(c.admin.token, d.admin.token);
  EXPECT_EQ(c.admin.stats_window_seconds, d.admin.stats_window_seconds);
  EXPECT_EQ(c.logging.level, d.logging.level);
  EXPECT_TRUE(ValidateConfig(c, 2).ok());
}

TEST(ConfigTest, UnknownKeysAndWrongTypesNameTheKey) {
  auto a = ParseConfigYaml("execution:\n  workerz: 2\n");
  EXPECT_THAT(a.status().message(), HasSubstr("execution.workerz: unknown key"));
  auto b = ParseConfigYaml("execution:\n  workers: two\n");
  EXPECT_THAT(b.status().message(), HasSubstr("execution.workers: expected a non-negative integer"));
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
  EXPECT_THAT(ValidateConfig(c, 0).message(), HasSubstr("cache_traffic_percent"));
  c = Config();
  c.rerank.long_document_mode = "split";
  EXPECT_THAT(ValidateConfig(c, 0).message(), HasSubstr("rerank.long_document_mode"));
}

TEST(ConfigTest, EnvironmentOverridesTheFile) {
  const std::string path = ::testing::TempDir() + "/rerankd_config_test.yaml";
  std::ofstream(path) << "flags:\n  initial:\n    rate_limit_per_minute: 7\n    reranker_enabled: true\n";
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
  EXPECT_THAT(bad.status().message(),
              HasSubstr("flags.initial.rate_limit_per_minute (from $RERANKER_RATE_LIMIT_PER_MINUTE)"));
  auto staged = LoadConfig("", Env({{"RERANKER_STAGE", "cache-50"}}));
  ASSERT_TRUE(staged.ok()) << staged.status();
  EXPECT_EQ(staged->flags.initial.stage, "cache-50");
  EXPECT_TRUE(staged->flags.initial.cache_enabled);
  EXPECT_EQ(staged->flags.initial.cache_traffic_percent, 50u);
  EXPECT_THAT(LoadConfig("", Env({{"RERANKER_STAGE", "cache-42"}})).status().message(),
              HasSubstr("RERANKER_STAGE"));
  EXPECT_EQ(LoadConfig("/nonexistent.yaml", Env({})).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace rerank

// The fair-scheduling config keys: execution.max_client_queue_pairs, fair_quantum_tokens,
// client_weights (ParseClientWeights) and rerank.max_request_bytes.
#include <map>
#include <string>

#include "common/config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rerank {
namespace {

using ::testing::HasSubstr;

TEST(FairConfigTest, ClientWeightsParse) {
  auto none = ParseClientWeights("  ");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  auto w = ParseClientWeights("search-api=4, batch-jobs = 1,x=1000");
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(*w,
            (std::map<std::string, uint32_t>{{"search-api", 4}, {"batch-jobs", 1}, {"x", 1000}}));
}

TEST(FairConfigTest, BadClientWeightsNameTheKey) {
  for (const char* bad : {"a", "a=0", "a=1001", "a=x", "=3", "a=2,a=3", "a=2,"}) {
    auto w = ParseClientWeights(bad);
    EXPECT_FALSE(w.ok()) << bad;
    EXPECT_THAT(w.status().message(), HasSubstr("execution.client_weights: ")) << bad;
  }
  EXPECT_THAT(ParseClientWeights("a=2,a=3").status().message(), HasSubstr("listed twice"));
  EXPECT_THAT(ParseClientWeights("a=0").status().message(),
              HasSubstr("weight of 'a' must be an integer 1..1000, got '0'"));
}

TEST(FairConfigTest, YamlKeysAndValidation) {
  auto c = ParseConfigYaml(
      "execution:\n  max_client_queue_pairs: 64\n  fair_quantum_tokens: 256\n"
      "  client_weights: \"gold=3\"\nrerank:\n  max_request_bytes: 1048576\n");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->execution.max_client_queue_pairs, 64u);
  EXPECT_EQ(c->execution.fair_quantum_tokens, 256u);
  EXPECT_EQ(c->execution.client_weights, "gold=3");
  EXPECT_EQ(c->rerank.max_request_bytes, 1048576u);
  EXPECT_TRUE(ValidateConfig(*c, 0).ok());
  Config bad = *c;
  bad.execution.client_weights = "gold=zero";
  EXPECT_THAT(ValidateConfig(bad, 0).message(), HasSubstr("execution.client_weights"));
  bad = *c;
  bad.execution.fair_quantum_tokens = 0;
  EXPECT_THAT(ValidateConfig(bad, 0).message(), HasSubstr("execution.fair_quantum_tokens"));
  // Defaults: a per-client cap on, every client weight 1, 8 MiB of text per RPC.
  Config defaults;
  EXPECT_EQ(defaults.execution.max_client_queue_pairs, 1024u);
  EXPECT_EQ(defaults.execution.client_weights, "");
  EXPECT_EQ(defaults.rerank.max_request_bytes, 8u << 20);
}

}  // namespace
}  // namespace rerank

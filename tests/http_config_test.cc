// The HTTP data plane's config keys (server.http_*): defaults, YAML, the environment variable,
// validation errors naming the key, and the bearer-token file and alias list parsers.
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include "common/config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rerank {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(HttpConfigTest, DefaultsYamlAndEnvironment) {
  Config d;
  EXPECT_EQ(d.server.http_listen, "0.0.0.0:8080");
  EXPECT_FALSE(d.server.http_strict_model);
  EXPECT_TRUE(d.server.http_bearer_tokens_file.empty());
  auto c = ParseConfigYaml(
      "server:\n  http_listen: \"\"\n  http_strict_model: true\n"
      "  http_model_aliases: \"a, b\"\n  http_max_body_bytes: 4096\n");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->server.http_listen, "");
  EXPECT_TRUE(c->server.http_strict_model);
  EXPECT_EQ(c->server.http_max_body_bytes, 4096u);
  auto env = LoadConfig("", [](const std::string& name) -> std::optional<std::string> {
    if (name == "RERANKER_API_HTTP_LISTEN") return "127.0.0.1:9999";
    return std::nullopt;
  });
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->server.http_listen, "127.0.0.1:9999");
}

TEST(HttpConfigTest, ValidationNamesTheKey) {
  Config c;
  c.server.http_max_body_bytes = 10;
  EXPECT_THAT(ValidateConfig(c, 0).message(), HasSubstr("server.http_max_body_bytes: must be"));
  c = Config();
  c.server.http_io_threads = 0;
  EXPECT_THAT(ValidateConfig(c, 0).message(), HasSubstr("server.http_io_threads: must be 1..64"));
  c = Config();
  c.server.http_max_connections = 0;
  EXPECT_THAT(ValidateConfig(c, 0).message(), HasSubstr("server.http_max_connections"));
  c = Config();
  c.server.http_request_timeout_ms = 0;
  EXPECT_THAT(ValidateConfig(c, 0).message(), HasSubstr("server.http_request_timeout_ms"));
  c = Config();
  c.server.http_listen = "";
  c.server.http_strict_model = true;
  EXPECT_THAT(ValidateConfig(c, 0).message(), HasSubstr("server.http_strict_model"));
  c = Config();
  EXPECT_TRUE(ValidateConfig(c, 0).ok());
  EXPECT_THAT(ParseConfigYaml("server:\n  http_strict_model: maybe\n").status().message(),
              HasSubstr("server.http_strict_model"));
}

TEST(HttpConfigTest, ModelAliases) {
  EXPECT_THAT(ParseModelAliases(" rerank-v3.5 ,, jina-reranker-v2 "),
              ElementsAre("rerank-v3.5", "jina-reranker-v2"));
  EXPECT_TRUE(ParseModelAliases("").empty());
}

TEST(HttpConfigTest, BearerTokens) {
  auto ok = ParseBearerTokens(
      "# comment\n\n  tok-aaaaaaaaaaaaaaaa team-a\ntok-bbbbbbbbbbbbbbbb\tteam-b  \n");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->size(), 2u);
  EXPECT_EQ(ok->at("tok-aaaaaaaaaaaaaaaa"), "team-a");
  EXPECT_EQ(ok->at("tok-bbbbbbbbbbbbbbbb"), "team-b");
  struct Case {
    std::string text, error;
  };
  for (const Case& c : {
           Case{"tok-aaaaaaaaaaaaaaaa\n", "line 1: expected"},
           Case{"tok-aaaaaaaaaaaaaaaa a b\n", "line 1: expected"},
           Case{"# x\nshort-token team\n", "line 2: token must be at least 16 bytes"},
           Case{"tok-aaaaaaaaaaaaaaaa a\ntok-aaaaaaaaaaaaaaaa b\n", "line 2: token listed twice"},
           Case{"tok-aaaaaaaaaaaaaaaa " + std::string(200, 'c') + "\n", "client id must be"},
       }) {
    auto bad = ParseBearerTokens(c.text);
    ASSERT_FALSE(bad.ok()) << c.text;
    EXPECT_THAT(bad.status().message(), HasSubstr("server.http_bearer_tokens_file")) << c.text;
    EXPECT_THAT(bad.status().message(), HasSubstr(c.error)) << c.text;
    // Never the token in an error.
    EXPECT_THAT(bad.status().message(), Not(HasSubstr("tok-aaaa"))) << c.text;
    EXPECT_THAT(bad.status().message(), Not(HasSubstr("short-token"))) << c.text;
  }
  auto none = LoadBearerTokens("");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  auto missing = LoadBearerTokens("/nonexistent/tokens.txt");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(missing.status().message(), HasSubstr("server.http_bearer_tokens_file"));
  const std::string path = ::testing::TempDir() + "/http_config_test_tokens.txt";
  std::ofstream(path) << "tok-cccccccccccccccc team-c\n";
  auto loaded = LoadBearerTokens(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->at("tok-cccccccccccccccc"), "team-c");
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace rerank

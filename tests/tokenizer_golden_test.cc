// Parity with Hugging Face: every line of tokenizer-golden/scifact_and_edge_cases.jsonl (610 pairs
// x max_length 512/128/32, made by an independent HF-conformant implementation) must be
// reproduced exactly by Tokenize + EncodePair.
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/tokenizer.h"

namespace rerank {
namespace {

std::string SharedPath(const std::string& rel) {
  const char* shared = std::getenv("RERANK_SHARED_DIR");
  return shared == nullptr ? "" : absl::StrCat(shared, "/", rel);
}

constexpr char kModelDir[] = "data/models/ms-marco-MiniLM-L-6-v2";

std::unique_ptr<WordPieceTokenizer> RealTokenizer() {
  WordPieceTokenizer::Options options;
  options.vocab_path = SharedPath(absl::StrCat(kModelDir, "/vocab.txt"));
  auto tok = WordPieceTokenizer::Create(options);
  EXPECT_TRUE(tok.ok()) << tok.status();
  return tok.ok() ? *std::move(tok) : nullptr;
}

TEST(TokenizerGoldenTest, MatchesEveryGoldenLineExactly) {
  const std::string path = SharedPath("data/tokenizer-golden/scifact_and_edge_cases.jsonl");
  std::ifstream in(path);
  if (path.empty() || !in) GTEST_SKIP() << "golden file absent: '" << path << "'";
  auto tok = RealTokenizer();
  ASSERT_NE(tok, nullptr);

  int lines = 0, matched = 0;
  std::string line;
  while (std::getline(in, line)) {
    ++lines;
    const nlohmann::json j = nlohmann::json::parse(line);
    const std::string query = j.at("query").get<std::string>();
    const std::string document = j.at("document").get<std::string>();
    const int max_length = j.at("max_length").get<int>();
    const auto want_ids = j.at("input_ids").get<std::vector<int64_t>>();
    const auto want_types = j.at("token_type_ids").get<std::vector<int64_t>>();

    auto q = tok->Tokenize(query);
    auto d = tok->Tokenize(document);
    ASSERT_TRUE(q.ok() && d.ok()) << "line " << lines;
    const Encoding got = tok->EncodePair(*q, *d, max_length);
    if (got.input_ids == want_ids && got.token_type_ids == want_types) {
      ++matched;
    } else {
      ADD_FAILURE() << "line " << lines << " (max_length " << max_length << ") differs\n"
                    << "  query:    " << nlohmann::json(query).dump() << "\n"
                    << "  document: " << nlohmann::json(document).dump().substr(0, 200) << "\n"
                    << "  got:  " << nlohmann::json(got.input_ids).dump() << "\n"
                    << "  want: " << nlohmann::json(want_ids).dump();
    }
  }
  std::cout << "[ golden   ] " << matched << "/" << lines << " lines match exactly\n";
  EXPECT_EQ(lines, 1830);
  EXPECT_EQ(matched, lines);
}

// vocab.txt (what the server loads) must agree with tokenizer.json's model.vocab (what HF loads).
TEST(TokenizerGoldenTest, VocabTxtMatchesTokenizerJson) {
  const std::string json_path = SharedPath(absl::StrCat(kModelDir, "/tokenizer.json"));
  const std::string vocab_path = SharedPath(absl::StrCat(kModelDir, "/vocab.txt"));
  std::ifstream json_in(json_path);
  std::ifstream vocab_in(vocab_path);
  if (json_path.empty() || !json_in || !vocab_in) GTEST_SKIP() << "model files absent";
  const nlohmann::json tj = nlohmann::json::parse(json_in);
  const auto& vocab = tj.at("model").at("vocab");
  std::string token;
  int64_t id = 0;
  while (std::getline(vocab_in, token)) {
    ASSERT_TRUE(vocab.contains(token)) << token;
    ASSERT_EQ(vocab.at(token).get<int64_t>(), id) << token;
    ++id;
  }
  EXPECT_EQ(static_cast<size_t>(id), vocab.size());
  auto tok = RealTokenizer();
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->vocab_size(), vocab.size());
  EXPECT_EQ(tj.at("model").at("max_input_chars_per_word").get<int>(), 100);
  EXPECT_EQ(tj.at("model").at("continuing_subword_prefix").get<std::string>(), "##");
}

}  // namespace
}  // namespace rerank

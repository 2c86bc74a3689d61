// Parity with Hugging Face: every line of tokenizer-golden/scifact_and_edge_cases.jsonl (610 pairs
// x max_length 512/128/32, made by an independent HF-conformant implementation) must be
// reproduced exactly by Tokenize + EncodePair. The golden file is vendored gzipped under
// tests/testdata and read with zlib; the vocab and tokenizer.json are vendored under third_party/.
// A missing file fails the test with its path.
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/tokenizer.h"

namespace rerank {
namespace {

constexpr char kModelDir[] = RERANK_MINILM_DIR;  // third_party/ms-marco-MiniLM-L-6-v2
constexpr char kGoldenGz[] = RERANK_GOLDEN_GZ;
// The golden file is 5.3 MB decompressed; anything far larger is a corrupt or wrong file.
constexpr size_t kMaxGoldenBytes = 64 << 20;

std::string ModelFile(const char* name) { return absl::StrCat(kModelDir, "/", name); }

// The decompressed contents of the gzip file at `path`, or an error naming it.
absl::StatusOr<std::string> ReadGzip(const std::string& path) {
  if (!std::ifstream(path)) {
    return absl::NotFoundError(
        absl::StrCat("missing vendored file ", path, ": ", std::strerror(errno)));
  }
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) return absl::InternalError(absl::StrCat("gzopen failed: ", path));
  std::string out;
  std::vector<char> buf(1 << 16);
  int n;
  while ((n = gzread(f, buf.data(), static_cast<unsigned>(buf.size()))) > 0) {
    out.append(buf.data(), static_cast<size_t>(n));
    if (out.size() > kMaxGoldenBytes) {
      gzclose(f);
      return absl::OutOfRangeError(
          absl::StrCat(path, " decompresses to over ", kMaxGoldenBytes, " bytes"));
    }
  }
  int err = Z_OK;
  const std::string message = n < 0 ? gzerror(f, &err) : "";
  const bool plain = gzdirect(f) == 1;  // zlib passes non-gzip input through unchanged
  gzclose(f);
  if (n < 0) return absl::DataLossError(absl::StrCat("corrupt gzip ", path, ": ", message));
  if (plain) return absl::DataLossError(absl::StrCat(path, " is not gzip-compressed"));
  return out;
}

std::unique_ptr<WordPieceTokenizer> RealTokenizer() {
  WordPieceTokenizer::Options options;
  options.vocab_path = ModelFile("vocab.txt");
  auto tok = WordPieceTokenizer::Create(options);
  EXPECT_TRUE(tok.ok()) << tok.status();
  return tok.ok() ? *std::move(tok) : nullptr;
}

TEST(TokenizerGoldenTest, MatchesEveryGoldenLineExactly) {
  const absl::StatusOr<std::string> golden = ReadGzip(kGoldenGz);
  ASSERT_TRUE(golden.ok()) << golden.status();
  std::istringstream in(*golden);
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
  const std::string json_path = ModelFile("tokenizer.json");
  const std::string vocab_path = ModelFile("vocab.txt");
  std::ifstream json_in(json_path);
  std::ifstream vocab_in(vocab_path);
  ASSERT_TRUE(json_in) << "missing vendored file " << json_path;
  ASSERT_TRUE(vocab_in) << "missing vendored file " << vocab_path;
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

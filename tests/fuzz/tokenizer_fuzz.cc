// Fuzz target: the WordPiece tokenizer (server/tokenizer.h) over untrusted query and document
// text, with the real MiniLM vocab, in the four option combinations that matter (lowercase,
// special-token matching), then pair encoding and long-document chunking with fuzzed limits.
//
// Input: byte 0 selects options, bytes 1-3 are max_length, chunk overlap and max_chunks; the
// rest is "query \x1e document".
//
// Properties checked beyond "no crash, no sanitizer report":
//  - Tokenize succeeds exactly when FindInvalidUtf8 finds nothing, and PreTokenize agrees;
//  - every id is a vocab line; special tokens never come out of text unless matching is on;
//  - EncodePair is [CLS] q [SEP] d [SEP] within max(max_length, 3) tokens, types 0 then 1;
//  - EncodePairChunks returns 1..max_chunks rows, each within the limit, and exactly
//    EncodePair's row when the pair fits.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "server/tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

namespace rerank {
namespace {

const WordPieceTokenizer& Tokenizer(bool lowercase, bool match_special) {
  static const auto* const kTokenizers = [] {
    auto* all = new std::vector<std::unique_ptr<WordPieceTokenizer>>();
    for (int i = 0; i < 4; ++i) {
      WordPieceTokenizer::Options o;
      o.vocab_path = fuzz::SourcePath("third_party/ms-marco-MiniLM-L-6-v2/vocab.txt");
      o.lowercase = (i & 1) != 0;
      o.match_special_tokens = (i & 2) != 0;
      auto tok = WordPieceTokenizer::Create(o);
      FUZZ_CHECK(tok.ok(), "%s", tok.status().ToString().c_str());
      all->push_back(*std::move(tok));
    }
    return all;
  }();
  return *(*kTokenizers)[(lowercase ? 1 : 0) | (match_special ? 2 : 0)];
}

void CheckIds(const WordPieceTokenizer& tok, const std::vector<int32_t>& ids, bool match_special) {
  for (int32_t id : ids) {
    FUZZ_CHECK(id >= 0 && static_cast<size_t>(id) < tok.vocab_size(), "id %d", id);
    if (!match_special) {
      FUZZ_CHECK(id != tok.cls_id() && id != tok.sep_id() && id != tok.pad_id(),
                 "special id %d from text with match_special_tokens off", id);
    }
  }
}

void CheckRow(const WordPieceTokenizer& tok, const Encoding& row, size_t limit) {
  const size_t n = row.input_ids.size();
  FUZZ_CHECK(n >= 3 && n <= limit, "row of %zu tokens, limit %zu", n, limit);
  FUZZ_CHECK(row.token_type_ids.size() == n, "%zu types for %zu ids", row.token_type_ids.size(), n);
  FUZZ_CHECK(row.input_ids.front() == tok.cls_id() && row.input_ids.back() == tok.sep_id(),
             "row not framed by [CLS] ... [SEP]");
  // Types: 0 up to and including the first [SEP] after the query, then 1.
  size_t zeros = 0;
  while (zeros < n && row.token_type_ids[zeros] == 0) ++zeros;
  for (size_t i = zeros; i < n; ++i) FUZZ_CHECK(row.token_type_ids[i] == 1, "type at %zu", i);
  FUZZ_CHECK(zeros >= 2 && row.input_ids[zeros - 1] == tok.sep_id(), "query segment of %zu", zeros);
}

}  // namespace
}  // namespace rerank

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace rerank;
  fuzz::InputReader in(data, size);
  const uint8_t options = in.Byte();
  const int max_length = in.Byte();  // 0..255: below 3, tiny windows, and comfortable
  const int overlap = static_cast<int8_t>(in.Byte());
  const int max_chunks = static_cast<int8_t>(in.Byte()) % 8;
  const bool lowercase = (options & 1) != 0;
  const bool match_special = (options & 2) != 0;
  const std::string_view query = in.Until('\x1e');
  const std::string_view doc = in.Rest();
  const WordPieceTokenizer& tok = Tokenizer(lowercase, match_special);

  std::vector<int32_t> ids[2];
  const std::string_view texts[2] = {query, doc};
  for (int i = 0; i < 2; ++i) {
    const bool valid = FindInvalidUtf8(texts[i]) == std::string_view::npos;
    absl::StatusOr<std::vector<int32_t>> t = tok.Tokenize(texts[i]);
    FUZZ_CHECK(t.ok() == valid, "Tokenize ok=%d but valid UTF-8=%d: %s", t.ok(), valid,
               t.status().ToString().c_str());
    absl::StatusOr<std::vector<std::string>> words = tok.PreTokenize(texts[i]);
    FUZZ_CHECK(words.ok() == valid, "PreTokenize ok=%d but valid UTF-8=%d", words.ok(), valid);
    if (!valid) {
      FUZZ_CHECK(absl::IsInvalidArgument(t.status()), "%s", t.status().ToString().c_str());
      continue;
    }
    CheckIds(tok, *t, match_special);
    // Every word yields at least one piece, and a word is never empty.
    FUZZ_CHECK(t->size() >= words->size(), "%zu ids for %zu words", t->size(), words->size());
    for (const std::string& w : *words) FUZZ_CHECK(!w.empty(), "empty word");
    ids[i] = *std::move(t);
  }

  const size_t limit = static_cast<size_t>(std::max(max_length, 3));
  const Encoding pair = tok.EncodePair(ids[0], ids[1], max_length);
  CheckRow(tok, pair, limit);
  const bool fits = ids[0].size() + ids[1].size() + 3 <= limit;
  if (fits) {
    FUZZ_CHECK(pair.input_ids.size() == ids[0].size() + ids[1].size() + 3, "pair cut though fits");
  }
  const std::vector<Encoding> chunks =
      tok.EncodePairChunks(ids[0], ids[1], max_length, overlap, max_chunks);
  FUZZ_CHECK(!chunks.empty() && chunks.size() <= static_cast<size_t>(std::max(max_chunks, 1)),
             "%zu chunks, max_chunks %d", chunks.size(), max_chunks);
  for (const Encoding& row : chunks) CheckRow(tok, row, limit);
  if (fits) {
    FUZZ_CHECK(chunks.size() == 1 && chunks[0].input_ids == pair.input_ids,
               "a fitting pair was chunked");
  }
  return 0;
}

// BERT WordPiece tokenizer, bit-exact with Hugging Face `tokenizers` for the uncased BERT pipeline
// used by cross-encoder/ms-marco-MiniLM-L-6-v2 (tokenizer.json: BertNormalizer with clean_text,
// handle_chinese_chars, strip_accents = lowercase; BertPreTokenizer; WordPiece "##", 100 chars;
// pair template "[CLS] A [SEP] B [SEP]"; longest_first truncation).
//
// Pipeline per text (same order as HF, see tokenizer.cc for the details that matter):
//   1. special tokens ("[CLS]", "[SEP]", ...) are recognised verbatim in the raw text (HF does this
//      for added tokens before normalisation) — can be switched off for untrusted text;
//   2. clean_text: drop U+0000, U+FFFD and Unicode C* (except \t \n \r); White_Space -> ' ';
//   3. spaces around CJK ideographs;
//   4. (lowercase) NFD, drop Mn, per-code-point full lowercase;
//   5. split on whitespace, each punctuation char (ASCII punct or Unicode P*) is its own word;
//   6. greedy longest-match-first WordPiece; a word over max_input_chars_per_word code points or
//      with an unmatched piece becomes [UNK].
//
// Thread-safety: immutable after Create(); all methods are const and safe to call concurrently.
#ifndef RERANK_SERVER_TOKENIZER_H_
#define RERANK_SERVER_TOKENIZER_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

struct UNormalizer2;  // ICU, opaque.

namespace rerank {

// One model input row. attention_mask is implicitly all ones over input_ids.size().
struct Encoding {
  std::vector<int64_t> input_ids;
  std::vector<int64_t> token_type_ids;
};

// Byte offset of the first ill-formed UTF-8 sequence in `text` (overlong forms, surrogates,
// code points above U+10FFFF and truncated sequences are ill-formed), or std::string_view::npos
// when `text` is valid UTF-8.
size_t FindInvalidUtf8(std::string_view text);

class WordPieceTokenizer {  // immutable after Create(); thread-safe
 public:
  struct Options {
    // vocab.txt, one token per line, id = line number (0-based). Required.
    std::string vocab_path;
    // Lowercase; also strips accents (NFD + drop Mn), as BERT uncased. Default true.
    bool lowercase = true;
    // Words longer than this many code points (after normalisation) become [UNK]. Default 100.
    int max_input_chars_per_word = 100;
    // Recognise "[PAD]", "[UNK]", "[CLS]", "[SEP]" and "[MASK]" written verbatim in the text as
    // their special ids, as HF tokenizers does for added tokens (default true, for parity with
    // sentence-transformers). False treats them as plain text ("[", "sep", "]"), so that untrusted
    // text cannot inject segment separators.
    bool match_special_tokens = true;
  };

  // Loads the vocab. Fails (InvalidArgument / NotFound, naming the field and path) if the vocab is
  // missing, empty or lacks [CLS]/[SEP]/[PAD]/[UNK], or an option is out of range.
  static absl::StatusOr<std::unique_ptr<WordPieceTokenizer>> Create(const Options& options);

  // Word-piece ids of `text` without special tokens. InvalidArgument (with the byte offset) on
  // invalid UTF-8.
  absl::StatusOr<std::vector<int32_t>> Tokenize(std::string_view text) const;

  // The normalised, pre-tokenised words of `text` that WordPiece sees (special tokens appear as
  // their literal text, e.g. "[SEP]"). For tests and debugging; Tokenize() does not build these.
  absl::StatusOr<std::vector<std::string>> PreTokenize(std::string_view text) const;

  // [CLS] query [SEP] doc [SEP] (token types 0 for "[CLS] query [SEP]", 1 for "doc [SEP]"), with
  // HF longest_first truncation of the two sides to a budget of max_length - 3: with n1 <= n2 the
  // two lengths, n2 = max(n1, budget - n1) (n1 if n1 > budget); if n1 + n2 > budget then
  // n1 = budget / 2 and n2 = n1 + budget % 2; each side keeps its first tokens (its last ones
  // with `truncate_left`). max_length < 3 behaves as 3 (the special tokens are never dropped);
  // callers validate their own limits.
  Encoding EncodePair(const std::vector<int32_t>& query, const std::vector<int32_t>& doc,
                      int max_length, bool truncate_left = false) const;

  // Long-document mode: split `doc` into overlapping windows that each fit beside the query. The
  // query is first cut to at most (max_length - 3) / 2 tokens; each window holds
  // w = max_length - 3 - len(query) doc tokens; consecutive windows start `w - overlap` apart
  // (overlap clamped to [0, w/2]); at most max_chunks windows (values < 1 act as 1; the rest of
  // the doc is ignored). The last window ends at the end of the doc and may be shorter than w.
  // If the pair fits, returns exactly one Encoding equal to EncodePair(query, doc, max_length).
  // Never returns an empty vector.
  std::vector<Encoding> EncodePairChunks(const std::vector<int32_t>& query,
                                         const std::vector<int32_t>& doc, int max_length,
                                         int overlap, int max_chunks) const;

  int32_t cls_id() const { return cls_id_; }
  int32_t sep_id() const { return sep_id_; }
  int32_t pad_id() const { return pad_id_; }
  int32_t unk_id() const { return unk_id_; }
  // Number of lines of the vocab file (= one past the largest id).
  size_t vocab_size() const { return vocab_size_; }

 private:
  static constexpr int kNumSpecial = 5;  // [PAD] [UNK] [CLS] [SEP] [MASK], see tokenizer.cc

  WordPieceTokenizer() = default;

  // Steps 1-4: the normalised code points of `text`; a recognised special token k is stored as
  // the private-use code point kSpecialBase + k (private-use text itself is dropped by clean_text,
  // so the marker cannot collide with input).
  absl::Status Normalize(std::string_view text, std::vector<char32_t>* out) const;
  // Step 6 for one word of `num_chars` code points; appends ids to `out`.
  void WordPiece(std::string_view word, int num_chars, std::vector<int32_t>* out) const;

  Options options_;
  // Every vocab entry (pieces that may start a word), and the "##" entries without their prefix
  // (pieces that continue one), so lookups never build "##..." strings.
  absl::flat_hash_map<std::string, int32_t> word_start_;
  absl::flat_hash_map<std::string, int32_t> continuation_;
  size_t max_start_bytes_ = 0;         // longest key of word_start_, bounds the greedy search
  size_t max_continuation_bytes_ = 0;  // longest key of continuation_
  std::array<int32_t, kNumSpecial> special_ids_{};  // -1 when absent from the vocab
  int32_t cls_id_ = -1;
  int32_t sep_id_ = -1;
  int32_t pad_id_ = -1;
  int32_t unk_id_ = -1;
  size_t vocab_size_ = 0;
  const UNormalizer2* nfd_ = nullptr;  // ICU's process-wide NFD instance, not owned, thread-safe
};

}  // namespace rerank

#endif  // RERANK_SERVER_TOKENIZER_H_

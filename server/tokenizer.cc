#include "server/tokenizer.h"

#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/utf16.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"

namespace rerank {
namespace {

// Special tokens recognised in raw text, in special_ids_ order. HF's added-token matcher runs on
// the raw (non-normalised) text; all five start with '[' and none is a prefix of another, so
// "leftmost-longest" reduces to checking at each '['.
constexpr absl::string_view kSpecialTokens[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
constexpr char32_t kSpecialBase = 0xE000;  // private use (Co): removed from input by clean_text

// Classes of ASCII code points after clean_text.
enum AsciiClass : uint8_t { kDrop, kSpace, kPunct, kWordChar };

struct AsciiTables {
  AsciiClass cls[128];
  char lower[128];
};

constexpr AsciiTables MakeAsciiTables() {
  AsciiTables t{};
  for (int c = 0; c < 128; ++c) {
    t.lower[c] = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : static_cast<char>(c);
    if (c == '\t' || c == '\n' || c == '\r' || c == ' ') {
      t.cls[c] = kSpace;
    } else if (c < 0x20 || c == 0x7F) {
      t.cls[c] = kDrop;  // Cc (incl. U+0000, \v, \f): removed by clean_text, not whitespace
    } else if ((c >= '!' && c <= '/') || (c >= ':' && c <= '@') || (c >= '[' && c <= '`') ||
               (c >= '{' && c <= '~')) {
      t.cls[c] = kPunct;  // Rust's is_ascii_punctuation, which includes $+<=>^`| (S* in Unicode)
    } else {
      t.cls[c] = kWordChar;
    }
  }
  return t;
}
constexpr AsciiTables kAscii = MakeAsciiTables();

// handle_chinese_chars ranges, verbatim from HF tokenizers' normalizers/bert.rs. Note 0x2B920
// (not 0x2B820 as in Google's original BERT): U+2B820..U+2B91F are *not* spaced out by HF.
bool IsChineseChar(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
         (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
         (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

bool IsUtf8Continuation(char b) { return (static_cast<unsigned char>(b) & 0xC0) == 0x80; }

// Strict UTF-8 decoding (Unicode Table 3-7). Returns the sequence length (2..4) and sets *cp, or
// 0 if the sequence at s[0] is ill-formed. Only called for lead bytes >= 0x80.
int DecodeMultiByte(const unsigned char* s, size_t n, char32_t* cp) {
  const unsigned char b0 = s[0];
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    if (n < 2 || (s[1] & 0xC0) != 0x80) return 0;
    *cp = (static_cast<char32_t>(b0 & 0x1F) << 6) | (s[1] & 0x3F);
    return 2;
  }
  if (b0 >= 0xE0 && b0 <= 0xEF) {
    if (n < 3) return 0;
    const unsigned char lo = b0 == 0xE0 ? 0xA0 : 0x80;  // no overlongs
    const unsigned char hi = b0 == 0xED ? 0x9F : 0xBF;  // no surrogates
    if (s[1] < lo || s[1] > hi || (s[2] & 0xC0) != 0x80) return 0;
    *cp = (static_cast<char32_t>(b0 & 0x0F) << 12) | (static_cast<char32_t>(s[1] & 0x3F) << 6) |
          (s[2] & 0x3F);
    return 3;
  }
  if (b0 >= 0xF0 && b0 <= 0xF4) {
    if (n < 4) return 0;
    const unsigned char lo = b0 == 0xF0 ? 0x90 : 0x80;  // no overlongs
    const unsigned char hi = b0 == 0xF4 ? 0x8F : 0xBF;  // <= U+10FFFF
    if (s[1] < lo || s[1] > hi || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80) return 0;
    *cp = (static_cast<char32_t>(b0 & 0x07) << 18) | (static_cast<char32_t>(s[1] & 0x3F) << 12) |
          (static_cast<char32_t>(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
    return 4;
  }
  return 0;  // stray continuation byte, 0xC0/0xC1 (overlong), 0xF5..0xFF
}

void AppendUtf8(char32_t c, std::string* out) {
  if (c < 0x80) {
    out->push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (c >> 6)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (c >> 12)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (c >> 18)));
    out->push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

// Rust's char::to_lowercase (unconditional full mapping, no context such as final sigma), which HF
// applies per code point. It equals ICU's simple mapping except for U+0130, the only code point
// whose unconditional lowercase has two code points.
void AppendLower(char32_t c, std::vector<char32_t>* out) {
  if (c < 0x80) {
    out->push_back(static_cast<unsigned char>(kAscii.lower[c]));
  } else if (c == 0x130) {
    out->push_back('i');
    out->push_back(0x307);
  } else {
    out->push_back(static_cast<char32_t>(u_tolower(static_cast<UChar32>(c))));
  }
}

bool IsPunctuation(char32_t c) {  // c >= 0x80: Unicode P* (Pc Pd Ps Pe Pi Pf Po)
  return (U_GET_GC_MASK(static_cast<UChar32>(c)) & U_GC_P_MASK) != 0;
}

// Step 5 (BertPreTokenizer) over normalised code points: calls on_word(utf8, num_code_points) for
// each word and on_special(k) for each special-token marker, in order. `word` is scratch space.
template <typename OnWord, typename OnSpecial>
void SplitWords(const std::vector<char32_t>& cps, std::string* word, OnWord&& on_word,
                OnSpecial&& on_special) {
  word->clear();
  int chars = 0;
  auto flush = [&] {
    if (!word->empty()) {
      on_word(std::string_view(*word), chars);
      word->clear();
      chars = 0;
    }
  };
  for (const char32_t c : cps) {
    if (c < 0x80) {
      switch (kAscii.cls[c]) {
        case kSpace:
        case kDrop:  // not produced by Normalize(); treated as a separator defensively
          flush();
          break;
        case kPunct: {
          flush();
          const char p = static_cast<char>(c);
          on_word(std::string_view(&p, 1), 1);
          break;
        }
        case kWordChar:
          word->push_back(static_cast<char>(c));
          ++chars;
          break;
      }
    } else if (c >= kSpecialBase && c < kSpecialBase + std::size(kSpecialTokens)) {
      flush();
      on_special(static_cast<int>(c - kSpecialBase));
    } else if (u_isUWhiteSpace(static_cast<UChar32>(c))) {
      flush();
    } else if (IsPunctuation(c)) {
      flush();
      std::string p;
      AppendUtf8(c, &p);
      on_word(std::string_view(p), 1);
    } else {
      AppendUtf8(c, word);
      ++chars;
    }
  }
  flush();
}

}  // namespace

size_t FindInvalidUtf8(std::string_view text) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    char32_t cp;
    const int len = DecodeMultiByte(p + i, n - i, &cp);
    if (len == 0) return i;
    i += len;
  }
  return std::string_view::npos;
}

absl::StatusOr<std::unique_ptr<WordPieceTokenizer>> WordPieceTokenizer::Create(
    const Options& options) {
  static_assert(std::size(kSpecialTokens) == kNumSpecial);
  if (options.vocab_path.empty()) {
    return absl::InvalidArgumentError("WordPieceTokenizer: vocab_path is empty");
  }
  if (options.max_input_chars_per_word < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("WordPieceTokenizer: max_input_chars_per_word must be >= 1, got ",
                     options.max_input_chars_per_word));
  }
  std::ifstream in(options.vocab_path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("WordPieceTokenizer: vocab_path '", options.vocab_path,
                                            "' cannot be opened: ", std::strerror(errno)));
  }
  auto tok = std::unique_ptr<WordPieceTokenizer>(new WordPieceTokenizer());
  tok->options_ = options;
  std::string line;
  int64_t id = 0;
  while (std::getline(in, line)) {
    // HF's WordPiece::read_file trims trailing whitespace (incl. '\r' of CRLF files).
    while (!line.empty() && (line.back() == ' ' || line.back() == '\t' || line.back() == '\r' ||
                             line.back() == '\v' || line.back() == '\f')) {
      line.pop_back();
    }
    if (id > INT32_MAX) {
      return absl::InvalidArgumentError(absl::StrCat("WordPieceTokenizer: vocab_path '",
                                                     options.vocab_path, "' has too many lines"));
    }
    if (size_t bad = FindInvalidUtf8(line); bad != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("WordPieceTokenizer: vocab_path '",
                                                     options.vocab_path, "' line ", id + 1,
                                                     ": invalid UTF-8 at byte offset ", bad));
    }
    const auto id32 = static_cast<int32_t>(id++);
    // Later duplicates win, as in HF (HashMap::insert).
    tok->word_start_.insert_or_assign(line, id32);
    if (line.size() > 2 && line[0] == '#' && line[1] == '#') {
      tok->continuation_.insert_or_assign(line.substr(2), id32);
    }
  }
  if (in.bad()) {
    return absl::DataLossError(
        absl::StrCat("WordPieceTokenizer: error reading vocab_path '", options.vocab_path, "'"));
  }
  if (id == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("WordPieceTokenizer: vocab_path '", options.vocab_path, "' is empty"));
  }
  tok->vocab_size_ = static_cast<size_t>(id);
  for (const auto& [key, unused] : tok->word_start_) {
    tok->max_start_bytes_ = std::max(tok->max_start_bytes_, key.size());
  }
  for (const auto& [key, unused] : tok->continuation_) {
    tok->max_continuation_bytes_ = std::max(tok->max_continuation_bytes_, key.size());
  }
  for (int k = 0; k < kNumSpecial; ++k) {
    auto it = tok->word_start_.find(kSpecialTokens[k]);
    tok->special_ids_[k] = it == tok->word_start_.end() ? -1 : it->second;
  }
  tok->pad_id_ = tok->special_ids_[0];
  tok->unk_id_ = tok->special_ids_[1];
  tok->cls_id_ = tok->special_ids_[2];
  tok->sep_id_ = tok->special_ids_[3];
  for (int k = 0; k < 4; ++k) {  // [MASK] is optional
    if (tok->special_ids_[k] < 0) {
      return absl::InvalidArgumentError(absl::StrCat("WordPieceTokenizer: vocab_path '",
                                                     options.vocab_path, "' lacks the token ",
                                                     kSpecialTokens[k]));
    }
  }
  UErrorCode status = U_ZERO_ERROR;
  tok->nfd_ = unorm2_getNFDInstance(&status);
  if (U_FAILURE(status) || tok->nfd_ == nullptr) {
    return absl::InternalError(
        absl::StrCat("WordPieceTokenizer: ICU NFD unavailable: ", u_errorName(status)));
  }
  return tok;
}

absl::Status WordPieceTokenizer::Normalize(std::string_view text,
                                           std::vector<char32_t>* out) const {
  out->clear();
  out->reserve(text.size() + 8);
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  const bool lower = options_.lowercase;
  bool non_ascii = false;
  size_t i = 0;
  while (i < n) {
    const unsigned char b = p[i];
    if (b < 0x80) {
      if (b == '[' && options_.match_special_tokens) {
        bool matched = false;
        for (int k = 0; k < kNumSpecial; ++k) {
          if (special_ids_[k] >= 0 &&
              absl::StartsWith(absl::string_view(text.data() + i, n - i), kSpecialTokens[k])) {
            out->push_back(kSpecialBase + k);
            i += kSpecialTokens[k].size();
            matched = true;
            break;
          }
        }
        if (matched) continue;
      }
      switch (kAscii.cls[b]) {
        case kDrop:
          break;
        case kSpace:
          out->push_back(' ');
          break;
        default:
          // Lowercasing ASCII before NFD is equivalent: NFD leaves ASCII alone.
          out->push_back(lower ? static_cast<unsigned char>(kAscii.lower[b]) : b);
      }
      ++i;
      continue;
    }
    char32_t c;
    const int len = DecodeMultiByte(p + i, n - i, &c);
    if (len == 0) {
      return absl::InvalidArgumentError(absl::StrCat("invalid UTF-8 at byte offset ", i));
    }
    i += len;
    // clean_text: HF filters (U+0000, U+FFFD, C*) *before* mapping White_Space to ' ', so a
    // control that is also White_Space (U+0085) is dropped, not turned into a space.
    if (c == 0xFFFD || (U_GET_GC_MASK(static_cast<UChar32>(c)) & U_GC_C_MASK) != 0) continue;
    if (u_isUWhiteSpace(static_cast<UChar32>(c))) {
      out->push_back(' ');
      continue;
    }
    non_ascii = true;
    if (IsChineseChar(c)) {
      out->push_back(' ');
      out->push_back(c);
      out->push_back(' ');
    } else {
      out->push_back(c);
    }
  }
  if (!lower || !non_ascii) return absl::OkStatus();

  // strip_accents + lowercase on the whole string, as HF: NFD (canonical reordering needs the
  // context, so not per code point), drop Mn, then lowercase each code point.
  std::vector<UChar> u16;
  u16.reserve(out->size() + 16);
  for (const char32_t c : *out) {
    if (c < 0x10000) {
      u16.push_back(static_cast<UChar>(c));
    } else {
      u16.push_back(U16_LEAD(c));
      u16.push_back(U16_TRAIL(c));
    }
  }
  std::vector<UChar> nfd(u16.size() * 2 + 16);
  UErrorCode status = U_ZERO_ERROR;
  int32_t nfd_len = unorm2_normalize(nfd_, u16.data(), static_cast<int32_t>(u16.size()), nfd.data(),
                                     static_cast<int32_t>(nfd.size()), &status);
  if (status == U_BUFFER_OVERFLOW_ERROR) {
    nfd.resize(static_cast<size_t>(nfd_len));
    status = U_ZERO_ERROR;
    nfd_len = unorm2_normalize(nfd_, u16.data(), static_cast<int32_t>(u16.size()), nfd.data(),
                               static_cast<int32_t>(nfd.size()), &status);
  }
  if (U_FAILURE(status)) {
    return absl::InternalError(absl::StrCat("ICU NFD failed: ", u_errorName(status)));
  }
  out->clear();
  for (int32_t j = 0; j < nfd_len;) {
    UChar32 c;
    U16_NEXT(nfd.data(), j, nfd_len, c);
    if (c >= 0x300 && u_charType(c) == U_NON_SPACING_MARK) continue;
    AppendLower(static_cast<char32_t>(c), out);
  }
  return absl::OkStatus();
}

void WordPieceTokenizer::WordPiece(std::string_view word, int num_chars,
                                   std::vector<int32_t>* out) const {
  if (num_chars > options_.max_input_chars_per_word) {
    out->push_back(unk_id_);
    return;
  }
  const size_t mark = out->size();
  const size_t n = word.size();
  size_t start = 0;
  while (start < n) {
    const bool first = start == 0;
    const auto& vocab = first ? word_start_ : continuation_;
    // No vocab key is longer than max_bytes, so start the longest-first search there (on a code
    // point boundary); the result is the same as starting at the end of the word.
    size_t end = std::min(n, start + (first ? max_start_bytes_ : max_continuation_bytes_));
    while (end > start && end < n && IsUtf8Continuation(word[end])) --end;
    int32_t id = -1;
    while (end > start) {
      auto it = vocab.find(absl::string_view(word.data() + start, end - start));
      if (it != vocab.end()) {
        id = it->second;
        break;
      }
      do {
        --end;
      } while (end > start && IsUtf8Continuation(word[end]));
    }
    if (id < 0) {  // an unmatched piece makes the whole word [UNK]
      out->resize(mark);
      out->push_back(unk_id_);
      return;
    }
    out->push_back(id);
    start = end;
  }
}

absl::StatusOr<std::vector<int32_t>> WordPieceTokenizer::Tokenize(std::string_view text) const {
  std::vector<char32_t> cps;
  RETURN_IF_ERROR(Normalize(text, &cps));
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  std::string word;
  SplitWords(
      cps, &word, [&](std::string_view w, int chars) { WordPiece(w, chars, &ids); },
      [&](int k) { ids.push_back(special_ids_[k]); });
  return ids;
}

absl::StatusOr<std::vector<std::string>> WordPieceTokenizer::PreTokenize(
    std::string_view text) const {
  std::vector<char32_t> cps;
  RETURN_IF_ERROR(Normalize(text, &cps));
  std::vector<std::string> words;
  std::string word;
  SplitWords(
      cps, &word, [&](std::string_view w, int) { words.emplace_back(w); },
      [&](int k) { words.emplace_back(kSpecialTokens[k]); });
  return words;
}

Encoding WordPieceTokenizer::EncodePair(const std::vector<int32_t>& query,
                                        const std::vector<int32_t>& doc, int max_length,
                                        bool truncate_left) const {
  const size_t budget = max_length > 3 ? static_cast<size_t>(max_length) - 3 : 0;
  size_t n_query = query.size();
  size_t n_doc = doc.size();
  if (n_query + n_doc > budget) {
    // HF tokenizers' TruncationStrategy::LongestFirst, with n1 the shorter side.
    const bool swap = n_query > n_doc;
    size_t n1 = swap ? n_doc : n_query;
    size_t n2 = n1 > budget ? n1 : std::max(n1, budget - n1);
    if (n1 + n2 > budget) {
      n1 = budget / 2;
      n2 = n1 + budget % 2;
    }
    n_query = std::min(n_query, swap ? n2 : n1);
    n_doc = std::min(n_doc, swap ? n1 : n2);
  }
  Encoding enc;
  const size_t total = n_query + n_doc + 3;
  enc.input_ids.reserve(total);
  enc.input_ids.push_back(cls_id_);
  // Left truncation keeps each side's last tokens (HF truncation_direction="left").
  const auto query_begin = truncate_left ? query.end() - n_query : query.begin();
  const auto doc_begin = truncate_left ? doc.end() - n_doc : doc.begin();
  enc.input_ids.insert(enc.input_ids.end(), query_begin, query_begin + n_query);
  enc.input_ids.push_back(sep_id_);
  enc.input_ids.insert(enc.input_ids.end(), doc_begin, doc_begin + n_doc);
  enc.input_ids.push_back(sep_id_);
  enc.token_type_ids.assign(total, 1);
  std::fill_n(enc.token_type_ids.begin(), n_query + 2, 0);
  return enc;
}

std::vector<Encoding> WordPieceTokenizer::EncodePairChunks(const std::vector<int32_t>& query,
                                                           const std::vector<int32_t>& doc,
                                                           int max_length, int overlap,
                                                           int max_chunks) const {
  const size_t budget = max_length > 3 ? static_cast<size_t>(max_length) - 3 : 0;
  std::vector<Encoding> chunks;
  if (query.size() + doc.size() <= budget) {
    chunks.push_back(EncodePair(query, doc, max_length));
    return chunks;
  }
  const size_t n_query = std::min(query.size(), budget / 2);
  const size_t window = budget - n_query;
  if (window == 0) {  // max_length <= 3: nothing of the doc fits anyway
    chunks.push_back(EncodePair(query, doc, max_length));
    return chunks;
  }
  const size_t ov = static_cast<size_t>(std::clamp<int64_t>(overlap, 0, window / 2));
  const size_t stride = window - ov;  // >= 1 since ov <= window / 2 < window
  const size_t limit = static_cast<size_t>(std::max(max_chunks, 1));
  const std::vector<int32_t> q(query.begin(), query.begin() + n_query);
  std::vector<int32_t> piece;
  for (size_t start = 0; chunks.size() < limit; start += stride) {
    const size_t end = std::min(doc.size(), start + window);
    piece.assign(doc.begin() + std::min(start, doc.size()), doc.begin() + end);
    chunks.push_back(EncodePair(q, piece, max_length));  // fits: no further truncation
    if (end >= doc.size()) break;
  }
  return chunks;
}

}  // namespace rerank

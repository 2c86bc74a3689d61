// Unit tests of server/tokenizer.h against a small hand-written vocab (so the expected ids are
// obvious), plus a few checks against the real MiniLM vocab (vendored in third_party/).
#include "server/tokenizer.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rerank {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using Words = std::vector<std::string>;

// id = index.
const std::vector<std::string> kVocab = {
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",  // 0-4
    "hello", "world", "un",    "##aff", "##able",  // 5-9
    "cafe",  ",",     ".",     "!",     "a",       // 10-14
    "##a",   "##aa",  "中",    "文",    "σ",       // 15-19
    "##σ",   "ab",    "##c",   "abc##", "i",       // 20-24
    "[",     "]",     "sep",   "##bc",  "k",       // 25-29
};
constexpr int32_t kUnk = 1, kCls = 2, kSep = 3;
constexpr int32_t kHello = 5, kWorld = 6, kUn = 7, kAff = 8, kAble = 9, kCafe = 10, kComma = 11;
constexpr int32_t kBang = 13, kA = 14, kContA = 15, kContAA = 16, kZhong = 17, kWen = 18;
constexpr int32_t kSigma = 19, kContSigma = 20, kAB = 21, kContC = 22;
constexpr int32_t kLBracket = 25, kRBracket = 26, kSepWord = 27;

std::string TempPath(const std::string& name) {
  return absl::StrCat(::testing::TempDir(), "/tokenizer_test_", getpid(), "_", name);
}

std::string WriteFile(const std::string& name, const std::string& content) {
  const std::string path = TempPath(name);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  return path;
}

std::string VocabText(const std::vector<std::string>& tokens, const char* eol = "\n") {
  std::string text;
  for (const auto& t : tokens) absl::StrAppend(&text, t, eol);
  return text;
}

class TokenizerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    vocab_path_ = WriteFile("vocab.txt", VocabText(kVocab));
    tok_ = Make();
  }
  void TearDown() override { std::remove(vocab_path_.c_str()); }

  std::unique_ptr<WordPieceTokenizer> Make(bool lowercase = true, bool match_special = true,
                                           int max_chars = 100) {
    WordPieceTokenizer::Options options;
    options.vocab_path = vocab_path_;
    options.lowercase = lowercase;
    options.match_special_tokens = match_special;
    options.max_input_chars_per_word = max_chars;
    auto tok = WordPieceTokenizer::Create(options);
    EXPECT_TRUE(tok.ok()) << tok.status();
    return tok.ok() ? *std::move(tok) : nullptr;
  }

  Words Pre(std::string_view text) {
    auto words = tok_->PreTokenize(text);
    EXPECT_TRUE(words.ok()) << words.status();
    return words.ok() ? *words : Words{"<error>"};
  }
  std::vector<int32_t> Ids(std::string_view text) {
    auto ids = tok_->Tokenize(text);
    EXPECT_TRUE(ids.ok()) << ids.status();
    return ids.ok() ? *ids : std::vector<int32_t>{-999};
  }

  std::string vocab_path_;
  std::unique_ptr<WordPieceTokenizer> tok_;
};

// ---- Normalisation and pre-tokenisation -------------------------------------------------------

TEST_F(TokenizerTest, SplitsOnWhitespaceAndPunctuationAndLowercases) {
  EXPECT_THAT(Pre("Hello, World!"), ElementsAre("hello", ",", "world", "!"));
  EXPECT_THAT(Pre("  leading   and trailing  "), ElementsAre("leading", "and", "trailing"));
  EXPECT_THAT(Pre(""), ElementsAre());
  EXPECT_THAT(Pre("   \t\n "), ElementsAre());
}

TEST_F(TokenizerTest, AsciiPunctuationIncludesSymbols) {
  // Rust's is_ascii_punctuation covers $ + < = > ^ ` | ~ although Unicode calls them symbols.
  EXPECT_THAT(Pre("$5+3=8^|`~<>"),
              ElementsAre("$", "5", "+", "3", "=", "8", "^", "|", "`", "~", "<", ">"));
  EXPECT_THAT(Pre("U.S. a-b (c)"), ElementsAre("u", ".", "s", ".", "a", "-", "b", "(", "c", ")"));
}

TEST_F(TokenizerTest, UnicodePunctuationSplitsButSymbolsDoNot) {
  EXPECT_THAT(Pre("«hi»—there…"), ElementsAre("«", "hi", "»", "—", "there", "…"));
  EXPECT_THAT(Pre("5€ a©b"), ElementsAre("5€", "a©b"));  // Sc / So are not punctuation
}

TEST_F(TokenizerTest, StripsAccentsComposedAndDecomposed) {
  EXPECT_THAT(Pre("Café naïve RÉSUMÉ"), ElementsAre("cafe", "naive", "resume"));
  EXPECT_THAT(Pre("Cafe\u0301"), ElementsAre("cafe"));
  EXPECT_THAT(Pre("\u00C5ngstr\u00F6m"), ElementsAre("angstrom"));
}

TEST_F(TokenizerTest, LowercaseIsPerCodePointAfterNfd) {
  EXPECT_THAT(Pre("ΟΔΟΣ"), ElementsAre("οδοσ"));  // no final-sigma rule (per code point, as HF)
  EXPECT_THAT(Pre("\u0130"), ElementsAre("i"));   // İ -> I + U+0307 -> I -> i
  EXPECT_THAT(Pre("\u212A"), ElementsAre("k"));   // KELVIN SIGN -> K (NFD) -> k
}

TEST_F(TokenizerTest, ClassifiesPunctuationAfterNfd) {
  // U+037E GREEK QUESTION MARK canonically decomposes to ';', which then splits.
  EXPECT_THAT(Pre("a\u037Eb"), ElementsAre("a", ";", "b"));
}

TEST_F(TokenizerTest, HangulIsDecomposedButNotSplit) {
  EXPECT_THAT(Pre("한국어"), ElementsAre("\u1112\u1161\u11AB\u1100\u116E\u11A8\u110B\u1165"));
  // Kana are not spaced out; the dakuten of が (NFD: か + U+3099, an Mn) is stripped like an
  // accent.
  EXPECT_THAT(Pre("ひらがなテスト"), ElementsAre("ひらかなテスト"));
}

TEST_F(TokenizerTest, SpacesOutCjkIdeographs) {
  EXPECT_THAT(Pre("mixed中文text"), ElementsAre("mixed", "中", "文", "text"));
  EXPECT_THAT(Pre("東京の天気"), ElementsAre("東", "京", "の", "天", "気"));
  EXPECT_THAT(Pre("a\U00020000b"), ElementsAre("a", "\U00020000", "b"));  // Ext B
  // HF's ranges skip U+2B820..U+2B91F (its table says 0x2B920..=0x2CEAF).
  EXPECT_THAT(Pre("a\U0002B820b"), ElementsAre("a\U0002B820b"));
  EXPECT_THAT(Pre("a\U0002B920b"), ElementsAre("a", "\U0002B920", "b"));
  EXPECT_THAT(Ids("中文"), ElementsAre(kZhong, kWen));
}

TEST_F(TokenizerTest, CleanTextDropsControlsAndMapsWhitespace) {
  EXPECT_THAT(Pre("con\atrol"), ElementsAre("control"));
  EXPECT_THAT(Pre(std::string_view("a\0b", 3)), ElementsAre("ab"));
  EXPECT_THAT(Pre("a\uFFFDb"), ElementsAre("ab"));
  EXPECT_THAT(Pre("zero\u200Bwidth"), ElementsAre("zerowidth"));  // Cf
  EXPECT_THAT(Pre("a\u200Db"), ElementsAre("ab"));                // ZWJ, Cf
  EXPECT_THAT(Pre("a\uE000b"), ElementsAre("ab"));                // private use, Co
  EXPECT_THAT(Pre("a\u0378b"), ElementsAre("ab"));                // unassigned, Cn
  EXPECT_THAT(Pre("a\x0B"
                  "b\x0C"
                  "c\x7F"
                  "d"),
              ElementsAre("abcd"));                 // Cc, even if White_Space
  EXPECT_THAT(Pre("a\u0085b"), ElementsAre("ab"));  // NEL is Cc: filtered before the space map
  EXPECT_THAT(Pre("tabs\tand\nnewlines\r\n"), ElementsAre("tabs", "and", "newlines"));
  EXPECT_THAT(Pre("a\u00A0b\u3000c\u2028d\u2009e"), ElementsAre("a", "b", "c", "d", "e"));
}

TEST_F(TokenizerTest, NoLowercaseKeepsCaseAndAccents) {
  auto cased = Make(/*lowercase=*/false);
  ASSERT_NE(cased, nullptr);
  auto words = cased->PreTokenize("Café, Hello");
  ASSERT_TRUE(words.ok());
  EXPECT_THAT(*words, ElementsAre("Café", ",", "Hello"));
  auto ids = cased->Tokenize("Hello hello");
  ASSERT_TRUE(ids.ok());
  EXPECT_THAT(*ids, ElementsAre(kUnk, kHello));
}

TEST_F(TokenizerTest, MatchesSpecialTokensVerbatimInRawText) {
  EXPECT_THAT(Pre("a[SEP]b"), ElementsAre("a", "[SEP]", "b"));
  EXPECT_THAT(Ids("hello[SEP]world [CLS]"), ElementsAre(kHello, kSep, kWorld, kCls));
  // Only the exact raw spelling matches (special tokens are not normalised).
  EXPECT_THAT(Ids("[sep]"), ElementsAre(kLBracket, kSepWord, kRBracket));
  EXPECT_THAT(Ids("[SE\aP]"), ElementsAre(kLBracket, kSepWord, kRBracket));
  EXPECT_THAT(Ids("[SEP"), ElementsAre(kLBracket, kSepWord));

  auto plain = Make(/*lowercase=*/true, /*match_special=*/false);
  ASSERT_NE(plain, nullptr);
  auto ids = plain->Tokenize("a[SEP]");
  ASSERT_TRUE(ids.ok());
  EXPECT_THAT(*ids, ElementsAre(kA, kLBracket, kSepWord, kRBracket));
}

// ---- WordPiece ----------------------------------------------------------------------------------

TEST_F(TokenizerTest, GreedyLongestMatchFirst) {
  EXPECT_THAT(Ids("unaffable"), ElementsAre(kUn, kAff, kAble));
  EXPECT_THAT(Ids("Hello, world!"), ElementsAre(kHello, kComma, kWorld, kBang));
  EXPECT_THAT(Ids("Café"), ElementsAre(kCafe));
  EXPECT_THAT(Ids("aaaa"), ElementsAre(kA, kContAA, kContA));
  // Greedy, not optimal: "ab" + "##c" although "a" + "##bc" also exists.
  EXPECT_THAT(Ids("abc"), ElementsAre(kAB, kContC));
}

TEST_F(TokenizerTest, UnmatchedPieceMakesTheWholeWordUnk) {
  EXPECT_THAT(Ids("hello unaffablez world"), ElementsAre(kHello, kUnk, kWorld));
  EXPECT_THAT(Ids("🤖"), ElementsAre(kUnk));
  EXPECT_THAT(Ids("abc##"), ElementsAre(kAB, kContC, kUnk, kUnk));  // '#' is punctuation
}

TEST_F(TokenizerTest, WordsOverMaxCharsAreUnkCountingCodePoints) {
  // 100 x 'a' -> a + 49 x ##aa + ##a; 101 -> [UNK].
  std::vector<int32_t> expected = {kA};
  for (int i = 0; i < 49; ++i) expected.push_back(kContAA);
  expected.push_back(kContA);
  EXPECT_THAT(Ids(std::string(100, 'a')), ElementsAreArray(expected));
  EXPECT_THAT(Ids(std::string(101, 'a') + " hello"), ElementsAre(kUnk, kHello));
  // 100 x σ is 200 bytes but 100 code points: still tokenised.
  std::string sigmas;
  for (int i = 0; i < 100; ++i) sigmas += "σ";
  auto ids = Ids(sigmas);
  ASSERT_EQ(ids.size(), 100u);
  EXPECT_EQ(ids[0], kSigma);
  EXPECT_EQ(ids[99], kContSigma);
  EXPECT_THAT(Ids(sigmas + "σ"), ElementsAre(kUnk));

  auto short_words = Make(true, true, /*max_chars=*/3);
  ASSERT_NE(short_words, nullptr);
  auto s = short_words->Tokenize("aaa aaaa");
  ASSERT_TRUE(s.ok());
  EXPECT_THAT(*s, ElementsAre(kA, kContAA, kUnk));
}

// ---- Invalid UTF-8 ------------------------------------------------------------------------------

TEST_F(TokenizerTest, InvalidUtf8IsInvalidArgumentWithOffset) {
  struct Case {
    std::string text;
    size_t offset;
  };
  const Case cases[] = {
      {"ab\xFF"
       "cd",
       2},                      // never valid
      {"\x80", 0},              // stray continuation
      {"ok \xC0\xAF", 3},       // overlong '/'
      {"xx\xE0\x80\xAF", 2},    // overlong 3-byte
      {"\xED\xA0\x80", 0},      // UTF-16 surrogate
      {"\xF4\x90\x80\x80", 0},  // > U+10FFFF
      {"hello \xE4\xB8", 6},    // truncated at end
      {"\xE4\xB8 x", 0},        // truncated before ASCII
      {"é\xF0\x9F\xA4", 2},     // truncated 4-byte
  };
  for (const Case& c : cases) {
    auto ids = tok_->Tokenize(c.text);
    ASSERT_FALSE(ids.ok()) << c.text;
    EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(ids.status().message()),
                HasSubstr(absl::StrCat("byte offset ", c.offset)));
    EXPECT_EQ(FindInvalidUtf8(c.text), c.offset);
    EXPECT_FALSE(tok_->PreTokenize(c.text).ok());
  }
  EXPECT_EQ(FindInvalidUtf8("ascii é 中 🤖 \U0010FFFF"), std::string_view::npos);
}

// ---- EncodePair ---------------------------------------------------------------------------------

std::vector<int32_t> Seq(int n, int32_t base) {
  std::vector<int32_t> v(n);
  for (int i = 0; i < n; ++i) v[i] = base + i;
  return v;
}

// Kept (query, doc) lengths of an encoding built from Seq(.., 1000) / Seq(.., 2000).
std::pair<int, int> Kept(const Encoding& e) {
  int q = 0, d = 0;
  for (int64_t id : e.input_ids) {
    if (id >= 1000 && id < 2000) ++q;
    if (id >= 2000) ++d;
  }
  return {q, d};
}

TEST_F(TokenizerTest, EncodePairLayoutAndTokenTypes) {
  Encoding e = tok_->EncodePair({50, 51}, {60, 61, 62}, 512);
  EXPECT_THAT(e.input_ids, ElementsAre(kCls, 50, 51, kSep, 60, 61, 62, kSep));
  EXPECT_THAT(e.token_type_ids, ElementsAre(0, 0, 0, 0, 1, 1, 1, 1));
  Encoding empty = tok_->EncodePair({}, {}, 512);
  EXPECT_THAT(empty.input_ids, ElementsAre(kCls, kSep, kSep));
  EXPECT_THAT(empty.token_type_ids, ElementsAre(0, 0, 1));
}

TEST_F(TokenizerTest, EncodePairLongestFirstCases) {
  struct Case {
    int nq, nd, max_length, kq, kd;
  };
  const Case cases[] = {
      {3, 4, 10, 3, 4},   // fits exactly
      {2, 20, 10, 2, 5},  // short query: only the doc is cut, to budget - n1
      {20, 2, 10, 5, 2},  // short doc: only the query is cut
      {6, 8, 10, 3, 4},   // both long, query shorter: query budget/2, doc the rest
      {8, 6, 10, 4, 3},   // both long, doc shorter: doc budget/2, query the rest
      {6, 6, 10, 3, 4},   // equal: the first (query) gets budget/2
      {10, 12, 8, 2, 3},  // n1 > budget
      {0, 20, 10, 0, 7},  // empty query
      {4, 4, 11, 4, 4},   // budget 8: fits
      {5, 4, 11, 4, 4},   // budget 8: n1 = 4 = budget/2 -> 4 + 4
      {5, 5, 11, 4, 4},   // budget 8, even: both 4
      {5, 5, 2, 0, 0},    // max_length < 3 acts as 3
  };
  for (const Case& c : cases) {
    Encoding e = tok_->EncodePair(Seq(c.nq, 1000), Seq(c.nd, 2000), c.max_length);
    EXPECT_EQ(Kept(e), std::make_pair(c.kq, c.kd))
        << "nq=" << c.nq << " nd=" << c.nd << " max_length=" << c.max_length;
  }
}

// Properties of longest_first over all small sizes: each side keeps a prefix; the total is
// min(nq + nd, budget) + 3; the kept lengths follow the README rule.
TEST_F(TokenizerTest, EncodePairTruncationProperties) {
  for (int max_length = 3; max_length <= 20; ++max_length) {
    const int budget = max_length - 3;
    for (int nq = 0; nq <= 16; ++nq) {
      for (int nd = 0; nd <= 16; ++nd) {
        Encoding e = tok_->EncodePair(Seq(nq, 1000), Seq(nd, 2000), max_length);
        const auto [kq, kd] = Kept(e);
        SCOPED_TRACE(absl::StrCat("nq=", nq, " nd=", nd, " max_length=", max_length));
        ASSERT_EQ(static_cast<int>(e.input_ids.size()), std::min(nq + nd, budget) + 3);
        ASSERT_EQ(e.token_type_ids.size(), e.input_ids.size());
        ASSERT_EQ(e.input_ids[kq + 1], kSep);
        for (int i = 0; i < kq; ++i) ASSERT_EQ(e.input_ids[1 + i], 1000 + i);
        for (int i = 0; i < kd; ++i) ASSERT_EQ(e.input_ids[kq + 2 + i], 2000 + i);
        for (size_t i = 0; i < e.token_type_ids.size(); ++i) {
          ASSERT_EQ(e.token_type_ids[i], static_cast<int>(i) < kq + 2 ? 0 : 1);
        }
        if (nq + nd > budget) {
          const int n1 = std::min(nq, nd);
          if (n1 <= budget / 2) {  // only the longer side is cut
            ASSERT_EQ(std::min(kq, kd), n1);
          } else {  // both cut to halves, the extra odd token to the longer (or the doc if equal)
            ASSERT_EQ(nq > nd ? kq : kd, budget / 2 + budget % 2);
            ASSERT_EQ(nq > nd ? kd : kq, budget / 2);
          }
        }
      }
    }
  }
}

// ---- EncodePairChunks ---------------------------------------------------------------------------

TEST_F(TokenizerTest, ChunksOfAFittingPairEqualEncodePair) {
  const auto q = Seq(5, 1000), d = Seq(7, 2000);
  auto chunks = tok_->EncodePairChunks(q, d, 15, 3, 4);
  Encoding one = tok_->EncodePair(q, d, 15);
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].input_ids, one.input_ids);
  EXPECT_EQ(chunks[0].token_type_ids, one.token_type_ids);
}

TEST_F(TokenizerTest, ChunksAreOverlappingWindowsBesideTheQuery) {
  // budget 13, query 4 -> w = 9; overlap 3 -> windows start 0, 6, 12, 18, 24 (last one short).
  const auto q = Seq(4, 1000), d = Seq(30, 2000);
  auto chunks = tok_->EncodePairChunks(q, d, 16, 3, 10);
  const int starts[] = {0, 6, 12, 18, 24};
  ASSERT_EQ(chunks.size(), 5u);
  for (size_t c = 0; c < chunks.size(); ++c) {
    const Encoding& e = chunks[c];
    EXPECT_LE(e.input_ids.size(), 16u);
    std::vector<int64_t> expected = {kCls, 1000, 1001, 1002, 1003, kSep};
    const int end = std::min(starts[c] + 9, 30);
    for (int i = starts[c]; i < end; ++i) expected.push_back(2000 + i);
    expected.push_back(kSep);
    EXPECT_EQ(e.input_ids, expected) << "chunk " << c;
    ASSERT_EQ(e.token_type_ids.size(), e.input_ids.size());
    EXPECT_EQ(e.token_type_ids[5], 0);
    EXPECT_EQ(e.token_type_ids[6], 1);
  }
  // The windows cover the whole doc.
  EXPECT_EQ(chunks.back().input_ids[chunks.back().input_ids.size() - 2], 2029);
}

TEST_F(TokenizerTest, ChunksRespectMaxChunksAndClampOverlap) {
  const auto q = Seq(4, 1000), d = Seq(30, 2000);
  auto first_doc_id = [](const Encoding& e) { return e.input_ids[6]; };  // after [CLS] q(4) [SEP]
  auto capped = tok_->EncodePairChunks(q, d, 16, 3, 2);
  ASSERT_EQ(capped.size(), 2u);
  EXPECT_EQ(first_doc_id(capped[1]), 2006);

  auto big_overlap = tok_->EncodePairChunks(q, d, 16, 100, 3);  // clamped to w/2 = 4: stride 5
  ASSERT_EQ(big_overlap.size(), 3u);
  EXPECT_EQ(first_doc_id(big_overlap[1]), 2005);
  EXPECT_EQ(first_doc_id(big_overlap[2]), 2010);

  auto no_overlap = tok_->EncodePairChunks(q, d, 16, -5, 10);  // clamped to 0: stride 9
  ASSERT_EQ(no_overlap.size(), 4u);
  EXPECT_EQ(first_doc_id(no_overlap[3]), 2027);

  EXPECT_EQ(tok_->EncodePairChunks(q, d, 16, 3, 0).size(), 1u);  // max_chunks < 1 acts as 1
}

TEST_F(TokenizerTest, ChunksCutALongQueryToHalfTheBudget) {
  const auto q = Seq(20, 1000), d = Seq(30, 2000);
  auto chunks = tok_->EncodePairChunks(q, d, 16, 0, 10);  // query -> 6, w = 7
  ASSERT_FALSE(chunks.empty());
  for (const Encoding& e : chunks) {
    EXPECT_EQ(Kept(e).first, 6);
    EXPECT_LE(e.input_ids.size(), 16u);
  }
  EXPECT_EQ(chunks.size(), 5u);  // ceil(30 / 7)
  // Long query, empty doc: still one encoding.
  auto only_query = tok_->EncodePairChunks(Seq(40, 1000), {}, 16, 2, 3);
  ASSERT_EQ(only_query.size(), 1u);
  EXPECT_EQ(Kept(only_query[0]), std::make_pair(6, 0));
}

// ---- Create -------------------------------------------------------------------------------------

TEST_F(TokenizerTest, Accessors) {
  EXPECT_EQ(tok_->cls_id(), kCls);
  EXPECT_EQ(tok_->sep_id(), kSep);
  EXPECT_EQ(tok_->pad_id(), 0);
  EXPECT_EQ(tok_->unk_id(), kUnk);
  EXPECT_EQ(tok_->vocab_size(), kVocab.size());
}

TEST(TokenizerCreateTest, FailsOnMissingEmptyOrIncompleteVocab) {
  WordPieceTokenizer::Options options;
  auto no_path = WordPieceTokenizer::Create(options);
  EXPECT_EQ(no_path.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(no_path.status().message()), HasSubstr("vocab_path"));

  options.vocab_path = TempPath("does_not_exist.txt");
  auto missing = WordPieceTokenizer::Create(options);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr(options.vocab_path));

  options.vocab_path = WriteFile("empty.txt", "");
  auto empty = WordPieceTokenizer::Create(options);
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(empty.status().message()), HasSubstr(options.vocab_path));
  EXPECT_THAT(std::string(empty.status().message()), HasSubstr("empty"));
  std::remove(options.vocab_path.c_str());

  for (const char* required : {"[PAD]", "[UNK]", "[CLS]", "[SEP]"}) {
    std::vector<std::string> tokens;
    for (const auto& t : kVocab) {
      if (t != required) tokens.push_back(t);
    }
    options.vocab_path = WriteFile("incomplete.txt", VocabText(tokens));
    auto incomplete = WordPieceTokenizer::Create(options);
    EXPECT_EQ(incomplete.status().code(), absl::StatusCode::kInvalidArgument) << required;
    EXPECT_THAT(std::string(incomplete.status().message()), HasSubstr(required));
    EXPECT_THAT(std::string(incomplete.status().message()), HasSubstr(options.vocab_path));
    std::remove(options.vocab_path.c_str());
  }

  options.vocab_path = WriteFile("bad_option.txt", VocabText(kVocab));
  options.max_input_chars_per_word = 0;
  auto bad = WordPieceTokenizer::Create(options);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("max_input_chars_per_word"));
  std::remove(options.vocab_path.c_str());
}

TEST(TokenizerCreateTest, AcceptsCrlfVocab) {
  WordPieceTokenizer::Options options;
  options.vocab_path = WriteFile("crlf.txt", VocabText(kVocab, "\r\n"));
  auto tok = WordPieceTokenizer::Create(options);
  ASSERT_TRUE(tok.ok()) << tok.status();
  auto ids = (*tok)->Tokenize("hello world");
  ASSERT_TRUE(ids.ok());
  EXPECT_THAT(*ids, ElementsAre(kHello, kWorld));
  std::remove(options.vocab_path.c_str());
}

// ---- Concurrency --------------------------------------------------------------------------------

TEST_F(TokenizerTest, ConcurrentTokenizeMatchesSequential) {
  const std::vector<std::string> texts = {"Hello, world!", "unaffable café", "mixed中文text",
                                          "a[SEP]b σσσ", std::string(150, 'a')};
  std::vector<std::vector<int32_t>> expected;
  for (const auto& t : texts) expected.push_back(Ids(t));
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int iter = 0; iter < 500; ++iter) {
        for (size_t i = 0; i < texts.size(); ++i) {
          auto ids = tok_->Tokenize(texts[i]);
          if (!ids.ok() || *ids != expected[i]) ++mismatches[t];
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_THAT(mismatches, ElementsAre(0, 0, 0, 0));
}

// ---- Real vocab ---------------------------------------------------------------------------------

TEST(TokenizerRealVocabTest, KnownIds) {
  const std::string path = absl::StrCat(RERANK_MINILM_DIR, "/vocab.txt");  // vendored
  ASSERT_TRUE(std::ifstream(path)) << "missing vendored file " << path;
  WordPieceTokenizer::Options options;
  options.vocab_path = path;
  auto tok = WordPieceTokenizer::Create(options);
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->vocab_size(), 30522u);
  EXPECT_EQ((*tok)->pad_id(), 0);
  EXPECT_EQ((*tok)->unk_id(), 100);
  EXPECT_EQ((*tok)->cls_id(), 101);
  EXPECT_EQ((*tok)->sep_id(), 102);
  auto ids = (*tok)->Tokenize("Hello, world! Unaffable Berlin.");
  ASSERT_TRUE(ids.ok());
  // hello , world ! una ##ffa ##ble berlin .
  EXPECT_THAT(*ids, ElementsAre(7592, 1010, 2088, 999, 14477, 20961, 3468, 4068, 1012));
}

}  // namespace
}  // namespace rerank

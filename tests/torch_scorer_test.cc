// TorchScorer with the real tiny exported model (tests/test_models.cmake): the default export is
// padding-free (it packs the real tokens), so a row's score must not depend on how much padding
// or which other rows share its forward.
#include "server/torch_scorer.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "server/batcher.h"
#include "tests/testing/test_dirs.h"

namespace rerank {
namespace {

Encoding Pair(int query_len, int doc_len, int64_t seed) {
  Encoding e;
  e.input_ids.push_back(101);
  e.token_type_ids.push_back(0);
  for (int i = 0; i < query_len; ++i) {
    e.input_ids.push_back(1000 + (seed * 31 + i * 7) % 20000);
    e.token_type_ids.push_back(0);
  }
  e.input_ids.push_back(102);
  e.token_type_ids.push_back(0);
  for (int i = 0; i < doc_len; ++i) {
    e.input_ids.push_back(1000 + (seed * 17 + i * 13) % 20000);
    e.token_type_ids.push_back(1);
  }
  e.input_ids.push_back(102);
  e.token_type_ids.push_back(1);
  return e;
}

std::unique_ptr<TorchScorer> Load(const std::string& precision) {
  InitTorchRuntime(2, 1);
  TorchScorer::Options o;
  o.model_path = testing::TinyModelDir() + "/model.pt";
  o.precision = precision;
  o.intra_op_threads = 2;
  auto s = TorchScorer::Create(o);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *std::move(s) : nullptr;
}

TEST(TorchScorerTest, DefaultExportIsPaddingFreeAndScoresDoNotDependOnTheBatch) {
  for (const std::string precision : {"fp32", "bf16"}) {
    SCOPED_TRACE(precision);
    auto scorer = Load(precision);
    ASSERT_NE(scorer, nullptr);
    EXPECT_TRUE(scorer->PaddingFree());
    // Ragged rows (lengths 5 to 120), alone and all in one padded forward.
    std::vector<Encoding> rows;
    for (int i = 0; i < 7; ++i) rows.push_back(Pair(1 + i, 1 + (i * 37) % 115, i));
    std::vector<const Encoding*> ptrs;
    int64_t longest = 0;
    for (const Encoding& e : rows) {
      ptrs.push_back(&e);
      longest = std::max<int64_t>(longest, e.input_ids.size());
    }
    auto together = scorer->Score(BuildScoreBatch(ptrs, longest, 0));
    ASSERT_TRUE(together.ok()) << together.status();
    ASSERT_EQ(together->size(), rows.size());
    float lo = 1e9, hi = -1e9;
    for (size_t i = 0; i < rows.size(); ++i) {
      // Alone, padded to the batch's width, and alone without padding.
      for (int64_t width : {static_cast<int64_t>(rows[i].input_ids.size()), longest}) {
        auto alone = scorer->Score(BuildScoreBatch({&rows[i]}, width, 0));
        ASSERT_TRUE(alone.ok()) << alone.status();
        // fp32: float rounding only; bf16: GEMMs of a different M may block differently.
        EXPECT_NEAR((*alone)[0], (*together)[i], precision == "fp32" ? 1e-5 : 2e-2)
            << "row " << i << " width " << width;
      }
      lo = std::min(lo, (*together)[i]), hi = std::max(hi, (*together)[i]);
    }
    EXPECT_GT(hi - lo, 0.05) << "the rows' scores must differ for the comparison to mean much";
  }
}

}  // namespace
}  // namespace rerank

// The model boundary: a Scorer turns one padded batch of token rows into one raw logit per row.
// TorchScorer (server/torch_scorer.h) runs a TorchScript cross-encoder; tests inject fakes.
#ifndef RERANK_SERVER_SCORER_H_
#define RERANK_SERVER_SCORER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace rerank {

// A padded batch, row-major [rows, seq_len]. Padding positions have attention_mask 0 and
// input_ids = [PAD]. Built by the batcher, consumed by one Scorer call.
struct ScoreBatch {
  int64_t rows = 0;
  int64_t seq_len = 0;
  std::vector<int64_t> input_ids;
  std::vector<int64_t> attention_mask;
  std::vector<int64_t> token_type_ids;
};

// Not thread-safe: each batcher worker owns its own Scorer (its own module replica), so no lock
// is held around inference.
class Scorer {
 public:
  virtual ~Scorer() = default;
  // One raw logit per row. Errors (shape mismatch, torch failure) are values, never exceptions.
  virtual absl::StatusOr<std::vector<float>> Score(const ScoreBatch& batch) = 0;
  // True when a forward's cost follows the rows' real tokens, not rows x seq_len (the model
  // packs the real tokens and never computes on padding). The batcher then plans the fewest
  // forwards its limits allow instead of trading forwards against padding.
  virtual bool PaddingFree() const { return false; }
};

// Creates one Scorer per worker. Called on the worker's own thread, so per-thread runtime
// settings (torch intra-op threads) apply to that worker.
using ScorerFactory = std::function<absl::StatusOr<std::unique_ptr<Scorer>>()>;

}  // namespace rerank

#endif  // RERANK_SERVER_SCORER_H_

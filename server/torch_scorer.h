// Scorer backed by a TorchScript cross-encoder (LibTorch). Input names/contract:
// forward(input_ids, attention_mask, token_type_ids), int64 [B, T] each -> logits [B] or [B, 1].
// This is the only translation unit that includes torch headers: torch exceptions are caught
// here and returned as absl::Status.
#ifndef RERANK_SERVER_TORCH_SCORER_H_
#define RERANK_SERVER_TORCH_SCORER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/scorer.h"

namespace rerank {

class TorchScorer final : public Scorer {
 public:
  struct Options {
    std::string model_path;  // model.pt (TorchScript)
    // fp32: as exported. bf16: matmuls in bfloat16 through oneDNN (AVX-512 BF16), see .cc for how.
    std::string precision = "fp32";
    int intra_op_threads = 1;  // torch threads used by this scorer's calling thread
  };
  // Loads the module (each call loads its own replica). Must be called on the thread that will
  // call Score(), because torch's intra-op thread count is per calling thread.
  static absl::StatusOr<std::unique_ptr<TorchScorer>> Create(const Options& options);
  ~TorchScorer() override;

  absl::StatusOr<std::vector<float>> Score(const ScoreBatch& batch) override;
  // The module's `rerank_padding_free` attribute (tools/export_model.py's default export).
  bool PaddingFree() const override;

 private:
  struct Impl;
  explicit TorchScorer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Process-wide torch settings that must be made once, before any model is loaded: inter-op
// threads, executor mode, and OpenBLAS's thread count. OpenBLAS only runs fp32 GEMMs (bf16 GEMMs
// are oneDNN's, on torch's intra-op threads); its pool is process-wide, so pass
// intra_op_threads with a single worker and 1 with several (workers x threads <= cores).
void InitTorchRuntime(int intra_op_threads, int blas_threads);

}  // namespace rerank

#endif  // RERANK_SERVER_TORCH_SCORER_H_

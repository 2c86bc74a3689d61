#include "server/torch_scorer.h"

#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <dlfcn.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/script.h>

#include <mutex>

#include "absl/strings/str_cat.h"
#include "server/fused_ops/fused_ops.h"

namespace rerank {

struct TorchScorer::Impl {
  torch::jit::Module module;
  Options options;
  bool autocast_bf16 = false;
  bool padding_free = false;
};

namespace {

// OpenBLAS reads OPENBLAS_NUM_THREADS when the library loads, before main(); set it through its
// API instead, so the count follows the configuration whatever the environment says.
void SetBlasThreads(int n) {
  using SetThreadsFn = void (*)(int);
  for (const char* sym : {"openblas_set_num_threads", "goto_set_num_threads"}) {
    if (auto fn = reinterpret_cast<SetThreadsFn>(dlsym(RTLD_DEFAULT, sym))) fn(n);
  }
}

}  // namespace

void InitTorchRuntime(int intra_op_threads, int blas_threads) {
  static std::once_flag once;
  std::call_once(once, [&] {
    SetBlasThreads(blas_threads);
    try {
      at::set_num_interop_threads(1);
    } catch (const std::exception&) {
      // Already set (a second runtime in tests): harmless.
    }
    at::set_num_threads(intra_op_threads);
    // Shapes change every batch (rows x longest row); the profiling executor would re-profile
    // and specialise on them. The simple executor runs the graph as exported.
    torch::jit::getProfilingMode() = false;
    torch::jit::getExecutorMode() = false;
    torch::jit::setGraphExecutorOptimize(false);
  });
}

TorchScorer::TorchScorer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TorchScorer::~TorchScorer() = default;

absl::StatusOr<std::unique_ptr<TorchScorer>> TorchScorer::Create(const Options& options) {
  if (options.precision != "fp32" && options.precision != "bf16") {
    return absl::InvalidArgumentError(
        absl::StrCat("model.precision: must be fp32 or bf16, got '", options.precision, "'"));
  }
  if (options.intra_op_threads < 1) {
    return absl::InvalidArgumentError("execution.intra_op_threads: must be >= 1");
  }
  at::set_num_threads(options.intra_op_threads);
  // Models exported with the fused ops call torch.ops.rerank.*: referencing the fused-ops object
  // keeps it (and its TORCH_LIBRARY registration) in every binary that links this scorer.
  static const int fused_ops = rerank::fused::RegisteredOpCount();
  (void)fused_ops;
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  try {
    c10::InferenceMode guard;
    impl->module = torch::jit::load(options.model_path, torch::kCPU);
    impl->module.eval();
    impl->padding_free = impl->module.hasattr("rerank_padding_free") &&
                         impl->module.attr("rerank_padding_free").isBool() &&
                         impl->module.attr("rerank_padding_free").toBool();
    if (options.precision == "bf16") {
      if (impl->module.hasattr("rerank_mixed_precision")) {
        // Exported by tools/export_model.py: cast exactly its FastLinear submodules. Their GEMMs
        // run on oneDNN's AVX-512 BF16 kernels while embeddings, LayerNorm and the residual
        // stream stay float32 (fidelity vs fp32 is measured in bench/RESULTS.md).
        int cast = 0;
        for (const auto& sub : impl->module.named_modules()) {
          const auto& qn = sub.value.type()->name();
          if (qn.has_value() && qn->name() == "FastLinear") {
            torch::jit::Module m = sub.value;  // a handle to the same module object
            m.to(torch::kBFloat16);
            ++cast;
          }
        }
        if (cast == 0) {
          return absl::InvalidArgumentError(
              absl::StrCat("model.precision: bf16 requested but ", options.model_path,
                           " declares rerank_mixed_precision and has no FastLinear submodules"));
        }
      } else {
        // A TorchScript model from elsewhere: CPU autocast decides per op (GEMMs in bf16).
        impl->autocast_bf16 = true;
      }
    }
  } catch (const c10::Error& e) {
    return absl::InvalidArgumentError(absl::StrCat("model.dir: cannot load TorchScript ",
                                                   options.model_path, ": ",
                                                   e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("model.dir: cannot load TorchScript ", options.model_path, ": ", e.what()));
  }
  return std::unique_ptr<TorchScorer>(new TorchScorer(std::move(impl)));
}

bool TorchScorer::PaddingFree() const { return impl_->padding_free; }

absl::StatusOr<std::vector<float>> TorchScorer::Score(const ScoreBatch& batch) {
  const int64_t n = batch.rows * batch.seq_len;
  if (batch.rows <= 0 || batch.seq_len <= 0 || static_cast<int64_t>(batch.input_ids.size()) != n ||
      static_cast<int64_t>(batch.attention_mask.size()) != n ||
      static_cast<int64_t>(batch.token_type_ids.size()) != n) {
    return absl::InternalError(
        absl::StrCat("malformed batch: rows=", batch.rows, " seq_len=", batch.seq_len));
  }
  try {
    c10::InferenceMode guard;
    auto opts = torch::TensorOptions().dtype(torch::kInt64);
    // from_blob: no copy; the batch outlives the forward call.
    auto shape = std::vector<int64_t>{batch.rows, batch.seq_len};
    auto ids = torch::from_blob(const_cast<int64_t*>(batch.input_ids.data()), shape, opts);
    auto mask = torch::from_blob(const_cast<int64_t*>(batch.attention_mask.data()), shape, opts);
    auto types = torch::from_blob(const_cast<int64_t*>(batch.token_type_ids.data()), shape, opts);
    std::vector<torch::jit::IValue> inputs{ids, mask, types};
    torch::jit::IValue out;
    if (impl_->autocast_bf16) {
      at::autocast::set_cpu_enabled(true);
      at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
      out = impl_->module.forward(inputs);
      at::autocast::set_cpu_enabled(false);
      at::autocast::clear_cache();
    } else {
      out = impl_->module.forward(inputs);
    }
    at::Tensor logits;
    if (out.isTensor()) {
      logits = out.toTensor();
    } else if (out.isTuple() && !out.toTupleRef().elements().empty() &&
               out.toTupleRef().elements()[0].isTensor()) {
      logits = out.toTupleRef().elements()[0].toTensor();
    } else {
      return absl::InternalError("model output is not a tensor (expected logits [B] or [B, 1])");
    }
    logits = logits.to(torch::kFloat32).contiguous();
    if (logits.dim() == 2 && logits.size(1) == 1) logits = logits.squeeze(1);
    if (logits.dim() != 1 || logits.size(0) != batch.rows) {
      return absl::InternalError(absl::StrCat("model output has shape ", c10::str(logits.sizes()),
                                              ", expected [", batch.rows, "] or [", batch.rows,
                                              ", 1]"));
    }
    const float* p = logits.data_ptr<float>();
    return std::vector<float>(p, p + batch.rows);
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("inference failed: ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("inference failed: ", e.what()));
  }
}

}  // namespace rerank

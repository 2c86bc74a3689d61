#include "bench/roofline.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/script.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iterator>
#include <map>
#include <regex>

#include "nlohmann/json.hpp"
#include "server/torch_scorer.h"

namespace rerank::bench {
namespace {

using Clock = std::chrono::steady_clock;

// The encoder's shape, read from the module's parameters (exported InferenceCrossEncoder, fused
// or plain: layers.<i>.qkv / ffn_in; or a HF-named BertForSequenceClassification).
struct ModelShape {
  int64_t layers = 0;
  int64_t hidden = 0;
  int64_t intermediate = 0;
};

bool ReadShape(const std::string& path, ModelShape* out) {
  torch::jit::Module m = torch::jit::load(path, torch::kCPU);
  static const std::regex kQkv(R"((^|\.)layers\.\d+\.qkv\.weight$)");
  static const std::regex kQuery(R"(layer\.\d+\.attention\.self\.query\.weight$)");
  static const std::regex kFfn(R"((layers\.0\.ffn_in|layer\.0\.intermediate\.dense)\.weight$)");
  for (const auto& p : m.named_parameters(/*recurse=*/true)) {
    if (std::regex_search(p.name, kQkv) || std::regex_search(p.name, kQuery)) {
      ++out->layers;
      out->hidden = p.value.size(1);
    } else if (std::regex_search(p.name, kFfn)) {
      out->intermediate = p.value.size(0);
    }
  }
  return out->layers > 0 && out->hidden > 0 && out->intermediate > 0;
}

// FLOPs of one pair of `len` real tokens through the encoder (multiply-add = 2): per layer the
// four dense GEMMs 2*L*(4*H*H + 2*H*I) and attention's QK^T and PV 2*2*L*L*H.
double PairFlops(const ModelShape& s, int64_t len) {
  const double l = static_cast<double>(len), h = static_cast<double>(s.hidden),
               i = static_cast<double>(s.intermediate);
  return static_cast<double>(s.layers) * (2 * l * (4 * h * h + 2 * h * i) + 4 * l * l * h);
}

// at::linear([m, k] x [n, k]^T + bias) in `dtype`; Run() adds measured time and FLOPs, so the
// measurement can be interleaved with the forward's (both see the same load on a shared machine).
class GemmBench {
 public:
  GemmBench(int64_t m, int64_t k, int64_t n, at::ScalarType dtype) {
    c10::InferenceMode guard;
    auto opts = at::TensorOptions().dtype(dtype);
    x_ = at::randn({m, k}, opts), w_ = at::randn({n, k}, opts), b_ = at::randn({n}, opts);
    flops_per_call_ = 2.0 * m * k * n;
    for (int i = 0; i < 3; ++i) at::linear(x_, w_, b_);  // warm up (oneDNN primitive cache)
  }
  void Run(double seconds) {
    c10::InferenceMode guard;
    const auto t0 = Clock::now();
    double elapsed = 0;
    for (int iters = 0; elapsed < seconds || iters < 2; ++iters) {
      at::linear(x_, w_, b_);
      flops_ += flops_per_call_;
      elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
    }
    seconds_ += elapsed;
  }
  double flops() const { return flops_; }
  double seconds() const { return seconds_; }
  double Gflops() const { return flops_ / seconds_ / 1e9; }

 private:
  at::Tensor x_, w_, b_;
  double flops_per_call_ = 0, flops_ = 0, seconds_ = 0;
};

// Per-op profile categories. Top-level ops only (the TorchScript interpreter's calls): an
// aten::linear's inner addmm/mkldnn calls are part of its time.
std::string Category(const std::string& name, const std::vector<std::vector<int64_t>>& shapes) {
  if (name == "aten::linear" || name == "aten::addmm" || name == "aten::mm") return "GEMMs";
  if (name == "aten::matmul" || name == "aten::bmm" || name == "aten::softmax" ||
      name == "aten::_softmax" || name == "rerank::attention" ||
      name == "rerank::attention_packed") {
    return "attention";
  }
  if (name == "aten::add" || name == "aten::add_") {
    // The plain module's mask add (scores [B, H, T, T] + mask) is attention; [B, T, H] adds are
    // the residuals.
    const bool four_d = !shapes.empty() && shapes[0].size() == 4;
    return four_d ? "attention" : "LayerNorm+residual";
  }
  if (name == "aten::layer_norm" || name == "rerank::add_layernorm") return "LayerNorm+residual";
  if (name == "aten::gelu" || name == "aten::relu" || name == "rerank::bias_act") return "GELU";
  if (name == "aten::to" || name == "aten::_to_copy" || name == "aten::contiguous" ||
      name == "aten::copy_" || name == "aten::clone" || name == "aten::reshape" ||
      name == "aten::permute" || name == "aten::transpose" || name == "aten::view" ||
      name == "aten::select" || name == "aten::slice" || name == "aten::unsqueeze" ||
      name == "aten::squeeze") {
    return "casts+copies";
  }
  return "other";
}

struct ProfileRow {
  double us = 0;
  int64_t calls = 0;
};

void PrintProfile(const torch::autograd::profiler::thread_event_lists& lists, int requests,
                  double wall_ms) {
  using torch::autograd::profiler::EventKind;
  std::map<std::string, ProfileRow> by_cat, by_op;
  for (const auto& list : lists) {
    // Depth counts only operator events ("ns::op"); anything else (e.g. a TorchScript function
    // marker) is transparent.
    std::vector<const torch::autograd::profiler::LegacyEvent*> stack;
    std::vector<bool> is_op;
    for (const auto& ev : list) {
      if (ev.kind() == EventKind::PushRange) {
        const bool op = std::string(ev.name()).find("::") != std::string::npos;
        stack.push_back(&ev);
        is_op.push_back(op);
      } else if (ev.kind() == EventKind::PopRange && !stack.empty()) {
        const auto* start = stack.back();
        const bool op = is_op.back();
        stack.pop_back();
        is_op.pop_back();
        if (!op || std::count(is_op.begin(), is_op.end(), true) != 0) continue;
        const std::string name = start->name();
        const double us = start->cpuElapsedUs(ev);
        auto& c = by_cat[Category(name, start->shapes())];
        c.us += us;
        ++c.calls;
        auto& o = by_op[name];
        o.us += us;
        ++o.calls;
      }
    }
  }
  double total = 0;
  for (const auto& [k, v] : by_cat) total += v.us;
  std::printf("\nper-op profile (%d request(s), %.1f ms wall per request; top-level ops):\n",
              requests, wall_ms / requests);
  std::printf("| group | ms per request | share | calls per request |\n|---|---|---|---|\n");
  std::vector<std::pair<std::string, ProfileRow>> cats(by_cat.begin(), by_cat.end());
  std::sort(cats.begin(), cats.end(),
            [](const auto& a, const auto& b) { return a.second.us > b.second.us; });
  for (const auto& [k, v] : cats) {
    std::printf("| %s | %.1f | %.1f%% | %lld |\n", k.c_str(), v.us / 1000 / requests,
                100 * v.us / total, static_cast<long long>(v.calls / requests));
  }
  std::printf("| total (ops) | %.1f | 100%% | |\n", total / 1000 / requests);
  std::printf("\ntop ops:\n");
  std::vector<std::pair<std::string, ProfileRow>> ops(by_op.begin(), by_op.end());
  std::sort(ops.begin(), ops.end(),
            [](const auto& a, const auto& b) { return a.second.us > b.second.us; });
  for (size_t i = 0; i < ops.size() && i < 12; ++i) {
    std::printf("  %-26s %8.1f ms/request %5.1f%%  %lld calls/request\n", ops[i].first.c_str(),
                ops[i].second.us / 1000 / requests, 100 * ops[i].second.us / total,
                static_cast<long long>(ops[i].second.calls / requests));
  }
}

}  // namespace

int RunRoofline(const RooflineOptions& opts, const std::vector<RooflineRequest>& requests) {
  if (requests.empty()) {
    std::fprintf(stderr, "rerank-bench: roofline needs at least one request\n");
    return 2;
  }
  rerank::InitTorchRuntime(opts.threads, opts.threads);
  at::set_num_threads(opts.threads);
  ModelShape shape;
  try {
    if (!ReadShape(opts.model_path, &shape)) {
      std::fprintf(stderr, "rerank-bench: cannot find the encoder's layer shapes in %s\n",
                   opts.model_path.c_str());
      return 2;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rerank-bench: cannot load %s: %s\n", opts.model_path.c_str(), e.what());
    return 2;
  }
  rerank::TorchScorer::Options so;
  so.model_path = opts.model_path;
  so.precision = opts.precision;
  so.intra_op_threads = opts.threads;
  auto scorer = rerank::TorchScorer::Create(so);
  if (!scorer.ok()) {
    std::fprintf(stderr, "%s\n", scorer.status().ToString().c_str());
    return 1;
  }
  // M of the GEMMs: the rows the model's GEMMs see in the workload's mean micro-batch: rows x
  // padded length, or the real tokens for a padding-free model (it packs them).
  const bool padding_free = (*scorer)->PaddingFree();
  double m_sum = 0, pair_count = 0, real_tokens = 0, flops_per_pass = 0;
  int64_t batches = 0;
  for (const auto& r : requests) {
    for (const auto& b : r.batches) {
      double m = static_cast<double>(b.rows * b.seq_len);
      if (padding_free)
        m = static_cast<double>(std::count(b.attention_mask.begin(), b.attention_mask.end(), 1));
      m_sum += m;
      ++batches;
    }
    for (int64_t len : r.lengths) {
      flops_per_pass += PairFlops(shape, len);
      real_tokens += static_cast<double>(len);
      ++pair_count;
    }
  }
  const int64_t m = std::max<int64_t>(1, static_cast<int64_t>(m_sum / batches + 0.5));
  const int64_t h = shape.hidden, im = shape.intermediate;
  struct Gemm {
    const char* name;
    int64_t k, n;
  };
  const Gemm gemms[] = {
      {"QKV", h, 3 * h}, {"attn out", h, h}, {"intermediate", h, im}, {"output", im, h}};
  std::printf(
      "model: %lld layers, hidden %lld, intermediate %lld; GEMM M = %lld (mean micro-batch's "
      "%s); %d thread(s)\n",
      static_cast<long long>(shape.layers), static_cast<long long>(h), static_cast<long long>(im),
      static_cast<long long>(m), padding_free ? "real tokens, packed" : "rows x padded length",
      opts.threads);
  std::vector<GemmBench> bf16_gemms, fp32_gemms;
  for (const auto& g : gemms) {
    bf16_gemms.emplace_back(m, g.k, g.n, at::kBFloat16);
    fp32_gemms.emplace_back(m, g.k, g.n, at::kFloat);
  }

  auto run_request = [&](const RooflineRequest& r) {
    for (const auto& b : r.batches) {
      auto s = (*scorer)->Score(b);
      if (!s.ok()) {
        std::fprintf(stderr, "%s\n", s.status().ToString().c_str());
        return false;
      }
    }
    return true;
  };
  for (size_t i = 0; i < std::min<size_t>(3, requests.size()); ++i) {
    if (!run_request(requests[i])) return 1;
  }
  // Rounds: every GEMM shape and dtype for a slice of gemm_seconds, then a slice of the
  // forwards; the GEMM roofline and the forward are measured under the same (shared) load.
  const int64_t total = static_cast<int64_t>(requests.size()) * opts.forward_repeats;
  const int64_t rounds = std::min<int64_t>(total, 5);
  double secs = 0;
  for (int64_t round = 0; round < rounds; ++round) {
    for (auto& g : bf16_gemms) g.Run(opts.gemm_seconds / rounds);
    for (auto& g : fp32_gemms) g.Run(opts.gemm_seconds / rounds);
    const auto t0 = Clock::now();
    for (int64_t i = total * round / rounds; i < total * (round + 1) / rounds; ++i) {
      if (!run_request(requests[i % requests.size()])) return 1;
    }
    secs += std::chrono::duration<double>(Clock::now() - t0).count();
  }
  std::printf("| GEMM (M x K x N) | bf16 GFLOP/s | fp32 GFLOP/s |\n|---|---|---|\n");
  double flops = 0, t_bf16 = 0, t_fp32 = 0;
  for (size_t i = 0; i < std::size(gemms); ++i) {
    const auto& g = gemms[i];
    const double f = 2.0 * m * g.k * g.n;
    const double bf = bf16_gemms[i].Gflops(), fp = fp32_gemms[i].Gflops();
    flops += f;
    t_bf16 += f / bf;
    t_fp32 += f / fp;
    std::printf("| %s (%lld x %lld x %lld) | %.1f | %.1f |\n", g.name, static_cast<long long>(m),
                static_cast<long long>(g.k), static_cast<long long>(g.n), bf, fp);
  }
  // One layer's GEMMs in sequence: the FLOP-weighted (harmonic) mean of the four shapes.
  const double roof_bf16 = flops / t_bf16, roof_fp32 = flops / t_fp32;
  std::printf("| layer's GEMMs together | **%.1f** | **%.1f** |\n", roof_bf16, roof_fp32);
  const double fwd_gflops = flops_per_pass * opts.forward_repeats / secs / 1e9;
  const double pairs_per_s = pair_count * opts.forward_repeats / secs;
  const double roof = opts.precision == "bf16" ? roof_bf16 : roof_fp32;
  std::printf(
      "\nforward (%s): %.0f pairs, %.1f real tokens/pair, %.2f GFLOP per pass (padding "
      "excluded); %.1f pairs/s = %.1f GFLOP/s = %.1f%% of the %s GEMM roofline (measured in %lld "
      "interleaved rounds)\n",
      opts.precision.c_str(), pair_count, real_tokens / pair_count, flops_per_pass / 1e9,
      pairs_per_s, fwd_gflops, 100 * fwd_gflops / roof, opts.precision.c_str(),
      static_cast<long long>(rounds));

  if (opts.profile_requests > 0) {
    using namespace torch::autograd::profiler;
    const int n = std::min<int>(opts.profile_requests, static_cast<int>(requests.size()));
    enableProfilerLegacy(
        torch::profiler::impl::ProfilerConfig(torch::profiler::impl::ProfilerState::CPU,
                                              /*report_input_shapes=*/true));
    const auto p0 = Clock::now();
    bool ok = true;
    for (int i = 0; i < n && ok; ++i) ok = run_request(requests[i]);
    const double wall_ms = std::chrono::duration<double, std::milli>(Clock::now() - p0).count();
    auto lists = disableProfilerLegacy();
    if (!ok) return 1;
    PrintProfile(lists, n, wall_ms);
  }
  if (opts.json) {
    nlohmann::json out = {{"gemm_gflops_bf16", roof_bf16},
                          {"gemm_gflops_fp32", roof_fp32},
                          {"forward_gflops", fwd_gflops},
                          {"roofline_ratio", fwd_gflops / roof},
                          {"pairs_per_s", pairs_per_s}};
    std::printf("%s\n", out.dump().c_str());
  }
  return 0;
}

}  // namespace rerank::bench

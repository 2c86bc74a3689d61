// rerank-bench --mode roofline: the machine's GEMM roofline at the model's own shapes, the raw
// forward's effective GFLOP/s on a workload, and a per-op profile of the forward (see
// bench/RESULTS.md, "Forward pass at the hardware limit"). The only torch TU of the bench.
#ifndef RERANK_BENCH_ROOFLINE_H_
#define RERANK_BENCH_ROOFLINE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "server/scorer.h"

namespace rerank::bench {

struct RooflineOptions {
  std::string model_path;  // model.pt
  std::string precision = "bf16";
  int threads = 2;            // intra-op threads (the GEMMs and the forward)
  double gemm_seconds = 1.0;  // measuring time per GEMM shape and dtype (in total)
  int forward_repeats = 1;    // passes over the workload for the forward's GFLOP/s
  int profile_requests = 3;   // requests whose forwards are profiled (0: no profile)
  bool json = false;          // last line: the summary JSON of the issue
};

// One request = its micro-batches (as the server plans them); lengths = the real token count of
// every pair of the request (padding excluded from the FLOPs).
struct RooflineRequest {
  std::vector<ScoreBatch> batches;
  std::vector<int64_t> lengths;
};

// Prints the roofline table, the profile and (opts.json) the summary JSON. Returns an exit code.
int RunRoofline(const RooflineOptions& opts, const std::vector<RooflineRequest>& requests);

}  // namespace rerank::bench

#endif  // RERANK_BENCH_ROOFLINE_H_

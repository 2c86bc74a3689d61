// rerank-bench: the benchmark for rerankd on the SciFact workload (a query + 20 passages each).
//
//   raw   : the model alone, in-process. Each request is tokenized exactly as the server does and
//           planned into the same micro-batches (PlanMicroBatches), then run through TorchScorer
//           replicas (--workers threads x --threads intra-op threads). Reports model-only pairs/s
//           and the per-request forward time.
//   serve : an open-loop (--rate R req/s, Poisson arrivals) or closed-loop (--concurrency C)
//           load generator against a running server over gRPC. Reports pairs/s and latency
//           percentiles.
//   roofline: the machine's bf16/fp32 GEMM GFLOP/s at the model's shapes, the raw forward's
//           effective GFLOP/s on the workload (real tokens only) and their ratio, plus a per-op
//           profile of the forward (bench/roofline.cc). --json: the summary JSON is the last line.
//   fair  : fair scheduling against a running server: one heavy client (closed loop, --concurrency
//           C whole workload requests, client_id "heavy") and --light-clients light clients (each
//           Poisson at --light-rate req/s, the first --light-docs documents of a request,
//           client_id "light-<i>"), in three back-to-back phases of --duration seconds: light
//           alone, heavy alone, both. Reports the light p99 ratio (both / alone) and the heavy
//           client's share of the capacity the light clients leave.
//
// Both print one JSON summary line last, so scripts (bench/run_bench.sh) can compute ratios.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "bench/roofline.h"
#include "nlohmann/json.hpp"
#include "rerank/v1/reranker.grpc.pb.h"
#include "server/batcher.h"
#include "server/tokenizer.h"
#include "server/torch_scorer.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Args {
  std::string mode = "raw";
  std::string workload = "../shared/data/bench/scifact_20docs.jsonl";
  std::string model_dir = "models/demo-minilm-l6";
  std::string precision = "bf16";
  std::string target = "127.0.0.1:50051";
  int max_length = 512;
  int workers = 1;
  int threads = 2;
  int max_batch_pairs = 64;
  int64_t max_batch_tokens = 8192;
  int64_t overhead = 128;
  int requests = 300;  // requests to send / run
  int warmup = 10;
  double rate = 0;                     // serve: open-loop arrivals per second (0 = closed loop)
  int concurrency = 1;                 // serve: closed-loop outstanding requests
  bool one_batch_per_request = false;  // raw: pad the whole request to its longest pair
  double duration = 20;                // fair: seconds per phase
  int light_clients = 4;               // fair
  double light_rate = 1;               // fair: requests/s per light client
  int light_docs = 5;                  // fair: documents per light request
  int fixed_length = 0;  // raw: replace every pair by one of exactly this many tokens (e.g. 128)
  bool json = false;     // roofline: print the summary JSON as the last line
  double gemm_seconds = 1.0;  // roofline: measuring time per GEMM shape and dtype
  int forward_repeats = 1;    // roofline: passes over the workload
  int profile_requests = 3;   // roofline: requests whose forwards are profiled
  // fidelity: the reference the model (at --precision) is compared with: another model
  // directory (e.g. the --plain export) and its precision.
  std::string reference_model_dir;  // default: --model-dir
  std::string reference_precision = "fp32";
};

struct Request {
  std::string query;
  std::vector<std::pair<std::string, std::string>> docs;  // id, text
};

std::vector<Request> LoadWorkload(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    std::cerr << "rerank-bench: cannot read workload " << path << "\n";
    std::exit(2);
  }
  std::vector<Request> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line);
    Request r;
    r.query = j.at("query").get<std::string>();
    for (const auto& d : j.at("documents")) {
      r.docs.emplace_back(d.at("id").get<std::string>(), d.at("text").get<std::string>());
    }
    out.push_back(std::move(r));
  }
  return out;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t idx = std::min(v.size() - 1, static_cast<size_t>(p / 100.0 * (v.size() - 1) + 0.5));
  return v[idx];
}

int RunRaw(const Args& a, const std::vector<Request>& work) {
  rerank::WordPieceTokenizer::Options to;
  to.vocab_path = a.model_dir + "/vocab.txt";
  auto tok = rerank::WordPieceTokenizer::Create(to);
  if (!tok.ok()) {
    std::cerr << tok.status() << "\n";
    return 2;
  }
  // Tokenize every request up front (the server does this on its gRPC threads).
  std::vector<std::vector<rerank::Encoding>> rows(work.size());
  int64_t pairs = 0;
  for (size_t i = 0; i < work.size(); ++i) {
    auto q = (*tok)->Tokenize(work[i].query);
    for (const auto& d : work[i].docs) {
      auto ids = (*tok)->Tokenize(d.second);
      rows[i].push_back((*tok)->EncodePair(*q, *ids, a.max_length));
    }
    pairs += static_cast<int64_t>(rows[i].size());
  }
  int64_t real_tokens = 0;
  for (auto& req : rows) {
    for (auto& e : req) {
      if (a.fixed_length > 0) {  // synthetic fixed-shape workload, for comparisons at 20 x N
        e.input_ids.resize(a.fixed_length, 2000);
        e.token_type_ids.resize(a.fixed_length, 1);
      }
      real_tokens += static_cast<int64_t>(e.input_ids.size());
    }
  }
  rerank::InitTorchRuntime(a.threads, a.workers == 1 ? a.threads : 1);
  std::atomic<size_t> next{0};
  std::vector<double> per_request_ms(work.size());
  std::vector<std::thread> pool;
  absl::Notification go;
  std::atomic<int> loaded{0};
  std::atomic<bool> failed{false};
  auto run_one = [&](rerank::Scorer& scorer, size_t i) -> bool {
    std::vector<int64_t> lengths;
    for (const auto& e : rows[i]) lengths.push_back(static_cast<int64_t>(e.input_ids.size()));
    std::vector<rerank::MicroBatch> plan;
    if (a.one_batch_per_request) {
      rerank::MicroBatch mb;
      for (size_t k = 0; k < rows[i].size(); ++k) mb.rows.push_back(static_cast<int>(k));
      mb.seq_len = *std::max_element(lengths.begin(), lengths.end());
      plan.push_back(mb);
    } else {
      plan = rerank::PlanMicroBatches(lengths, a.max_batch_pairs, a.max_batch_tokens, a.overhead);
    }
    for (const auto& mb : plan) {
      std::vector<const rerank::Encoding*> ptrs;
      for (int r : mb.rows) ptrs.push_back(&rows[i][r]);
      auto sb = rerank::BuildScoreBatch(ptrs, mb.seq_len, (*tok)->pad_id());
      auto s = scorer.Score(sb);
      if (!s.ok()) {
        std::cerr << s.status() << "\n";
        return false;
      }
    }
    return true;
  };
  Clock::time_point t0, t1;
  for (int w = 0; w < a.workers; ++w) {
    pool.emplace_back([&, w] {
      rerank::TorchScorer::Options so;
      so.model_path = a.model_dir + "/model.pt";
      so.precision = a.precision;
      so.intra_op_threads = a.threads;
      auto scorer = rerank::TorchScorer::Create(so);
      if (!scorer.ok()) {
        std::cerr << scorer.status() << "\n";
        failed = true;
        ++loaded;
        return;
      }
      for (int k = 0; k < a.warmup; ++k) run_one(**scorer, (k * 7 + w) % work.size());
      ++loaded;
      go.WaitForNotification();
      for (size_t i; (i = next.fetch_add(1)) < work.size();) {
        auto s = Clock::now();
        if (!run_one(**scorer, i)) failed = true;
        per_request_ms[i] = std::chrono::duration<double, std::milli>(Clock::now() - s).count();
      }
    });
  }
  while (loaded.load() < a.workers) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  t0 = Clock::now();
  go.Notify();
  for (auto& t : pool) t.join();
  t1 = Clock::now();
  if (failed) return 1;
  const double secs = std::chrono::duration<double>(t1 - t0).count();
  nlohmann::json out = {{"mode", "raw"},
                        {"precision", a.precision},
                        {"workers", a.workers},
                        {"threads", a.threads},
                        {"requests", work.size()},
                        {"pairs", pairs},
                        {"seconds", secs},
                        {"pairs_per_s", pairs / secs},
                        {"mean_tokens_per_pair", static_cast<double>(real_tokens) / pairs},
                        {"fixed_length", a.fixed_length},
                        {"forward_ms_p50", Percentile(per_request_ms, 50)},
                        {"forward_ms_p95", Percentile(per_request_ms, 95)},
                        {"one_batch_per_request", a.one_batch_per_request}};
  std::printf(
      "raw model: %lld pairs (%.0f tokens avg) in %.2fs = %.1f pairs/s; per-request forward p50 "
      "%.1f ms\n",
      static_cast<long long>(pairs), static_cast<double>(real_tokens) / pairs, secs, pairs / secs,
      Percentile(per_request_ms, 50));
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

int RunServe(const Args& a, const std::vector<Request>& work) {
  auto channel = grpc::CreateChannel(a.target, grpc::InsecureChannelCredentials());
  auto stub = rerank::v1::Reranker::NewStub(channel);
  if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
    std::cerr << "rerank-bench: cannot connect to " << a.target << "\n";
    return 2;
  }
  std::vector<rerank::v1::RerankRequest> reqs(work.size());
  for (size_t i = 0; i < work.size(); ++i) {
    reqs[i].set_query(work[i].query);
    reqs[i].set_client_id("bench");
    for (const auto& d : work[i].docs) {
      auto* doc = reqs[i].add_documents();
      doc->set_id(d.first);
      doc->set_text(d.second);
    }
  }
  struct Call {
    grpc::ClientContext ctx;
    rerank::v1::RerankResponse resp;
    Clock::time_point start;
    size_t index;
  };
  absl::Mutex mu;
  std::vector<double> latencies_ms;
  int64_t pairs_done = 0;
  int errors = 0;
  std::string first_error;
  std::atomic<int> issued{0}, finished{0};
  const int total = a.requests;
  absl::Notification all_done;
  std::function<void()> issue;
  issue = [&]() {
    const int n = issued.fetch_add(1);
    if (n >= total) return;
    auto* call = new Call();
    call->index = static_cast<size_t>(n) % reqs.size();
    call->start = Clock::now();
    call->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
    stub->async()->Rerank(&call->ctx, &reqs[call->index], &call->resp, [&, call](grpc::Status s) {
      const double ms =
          std::chrono::duration<double, std::milli>(Clock::now() - call->start).count();
      {
        absl::MutexLock l(&mu);
        if (s.ok()) {
          latencies_ms.push_back(ms);
          pairs_done += reqs[call->index].documents_size();
        } else {
          if (errors++ == 0)
            first_error = std::to_string(s.error_code()) + ": " + s.error_message();
        }
      }
      delete call;
      if (a.rate <= 0) issue();  // closed loop: next request from this "client"
      if (finished.fetch_add(1) + 1 == total) all_done.Notify();
    });
  };
  const auto t0 = Clock::now();
  if (a.rate > 0) {
    std::mt19937_64 rng(42);
    std::exponential_distribution<double> gap(a.rate);
    auto next = t0;
    for (int i = 0; i < total; ++i) {
      std::this_thread::sleep_until(next);
      issue();
      next += std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(gap(rng)));
    }
  } else {
    for (int c = 0; c < std::min(a.concurrency, total); ++c) issue();
  }
  all_done.WaitForNotification();
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  absl::MutexLock l(&mu);
  nlohmann::json out = {{"mode", "serve"},
                        {"target", a.target},
                        {"rate", a.rate},
                        {"concurrency", a.rate > 0 ? 0 : a.concurrency},
                        {"requests", total},
                        {"ok", latencies_ms.size()},
                        {"errors", errors},
                        {"seconds", secs},
                        {"pairs_per_s", pairs_done / secs},
                        {"latency_ms_p50", Percentile(latencies_ms, 50)},
                        {"latency_ms_p95", Percentile(latencies_ms, 95)},
                        {"latency_ms_p99", Percentile(latencies_ms, 99)}};
  std::printf(
      "served: %lld pairs in %.2fs = %.1f pairs/s; latency p50 %.1f p95 %.1f p99 %.1f ms; %d "
      "errors%s%s\n",
      static_cast<long long>(pairs_done), secs, pairs_done / secs, Percentile(latencies_ms, 50),
      Percentile(latencies_ms, 95), Percentile(latencies_ms, 99), errors, errors ? " first: " : "",
      first_error.c_str());
  std::printf("%s\n", out.dump().c_str());
  return errors == 0 ? 0 : 1;
}

// One client's results over a phase. Only requests sent before the phase's end count.
struct PhaseStats {
  std::vector<double> latencies_ms;
  int64_t pairs = 0;  // pairs of requests that completed before the phase's end
  int errors = 0;
  std::string first_error;
};

// The fair-scheduling benchmark (see the file comment). Every client has its own channel.
int RunFair(const Args& a, const std::vector<Request>& work) {
  auto make_channel = [&](int id) {
    grpc::ChannelArguments args;
    args.SetInt("rerank.bench.client", id);  // a distinct connection per client
    auto ch = grpc::CreateCustomChannel(a.target, grpc::InsecureChannelCredentials(), args);
    if (!ch->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
      std::cerr << "rerank-bench: cannot connect to " << a.target << "\n";
      std::exit(2);
    }
    return ch;
  };
  auto to_proto = [&](const Request& r, const std::string& client, int max_docs) {
    rerank::v1::RerankRequest req;
    req.set_query(r.query);
    req.set_client_id(client);
    for (const auto& d : r.docs) {
      if (max_docs > 0 && req.documents_size() >= max_docs) break;
      auto* doc = req.add_documents();
      doc->set_id(d.first);
      doc->set_text(d.second);
    }
    return req;
  };
  std::vector<rerank::v1::RerankRequest> heavy_reqs;
  for (const Request& r : work) heavy_reqs.push_back(to_proto(r, "heavy", 0));
  std::vector<std::vector<rerank::v1::RerankRequest>> light_reqs(a.light_clients);
  for (int c = 0; c < a.light_clients; ++c) {
    for (const Request& r : work) {
      light_reqs[c].push_back(to_proto(r, "light-" + std::to_string(c), a.light_docs));
    }
  }
  auto heavy_stub = rerank::v1::Reranker::NewStub(make_channel(0));
  std::vector<std::unique_ptr<rerank::v1::Reranker::Stub>> light_stubs;
  for (int c = 0; c < a.light_clients; ++c) {
    light_stubs.push_back(rerank::v1::Reranker::NewStub(make_channel(c + 1)));
  }

  struct Call {
    grpc::ClientContext ctx;
    rerank::v1::RerankResponse resp;
    Clock::time_point start;
    const rerank::v1::RerankRequest* req;
  };
  // Runs one phase; returns {heavy, light (all light clients together)}.
  auto run_phase = [&](bool heavy_on, bool light_on) {
    absl::Mutex mu;
    PhaseStats heavy, light;
    std::atomic<int> outstanding{0};
    const auto t0 = Clock::now();
    const auto end =
        t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(a.duration));
    auto record = [&](PhaseStats* st, Call* call, const grpc::Status& s) {
      const auto now = Clock::now();
      const double ms = std::chrono::duration<double, std::milli>(now - call->start).count();
      absl::MutexLock l(&mu);
      if (!s.ok()) {
        if (st->errors++ == 0) {
          st->first_error = std::to_string(s.error_code()) + ": " + s.error_message();
        }
        return;
      }
      st->latencies_ms.push_back(ms);
      if (now <= end) st->pairs += call->req->documents_size();
    };
    std::atomic<size_t> next_heavy{0};
    std::function<void()> issue_heavy = [&]() {
      if (Clock::now() >= end) return;
      auto* call = new Call();
      call->req = &heavy_reqs[next_heavy.fetch_add(1) % heavy_reqs.size()];
      call->start = Clock::now();
      call->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
      ++outstanding;
      heavy_stub->async()->Rerank(&call->ctx, call->req, &call->resp, [&, call](grpc::Status s) {
        record(&heavy, call, s);
        delete call;
        issue_heavy();  // closed loop
        --outstanding;
      });
    };
    if (heavy_on) {
      for (int c = 0; c < a.concurrency; ++c) issue_heavy();
    }
    std::vector<std::thread> light_threads;
    if (light_on) {
      for (int c = 0; c < a.light_clients; ++c) {
        light_threads.emplace_back([&, c] {
          std::mt19937_64 rng(1000 + c);
          std::exponential_distribution<double> gap(a.light_rate);
          auto next = t0 + std::chrono::duration_cast<Clock::duration>(
                               std::chrono::duration<double>(gap(rng)));
          for (size_t i = 0; next < end; ++i) {
            std::this_thread::sleep_until(next);
            auto* call = new Call();
            call->req = &light_reqs[c][(i * 7 + c) % light_reqs[c].size()];
            call->start = Clock::now();
            call->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
            ++outstanding;
            light_stubs[c]->async()->Rerank(&call->ctx, call->req, &call->resp,
                                            [&, call](grpc::Status s) {
                                              record(&light, call, s);
                                              delete call;
                                              --outstanding;
                                            });
            next += std::chrono::duration_cast<Clock::duration>(
                std::chrono::duration<double>(gap(rng)));
          }
        });
      }
    }
    for (auto& t : light_threads) t.join();
    std::this_thread::sleep_until(end);
    while (outstanding.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return std::make_pair(std::move(heavy), std::move(light));
  };

  auto [unused_h, light_alone] = run_phase(false, true);
  auto [heavy_alone, unused_l] = run_phase(true, false);
  auto [heavy_mixed, light_mixed] = run_phase(true, true);
  const int errors =
      light_alone.errors + heavy_alone.errors + heavy_mixed.errors + light_mixed.errors;
  const double d = a.duration;
  const double capacity = heavy_alone.pairs / d;  // the heavy client alone saturates the server
  const double light_pairs_mixed = light_mixed.pairs / d;
  const double heavy_pairs_mixed = heavy_mixed.pairs / d;
  const double remaining = capacity - light_pairs_mixed;
  const double la99 = Percentile(light_alone.latencies_ms, 99);
  const double lm99 = Percentile(light_mixed.latencies_ms, 99);
  nlohmann::json out = {
      {"mode", "fair"},
      {"target", a.target},
      {"duration_s", d},
      {"heavy_concurrency", a.concurrency},
      {"light_clients", a.light_clients},
      {"light_rate", a.light_rate},
      {"light_docs", a.light_docs},
      {"light_alone_requests", light_alone.latencies_ms.size()},
      {"light_alone_ms_p50", Percentile(light_alone.latencies_ms, 50)},
      {"light_alone_ms_p99", la99},
      {"light_mixed_requests", light_mixed.latencies_ms.size()},
      {"light_mixed_ms_p50", Percentile(light_mixed.latencies_ms, 50)},
      {"light_mixed_ms_p99", lm99},
      {"light_p99_ratio", la99 > 0 ? lm99 / la99 : 0},
      {"heavy_alone_pairs_per_s", capacity},
      {"heavy_alone_ms_p50", Percentile(heavy_alone.latencies_ms, 50)},
      {"heavy_mixed_pairs_per_s", heavy_pairs_mixed},
      {"heavy_mixed_ms_p50", Percentile(heavy_mixed.latencies_ms, 50)},
      {"light_mixed_pairs_per_s", light_pairs_mixed},
      {"heavy_share_of_remaining", remaining > 0 ? heavy_pairs_mixed / remaining : 0},
      {"errors", errors}};
  std::printf(
      "light p99: alone %.1f ms, with heavy %.1f ms (x%.2f); heavy: alone %.1f pairs/s, with "
      "light %.1f pairs/s = %.1f%% of the %.1f pairs/s the light clients leave; %d errors%s%s\n",
      la99, lm99, la99 > 0 ? lm99 / la99 : 0, capacity, heavy_pairs_mixed,
      remaining > 0 ? 100 * heavy_pairs_mixed / remaining : 0, remaining, errors,
      errors ? " first: " : "",
      (light_alone.first_error + heavy_alone.first_error + heavy_mixed.first_error +
       light_mixed.first_error)
          .c_str());
  std::printf("%s\n", out.dump().c_str());
  return errors == 0 ? 0 : 1;
}

// Tokenizes and plans the workload as the server would, then runs bench/roofline.cc.
int RunRooflineMode(const Args& a, const std::vector<Request>& work) {
  rerank::WordPieceTokenizer::Options to;
  to.vocab_path = a.model_dir + "/vocab.txt";
  auto tok = rerank::WordPieceTokenizer::Create(to);
  if (!tok.ok()) {
    std::cerr << tok.status() << "\n";
    return 2;
  }
  std::vector<rerank::bench::RooflineRequest> reqs;
  for (const Request& r : work) {
    auto q = (*tok)->Tokenize(r.query);
    std::vector<rerank::Encoding> rows;
    for (const auto& d : r.docs)
      rows.push_back((*tok)->EncodePair(*q, *(*tok)->Tokenize(d.second), a.max_length));
    rerank::bench::RooflineRequest rr;
    for (const auto& e : rows) rr.lengths.push_back(static_cast<int64_t>(e.input_ids.size()));
    for (const auto& mb :
         rerank::PlanMicroBatches(rr.lengths, a.max_batch_pairs, a.max_batch_tokens, a.overhead)) {
      std::vector<const rerank::Encoding*> ptrs;
      for (int i : mb.rows) ptrs.push_back(&rows[i]);
      rr.batches.push_back(rerank::BuildScoreBatch(ptrs, mb.seq_len, (*tok)->pad_id()));
    }
    reqs.push_back(std::move(rr));
  }
  rerank::bench::RooflineOptions o;
  o.model_path = a.model_dir + "/model.pt";
  o.precision = a.precision;
  o.threads = a.threads;
  o.gemm_seconds = a.gemm_seconds;
  o.forward_repeats = a.forward_repeats;
  o.profile_requests = a.profile_requests;
  o.json = a.json;
  return rerank::bench::RunRoofline(o, reqs);
}

// Spearman rank correlation (average ranks for ties).
double Spearman(const std::vector<float>& a, const std::vector<float>& b) {
  auto ranks = [](const std::vector<float>& v) {
    std::vector<int> idx(v.size());
    for (size_t i = 0; i < v.size(); ++i) idx[i] = static_cast<int>(i);
    std::sort(idx.begin(), idx.end(), [&](int x, int y) { return v[x] < v[y]; });
    std::vector<double> r(v.size());
    for (size_t i = 0; i < idx.size();) {
      size_t j = i;
      while (j + 1 < idx.size() && v[idx[j + 1]] == v[idx[i]]) ++j;
      for (size_t k = i; k <= j; ++k) r[idx[k]] = (i + j) / 2.0;
      i = j + 1;
    }
    return r;
  };
  auto ra = ranks(a), rb = ranks(b);
  const double n = static_cast<double>(a.size());
  double ma = 0, mb = 0;
  for (size_t i = 0; i < a.size(); ++i) ma += ra[i], mb += rb[i];
  ma /= n, mb /= n;
  double cov = 0, va = 0, vb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    cov += (ra[i] - ma) * (rb[i] - mb);
    va += (ra[i] - ma) * (ra[i] - ma);
    vb += (rb[i] - mb) * (rb[i] - mb);
  }
  return va > 0 && vb > 0 ? cov / std::sqrt(va * vb) : 1.0;
}

std::vector<int> TopK(const std::vector<float>& s, size_t k) {
  std::vector<int> idx(s.size());
  for (size_t i = 0; i < s.size(); ++i) idx[i] = static_cast<int>(i);
  std::stable_sort(idx.begin(), idx.end(), [&](int x, int y) { return s[x] > s[y]; });
  idx.resize(std::min(k, idx.size()));
  return idx;
}

// The model at --precision (default bf16) vs a reference (default: the same model in fp32; or
// --reference-model-dir, e.g. the plain-op export vs the fused one) on the same SciFact pairs
// and the same micro-batches the server would run.
int RunFidelity(const Args& a, const std::vector<Request>& work) {
  rerank::WordPieceTokenizer::Options to;
  to.vocab_path = a.model_dir + "/vocab.txt";
  auto tok = rerank::WordPieceTokenizer::Create(to);
  if (!tok.ok()) {
    std::cerr << tok.status() << "\n";
    return 2;
  }
  rerank::InitTorchRuntime(a.threads, a.threads);
  auto make = [&](const std::string& dir, const std::string& precision) {
    rerank::TorchScorer::Options so;
    so.model_path = dir + "/model.pt";
    so.precision = precision;
    so.intra_op_threads = a.threads;
    auto s = rerank::TorchScorer::Create(so);
    if (!s.ok()) {
      std::cerr << s.status() << "\n";
      std::exit(1);
    }
    return *std::move(s);
  };
  const std::string ref_dir = a.reference_model_dir.empty() ? a.model_dir : a.reference_model_dir;
  // Named after the default comparison: fp32 = the reference, bf16 = the model under test.
  auto fp32 = make(ref_dir, a.reference_precision);
  auto bf16 = make(a.model_dir, a.precision);
  double max_abs = 0, sum_abs = 0, sum_rho = 0, min_rho = 1, spread = 0;
  int64_t pairs = 0;
  int top1_same = 0, top5_set_same = 0, top5_order_same = 0;
  for (const Request& r : work) {
    auto q = (*tok)->Tokenize(r.query);
    std::vector<rerank::Encoding> rows;
    for (const auto& d : r.docs)
      rows.push_back((*tok)->EncodePair(*q, *(*tok)->Tokenize(d.second), a.max_length));
    std::vector<int64_t> lengths;
    for (const auto& e : rows) lengths.push_back(static_cast<int64_t>(e.input_ids.size()));
    std::vector<float> s32(rows.size()), s16(rows.size());
    for (const auto& mb :
         rerank::PlanMicroBatches(lengths, a.max_batch_pairs, a.max_batch_tokens, a.overhead)) {
      std::vector<const rerank::Encoding*> ptrs;
      for (int i : mb.rows) ptrs.push_back(&rows[i]);
      auto sb = rerank::BuildScoreBatch(ptrs, mb.seq_len, (*tok)->pad_id());
      auto x = fp32->Score(sb);
      auto y = bf16->Score(sb);
      if (!x.ok() || !y.ok()) return 1;
      for (size_t k = 0; k < mb.rows.size(); ++k)
        s32[mb.rows[k]] = (*x)[k], s16[mb.rows[k]] = (*y)[k];
    }
    float lo = s32[0], hi = s32[0];
    for (size_t i = 0; i < rows.size(); ++i) {
      const double d = std::abs(s32[i] - s16[i]);
      max_abs = std::max(max_abs, d);
      sum_abs += d;
      lo = std::min(lo, s32[i]), hi = std::max(hi, s32[i]);
      ++pairs;
    }
    spread += hi - lo;
    const double rho = Spearman(s32, s16);
    sum_rho += rho;
    min_rho = std::min(min_rho, rho);
    auto t32 = TopK(s32, 5), t16 = TopK(s16, 5);
    top1_same += t32[0] == t16[0];
    top5_order_same += t32 == t16;
    std::sort(t32.begin(), t32.end());
    std::sort(t16.begin(), t16.end());
    top5_set_same += t32 == t16;
  }
  const double n = static_cast<double>(work.size());
  nlohmann::json out = {{"mode", "fidelity"},
                        {"model_dir", a.model_dir},
                        {"precision", a.precision},
                        {"reference_model_dir", ref_dir},
                        {"reference_precision", a.reference_precision},
                        {"queries", work.size()},
                        {"pairs", pairs},
                        {"max_abs_diff", max_abs},
                        {"mean_abs_diff", sum_abs / pairs},
                        {"mean_score_range_per_query_fp32", spread / n},
                        {"spearman_mean", sum_rho / n},
                        {"spearman_min", min_rho},
                        {"top1_agreement", top1_same / n},
                        {"top5_set_agreement", top5_set_same / n},
                        {"top5_order_agreement", top5_order_same / n}};
  std::printf("%s %s vs %s %s: ", a.model_dir.c_str(), a.precision.c_str(), ref_dir.c_str(),
              a.reference_precision.c_str());
  std::printf(
      "over %lld pairs: max |diff| %.4g, mean |diff| %.4g (reference score range per query "
      "%.3g); "
      "Spearman mean %.4f min %.4f; top-1 %.1f%%, top-5 set %.1f%%, top-5 order %.1f%%\n",
      static_cast<long long>(pairs), max_abs, sum_abs / pairs, spread / n, sum_rho / n, min_rho,
      100 * top1_same / n, 100 * top5_set_same / n, 100 * top5_order_same / n);
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

void Usage() {
  std::cerr << "usage: rerank-bench --mode raw|serve|fidelity|fair|roofline [--workload JSONL]\n"
               "         [--requests N]\n"
               "  raw:   [--model-dir DIR] [--precision fp32|bf16] [--workers W] [--threads T]\n"
               "         [--max-length L] [--max-batch-pairs P] [--max-batch-tokens K]\n"
               "         [--one-batch-per-request] [--fixed-length N] [--warmup N]\n"
               "  serve: [--target HOST:PORT] [--rate REQ_PER_S | --concurrency C]\n"
               "  fair:  [--target HOST:PORT] [--concurrency C] [--duration S]\n"
               "         [--light-clients N] [--light-rate REQ_PER_S] [--light-docs D]\n"
               "  fidelity: [--model-dir DIR] [--precision P] [--reference-model-dir DIR]\n"
               "         [--reference-precision fp32|bf16]  (default: the model, bf16 vs fp32)\n"
               "  roofline: [--model-dir DIR] [--precision fp32|bf16] [--threads T] [--json]\n"
               "         [--gemm-seconds S] [--forward-repeats N] [--profile-requests N]\n";
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << "missing value for " << k << "\n";
        std::exit(2);
      }
      return argv[++i];
    };
    auto num = [&](auto* out) {
      std::string v = val();
      if (!absl::SimpleAtoi(v, out)) {
        std::cerr << "bad number for " << k << ": " << v << "\n";
        std::exit(2);
      }
    };
    if (k == "--mode")
      a.mode = val();
    else if (k == "--workload")
      a.workload = val();
    else if (k == "--model-dir")
      a.model_dir = val();
    else if (k == "--precision")
      a.precision = val();
    else if (k == "--target")
      a.target = val();
    else if (k == "--max-length")
      num(&a.max_length);
    else if (k == "--workers")
      num(&a.workers);
    else if (k == "--threads")
      num(&a.threads);
    else if (k == "--max-batch-pairs")
      num(&a.max_batch_pairs);
    else if (k == "--max-batch-tokens")
      num(&a.max_batch_tokens);
    else if (k == "--overhead")
      num(&a.overhead);
    else if (k == "--requests")
      num(&a.requests);
    else if (k == "--warmup")
      num(&a.warmup);
    else if (k == "--rate") {
      std::string v = val();
      a.rate = std::stod(v);
    } else if (k == "--concurrency")
      num(&a.concurrency);
    else if (k == "--one-batch-per-request")
      a.one_batch_per_request = true;
    else if (k == "--fixed-length")
      num(&a.fixed_length);
    else if (k == "--duration")
      a.duration = std::stod(val());
    else if (k == "--light-clients")
      num(&a.light_clients);
    else if (k == "--light-rate")
      a.light_rate = std::stod(val());
    else if (k == "--light-docs")
      num(&a.light_docs);
    else if (k == "--reference-model-dir")
      a.reference_model_dir = val();
    else if (k == "--reference-precision")
      a.reference_precision = val();
    else if (k == "--json")
      a.json = true;
    else if (k == "--gemm-seconds")
      a.gemm_seconds = std::stod(val());
    else if (k == "--forward-repeats")
      num(&a.forward_repeats);
    else if (k == "--profile-requests")
      num(&a.profile_requests);
    else {
      Usage();
      return k == "--help" ? 0 : 2;
    }
  }
  auto work = LoadWorkload(a.workload);
  if (a.mode == "raw") {
    if (a.requests < static_cast<int>(work.size())) work.resize(a.requests);
    return RunRaw(a, work);
  }
  if (a.mode == "serve") return RunServe(a, work);
  if (a.mode == "fair") return RunFair(a, work);
  if (a.mode == "roofline") {
    if (a.requests < static_cast<int>(work.size())) work.resize(a.requests);
    return RunRooflineMode(a, work);
  }
  if (a.mode == "fidelity") {
    if (a.requests < static_cast<int>(work.size())) work.resize(a.requests);
    return RunFidelity(a, work);
  }
  Usage();
  return 2;
}

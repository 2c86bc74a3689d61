// rerank-bench: the benchmark for rerankd on the SciFact workload (a query + 20 passages each).
//
//   raw   : the model alone, in-process. Each request is tokenized exactly as the server does and
//           planned into the same micro-batches (PlanMicroBatches), then run through TorchScorer
//           replicas (--workers threads x --threads intra-op threads). Reports model-only pairs/s
//           and the per-request forward time.
//   serve : an open-loop (--rate R req/s, Poisson arrivals) or closed-loop (--concurrency C)
//           load generator against a running server over gRPC. Reports pairs/s and latency
//           percentiles.
//   serve-http : the same closed-loop load (--concurrency C keep-alive connections, one thread
//           each) over the HTTP data plane's POST /v2/rerank (--target HOST:PORT), with the same
//           requests (top_n 5, client id "bench"), for comparing the two transports.
//   roofline: the machine's bf16/fp32 GEMM GFLOP/s at the model's shapes, the raw forward's
//           effective GFLOP/s on the workload (real tokens only) and their ratio, plus a per-op
//           profile of the forward (bench/roofline.cc). --json: the summary JSON is the last line.
//   fair  : fair scheduling against a running server: one heavy client (closed loop, --concurrency
//           C whole workload requests, client_id "heavy") and --light-clients light clients (each
//           Poisson at --light-rate req/s, the first --light-docs documents of a request,
//           client_id "light-<i>"), in three back-to-back phases of --duration seconds: light
//           alone, heavy alone, both. Reports the light p99 ratio (both / alone) and the heavy
//           client's share of the capacity the light clients leave.
//   load  : overload and soak (issue 8 section 5): open loop, Poisson at --rate req/s for
//           --duration seconds (client_id "bench"), with lone-request probes (client_id
//           "probe", --lone sequential requests) before, right after the load stops and once
//           the backlog has drained. Prints one JSON line per --window seconds (requests sent,
//           completions: ok / shed with RESOURCE_EXHAUSTED / other errors, p50/p99 of the ok
//           ones, the server's VmRSS sampled every second when --pid is given).
//   idle  : holds --connections idle gRPC connections (each channel its own subchannel pool,
//           so its own TCP connection) and compares a lone request's latency with and without
//           them, with the server's VmRSS (--pid).
//
// All print one JSON summary line last, so scripts (bench/run_bench.sh) can compute ratios.
#include <grpcpp/grpcpp.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"
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
  int fixed_length = 0;     // raw: replace every pair by one of exactly this many tokens (e.g. 128)
  double window = 1;        // load: seconds per reported window
  int pid = 0;              // load, idle: the server's pid, to sample its VmRSS (0: none)
  int deadline_ms = 60000;  // load: per-request deadline
  int lone = 5;             // load, idle: sequential lone requests per probe
  int max_outstanding = 20000;  // load: client-side bound on calls in flight
  int connections = 10000;      // idle: idle connections to hold
  bool json = false;            // roofline: print the summary JSON as the last line
  double gemm_seconds = 1.0;    // roofline: measuring time per GEMM shape and dtype
  int forward_repeats = 1;      // roofline: passes over the workload
  int profile_requests = 3;     // roofline: requests whose forwards are profiled
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

// A model replica of `dir` at `precision` on a.threads intra-op threads (the calling thread's).
absl::StatusOr<std::unique_ptr<rerank::TorchScorer>> LoadScorer(const Args& a,
                                                                const std::string& dir,
                                                                const std::string& precision) {
  rerank::TorchScorer::Options so;
  so.model_path = dir + "/model.pt";
  so.precision = precision;
  so.intra_op_threads = a.threads;
  return rerank::TorchScorer::Create(so);
}

// One request's (query, passage) pairs tokenized exactly as the server does.
std::vector<rerank::Encoding> EncodeRequest(const rerank::WordPieceTokenizer& tok, const Request& r,
                                            int max_length) {
  std::vector<rerank::Encoding> rows;
  auto q = tok.Tokenize(r.query);
  for (const auto& d : r.docs)
    rows.push_back(tok.EncodePair(*q, *tok.Tokenize(d.second), max_length));
  return rows;
}

// One request's rows as the micro-batches the server would run (PlanMicroBatches with the
// model's padding_free, then BuildScoreBatch). rows_of[k]: the request rows of batches[k].
struct PlannedRequest {
  std::vector<rerank::ScoreBatch> batches;
  std::vector<std::vector<int>> rows_of;
};
PlannedRequest PlanRequest(const std::vector<rerank::Encoding>& rows, const Args& a, int64_t pad_id,
                           bool padding_free) {
  std::vector<int64_t> lengths;
  for (const auto& e : rows) lengths.push_back(static_cast<int64_t>(e.input_ids.size()));
  PlannedRequest out;
  for (const auto& mb : rerank::PlanMicroBatches(lengths, a.max_batch_pairs, a.max_batch_tokens,
                                                 a.overhead, padding_free)) {
    std::vector<const rerank::Encoding*> ptrs;
    for (int i : mb.rows) ptrs.push_back(&rows[i]);
    out.batches.push_back(rerank::BuildScoreBatch(ptrs, mb.seq_len, pad_id));
    out.rows_of.push_back(mb.rows);
  }
  return out;
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
    rows[i] = EncodeRequest(**tok, work[i], a.max_length);
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
    std::vector<rerank::ScoreBatch> plan;
    if (a.one_batch_per_request) {
      std::vector<const rerank::Encoding*> ptrs;
      int64_t longest = 0;
      for (const auto& e : rows[i]) {
        ptrs.push_back(&e);
        longest = std::max(longest, static_cast<int64_t>(e.input_ids.size()));
      }
      plan.push_back(rerank::BuildScoreBatch(ptrs, longest, (*tok)->pad_id()));
    } else {
      plan = PlanRequest(rows[i], a, (*tok)->pad_id(), scorer.PaddingFree()).batches;
    }
    for (const auto& sb : plan) {
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
      auto scorer = LoadScorer(a, a.model_dir, a.precision);
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

// The serve modes' summary: one human line and the JSON line (`out` plus the common figures).
void PrintServed(nlohmann::json out, const char* label, const std::vector<double>& latencies_ms,
                 int64_t pairs_done, double secs, int errors, const std::string& first_error) {
  out["ok"] = latencies_ms.size();
  out["errors"] = errors;
  out["seconds"] = secs;
  out["pairs_per_s"] = pairs_done / secs;
  out["latency_ms_p50"] = Percentile(latencies_ms, 50);
  out["latency_ms_p95"] = Percentile(latencies_ms, 95);
  out["latency_ms_p99"] = Percentile(latencies_ms, 99);
  std::printf(
      "%s: %lld pairs in %.2fs = %.1f pairs/s; latency p50 %.1f p95 %.1f p99 %.1f ms; %d "
      "errors%s%s\n",
      label, static_cast<long long>(pairs_done), secs, pairs_done / secs,
      Percentile(latencies_ms, 50), Percentile(latencies_ms, 95), Percentile(latencies_ms, 99),
      errors, errors ? " first: " : "", first_error.c_str());
  std::printf("%s\n", out.dump().c_str());
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
  PrintServed({{"mode", "serve"},
               {"target", a.target},
               {"rate", a.rate},
               {"concurrency", a.rate > 0 ? 0 : a.concurrency},
               {"requests", total}},
              "served", latencies_ms, pairs_done, secs, errors, first_error);
  return errors == 0 ? 0 : 1;
}

// A blocking HTTP/1.1 keep-alive connection: just enough client for serve-http (Content-Length
// framed responses, which is all rerankd's HTTP server sends).
class HttpConnection {
 public:
  ~HttpConnection() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool Connect(const std::string& target) {
    const size_t colon = target.rfind(':');
    if (colon == std::string::npos) return false;
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (::getaddrinfo(target.substr(0, colon).c_str(), target.substr(colon + 1).c_str(), &hints,
                      &res) != 0) {
      return false;
    }
    for (addrinfo* ai = res; ai != nullptr && fd_ < 0; ai = ai->ai_next) {
      fd_ = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
      if (fd_ >= 0 && ::connect(fd_, ai->ai_addr, ai->ai_addrlen) != 0) {
        ::close(fd_);
        fd_ = -1;
      }
    }
    ::freeaddrinfo(res);
    return fd_ >= 0;
  }
  // Sends `request` (a whole HTTP request) and reads one response; its status, or -1.
  int RoundTrip(const std::string& request, std::string* body) {
    for (size_t sent = 0; sent < request.size();) {
      const ssize_t n = ::send(fd_, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return -1;
      sent += static_cast<size_t>(n);
    }
    size_t header_end;
    while ((header_end = buf_.find("\r\n\r\n")) == std::string::npos) {
      if (!Fill()) return -1;
    }
    const std::string head = buf_.substr(0, header_end);
    int status = -1;
    if (head.size() > 12) (void)absl::SimpleAtoi(head.substr(9, 3), &status);
    size_t length = 0;
    for (size_t pos = head.find("\r\n"); pos != std::string::npos;
         pos = head.find("\r\n", pos + 2)) {
      const size_t end = head.find("\r\n", pos + 2);
      std::string line = head.substr(pos + 2, end == std::string::npos ? end : end - pos - 2);
      std::transform(line.begin(), line.end(), line.begin(), ::tolower);
      if (line.rfind("content-length:", 0) == 0) {
        (void)absl::SimpleAtoi(line.substr(15), &length);
      }
    }
    while (buf_.size() < header_end + 4 + length) {
      if (!Fill()) return -1;
    }
    body->assign(buf_, header_end + 4, length);
    buf_.erase(0, header_end + 4 + length);
    return status;
  }

 private:
  bool Fill() {
    char chunk[65536];
    const ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
    if (n <= 0) return false;
    buf_.append(chunk, static_cast<size_t>(n));
    return true;
  }
  int fd_ = -1;
  std::string buf_;
};

int RunServeHttp(const Args& a, const std::vector<Request>& work) {
  if (a.rate > 0) {
    std::cerr << "rerank-bench: serve-http is closed loop only (--concurrency C)\n";
    return 2;
  }
  // Rendered once: the client's own JSON work is not what is measured.
  std::vector<std::string> requests(work.size());
  std::vector<int> pairs(work.size());
  for (size_t i = 0; i < work.size(); ++i) {
    nlohmann::json body = {{"model", "bench"}, {"query", work[i].query}, {"top_n", 5}};
    nlohmann::json docs = nlohmann::json::array();
    for (const auto& d : work[i].docs) docs.push_back(d.second);
    body["documents"] = std::move(docs);
    const std::string text = body.dump();
    requests[i] = "POST /v2/rerank HTTP/1.1\r\nHost: " + a.target +
                  "\r\nContent-Type: application/json\r\nx-client-id: bench\r\n"
                  "Content-Length: " +
                  std::to_string(text.size()) + "\r\n\r\n" + text;
    pairs[i] = static_cast<int>(work[i].docs.size());
  }
  absl::Mutex mu;
  std::vector<double> latencies_ms;
  int64_t pairs_done = 0;
  int errors = 0;
  std::string first_error;
  std::atomic<int> issued{0};
  const int total = a.requests;
  const auto t0 = Clock::now();
  std::vector<std::thread> clients;
  for (int c = 0; c < std::min(a.concurrency, total); ++c) {
    clients.emplace_back([&] {
      HttpConnection conn;
      if (!conn.Connect(a.target)) {
        absl::MutexLock l(&mu);
        if (errors++ == 0) first_error = "cannot connect to " + a.target;
        return;
      }
      std::string body;
      for (int n = issued.fetch_add(1); n < total; n = issued.fetch_add(1)) {
        const size_t index = static_cast<size_t>(n) % requests.size();
        const auto start = Clock::now();
        const int status = conn.RoundTrip(requests[index], &body);
        const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
        absl::MutexLock l(&mu);
        if (status == 200) {
          latencies_ms.push_back(ms);
          pairs_done += pairs[index];
        } else {
          if (errors++ == 0) first_error = std::to_string(status) + ": " + body.substr(0, 200);
          if (status < 0) return;  // the connection is gone
        }
      }
    });
  }
  for (std::thread& t : clients) t.join();
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  absl::MutexLock l(&mu);
  PrintServed({{"mode", "serve-http"},
               {"target", a.target},
               {"concurrency", a.concurrency},
               {"requests", total}},
              "served (HTTP)", latencies_ms, pairs_done, secs, errors, first_error);
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

// The server's resident set (VmRSS, KiB) from /proc/PID/status; 0 if unreadable.
int64_t ReadRssKb(int pid) {
  if (pid <= 0) return 0;
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      int64_t kb = 0;
      if (absl::SimpleAtoi(absl::StripAsciiWhitespace(
                               absl::StripSuffix(absl::StripAsciiWhitespace(line.substr(6)), "kB")),
                           &kb)) {
        return kb;
      }
    }
  }
  return 0;
}

std::vector<rerank::v1::RerankRequest> ToProtos(const std::vector<Request>& work,
                                                const std::string& client) {
  std::vector<rerank::v1::RerankRequest> reqs(work.size());
  for (size_t i = 0; i < work.size(); ++i) {
    reqs[i].set_query(work[i].query);
    reqs[i].set_client_id(client);
    for (const auto& d : work[i].docs) {
      auto* doc = reqs[i].add_documents();
      doc->set_id(d.first);
      doc->set_text(d.second);
    }
  }
  return reqs;
}

// `n` sequential blocking requests; their latencies (ms) and the number that failed.
std::pair<std::vector<double>, int> LoneProbe(rerank::v1::Reranker::Stub* stub,
                                              const std::vector<rerank::v1::RerankRequest>& reqs,
                                              int n, size_t offset) {
  std::vector<double> ms;
  int failed = 0;
  for (int i = 0; i < n; ++i) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
    rerank::v1::RerankResponse resp;
    const auto s = Clock::now();
    grpc::Status st = stub->Rerank(&ctx, reqs[(offset + i) % reqs.size()], &resp);
    if (st.ok()) {
      ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - s).count());
    } else {
      ++failed;
      std::cerr << "rerank-bench: probe failed: " << st.error_code() << ": " << st.error_message()
                << "\n";
    }
  }
  return {ms, failed};
}

// Open-loop overload / soak (see the file comment).
int RunLoad(const Args& a, const std::vector<Request>& work) {
  grpc::ChannelArguments load_args, probe_args;
  load_args.SetInt("rerank.bench.client", 0);  // load and probes on their own connections
  probe_args.SetInt("rerank.bench.client", 1);
  auto load_ch = grpc::CreateCustomChannel(a.target, grpc::InsecureChannelCredentials(), load_args);
  auto probe_ch =
      grpc::CreateCustomChannel(a.target, grpc::InsecureChannelCredentials(), probe_args);
  for (const auto& ch : {load_ch, probe_ch}) {
    if (!ch->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
      std::cerr << "rerank-bench: cannot connect to " << a.target << "\n";
      return 2;
    }
  }
  auto load_stub = rerank::v1::Reranker::NewStub(load_ch);
  auto probe_stub = rerank::v1::Reranker::NewStub(probe_ch);
  const std::vector<rerank::v1::RerankRequest> reqs = ToProtos(work, "bench");
  const std::vector<rerank::v1::RerankRequest> probes = ToProtos(work, "probe");

  auto [before_ms, before_failed] = LoneProbe(probe_stub.get(), probes, a.lone, 0);

  struct Window {
    int sent = 0, ok = 0, shed = 0, errors = 0, skipped = 0;
    int64_t pairs = 0;
    std::vector<double> ok_ms;
    int64_t rss_kb_max = 0;
    int64_t rss_kb_last = 0;
  };
  absl::Mutex mu;
  std::vector<Window> windows;
  std::vector<double> all_ok_ms;
  int64_t total_sent = 0, total_ok = 0, total_shed = 0, total_errors = 0, total_skipped = 0;
  int64_t pairs_ok = 0, rss_max = 0;
  std::string first_error;
  std::atomic<int> outstanding{0};
  const auto t0 = Clock::now();
  const auto end =
      t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(a.duration));
  auto window_of = [&](Clock::time_point t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) -> Window& {
    const double secs = std::chrono::duration<double>(t - t0).count();
    const size_t w = static_cast<size_t>(std::max(0.0, secs) / a.window);
    if (windows.size() <= w) windows.resize(w + 1);
    return windows[w];
  };
  struct Call {
    grpc::ClientContext ctx;
    rerank::v1::RerankResponse resp;
    Clock::time_point start;
    const rerank::v1::RerankRequest* req;
  };

  // Prints each window once it has closed; samples the server's RSS every second.
  std::atomic<bool> stop_reporter{false};
  size_t printed = 0;
  auto print_window = [&](size_t i) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    const Window& w = windows[i];
    nlohmann::json j = {{"window", i},
                        {"t_s", (i + 1) * a.window},
                        {"sent", w.sent},
                        {"ok", w.ok},
                        {"shed", w.shed},
                        {"errors", w.errors},
                        {"client_skipped", w.skipped},
                        {"pairs_per_s", w.pairs / a.window},
                        {"ok_ms_p50", Percentile(w.ok_ms, 50)},
                        {"ok_ms_p99", Percentile(w.ok_ms, 99)},
                        {"rss_mb_max", w.rss_kb_max / 1024.0},
                        {"rss_mb_last", w.rss_kb_last / 1024.0}};
    std::printf("%s\n", j.dump().c_str());
    std::fflush(stdout);
  };
  std::thread reporter([&] {
    auto next = t0;
    while (!stop_reporter.load()) {
      next += std::chrono::seconds(1);
      std::this_thread::sleep_until(next);
      const int64_t rss = ReadRssKb(a.pid);
      absl::MutexLock l(&mu);
      Window& w = window_of(Clock::now());
      w.rss_kb_max = std::max(w.rss_kb_max, rss);
      w.rss_kb_last = rss;
      rss_max = std::max(rss_max, rss);
      const size_t closed =
          static_cast<size_t>(std::chrono::duration<double>(Clock::now() - t0).count() / a.window);
      while (printed < closed && printed < windows.size()) print_window(printed++);
    }
  });

  std::mt19937_64 rng(42);
  std::exponential_distribution<double> gap(a.rate);
  auto next = t0;
  for (size_t i = 0; next < end; ++i) {
    std::this_thread::sleep_until(next);
    next += std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(gap(rng)));
    if (outstanding.load() >= a.max_outstanding) {
      absl::MutexLock l(&mu);
      ++window_of(Clock::now()).skipped;
      ++total_skipped;
      continue;
    }
    auto* call = new Call();
    call->req = &reqs[i % reqs.size()];
    call->start = Clock::now();
    call->ctx.set_deadline(std::chrono::system_clock::now() +
                           std::chrono::milliseconds(a.deadline_ms));
    {
      absl::MutexLock l(&mu);
      ++window_of(call->start).sent;
      ++total_sent;
    }
    ++outstanding;
    load_stub->async()->Rerank(&call->ctx, call->req, &call->resp, [&, call](grpc::Status s) {
      const auto now = Clock::now();
      const double ms = std::chrono::duration<double, std::milli>(now - call->start).count();
      {
        absl::MutexLock l(&mu);
        Window& w = window_of(now);
        if (s.ok()) {
          ++w.ok;
          ++total_ok;
          w.pairs += call->req->documents_size();
          pairs_ok += call->req->documents_size();
          w.ok_ms.push_back(ms);
          all_ok_ms.push_back(ms);
        } else if (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
          ++w.shed;
          ++total_shed;
        } else {
          ++w.errors;
          if (total_errors++ == 0) {
            first_error = std::to_string(s.error_code()) + ": " + s.error_message();
          }
        }
      }
      delete call;
      --outstanding;
    });
  }
  // The load has stopped: a new client's lone requests at once (its backlog still drains), then
  // again once every outstanding call has finished.
  const double stopped_at_s = std::chrono::duration<double>(Clock::now() - t0).count();
  auto [after_ms, after_failed] = LoneProbe(probe_stub.get(), probes, a.lone, 7);
  while (outstanding.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  const double drained_at_s = std::chrono::duration<double>(Clock::now() - t0).count();
  auto [drained_ms, drained_failed] = LoneProbe(probe_stub.get(), probes, a.lone, 13);
  stop_reporter.store(true);
  reporter.join();

  absl::MutexLock l(&mu);
  while (printed < windows.size()) print_window(printed++);
  const double d = a.duration;
  const int64_t rss_end = ReadRssKb(a.pid);
  nlohmann::json out = {{"mode", "load"},
                        {"target", a.target},
                        {"rate", a.rate},
                        {"duration_s", d},
                        {"deadline_ms", a.deadline_ms},
                        {"sent", total_sent},
                        {"ok", total_ok},
                        {"shed", total_shed},
                        {"errors", total_errors},
                        {"client_skipped", total_skipped},
                        {"offered_rps", total_sent / d},
                        {"admitted_rps", total_ok / d},
                        {"shed_rps", total_shed / d},
                        {"ok_pairs_per_s", pairs_ok / d},
                        {"ok_ms_p50", Percentile(all_ok_ms, 50)},
                        {"ok_ms_p99", Percentile(all_ok_ms, 99)},
                        {"ok_ms_max", Percentile(all_ok_ms, 100)},
                        {"rss_mb_max", rss_max / 1024.0},
                        {"rss_mb_end", rss_end / 1024.0},
                        {"load_stopped_s", stopped_at_s},
                        {"backlog_drained_s", drained_at_s},
                        {"lone_before_ms", before_ms},
                        {"lone_right_after_ms", after_ms},
                        {"lone_after_drain_ms", drained_ms},
                        {"probe_failures", before_failed + after_failed + drained_failed}};
  std::printf(
      "load: offered %.2f req/s, admitted %.2f, shed %.2f, errors %lld (first: %s); ok p50 %.0f "
      "p99 %.0f ms; max RSS %.1f MiB; lone p50 before %.0f, right after %.0f, after drain %.0f "
      "ms\n",
      total_sent / d, total_ok / d, total_shed / d, static_cast<long long>(total_errors),
      first_error.c_str(), Percentile(all_ok_ms, 50), Percentile(all_ok_ms, 99), rss_max / 1024.0,
      Percentile(before_ms, 50), Percentile(after_ms, 50), Percentile(drained_ms, 50));
  std::printf("%s\n", out.dump().c_str());
  return before_failed + after_failed + drained_failed == 0 && total_errors == 0 ? 0 : 1;
}

// Idle connections (see the file comment).
int RunIdle(const Args& a, const std::vector<Request>& work) {
  const std::vector<rerank::v1::RerankRequest> probes = ToProtos(work, "probe");
  grpc::ChannelArguments probe_args;
  probe_args.SetInt("rerank.bench.client", -1);
  auto probe_ch =
      grpc::CreateCustomChannel(a.target, grpc::InsecureChannelCredentials(), probe_args);
  if (!probe_ch->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
    std::cerr << "rerank-bench: cannot connect to " << a.target << "\n";
    return 2;
  }
  auto probe = rerank::v1::Reranker::NewStub(probe_ch);
  LoneProbe(probe.get(), probes, 2, 0);  // warm
  const int64_t rss_without = ReadRssKb(a.pid);
  auto [without_ms, without_failed] = LoneProbe(probe.get(), probes, a.lone, 0);

  // Each channel its own subchannel pool and a distinct argument: its own TCP connection.
  std::vector<std::shared_ptr<grpc::Channel>> idle;
  idle.reserve(a.connections);
  const auto t_open = Clock::now();
  for (int i = 0; i < a.connections; ++i) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt("rerank.bench.idle", i);
    auto ch = grpc::CreateCustomChannel(a.target, grpc::InsecureChannelCredentials(), args);
    ch->GetState(/*try_to_connect=*/true);
    idle.push_back(std::move(ch));
  }
  int connected = 0;
  const auto give_up = std::chrono::system_clock::now() + std::chrono::seconds(300);
  for (auto& ch : idle) {
    if (ch->WaitForConnected(give_up)) ++connected;
  }
  const double connect_s = std::chrono::duration<double>(Clock::now() - t_open).count();
  std::this_thread::sleep_for(std::chrono::seconds(2));
  const int64_t rss_with = ReadRssKb(a.pid);
  int64_t server_fds = 0;
  if (a.pid > 0) {
    std::error_code ec;
    for (auto it =
             std::filesystem::directory_iterator("/proc/" + std::to_string(a.pid) + "/fd", ec);
         !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
      ++server_fds;
    }
  }
  auto [with_ms, with_failed] = LoneProbe(probe.get(), probes, a.lone, 0);
  int still_ready = 0;
  for (auto& ch : idle) {
    if (ch->GetState(false) == GRPC_CHANNEL_READY) ++still_ready;
  }
  nlohmann::json out = {{"mode", "idle"},
                        {"target", a.target},
                        {"connections", a.connections},
                        {"connected", connected},
                        {"still_ready_after_probe", still_ready},
                        {"connect_s", connect_s},
                        {"lone_requests", a.lone},
                        {"without_ms_p50", Percentile(without_ms, 50)},
                        {"without_ms_p99", Percentile(without_ms, 99)},
                        {"with_ms_p50", Percentile(with_ms, 50)},
                        {"with_ms_p99", Percentile(with_ms, 99)},
                        {"server_rss_mb_without", rss_without / 1024.0},
                        {"server_rss_mb_with", rss_with / 1024.0},
                        {"server_open_fds_with", server_fds},
                        {"probe_failures", without_failed + with_failed}};
  std::printf(
      "idle: %d/%d connections up in %.1fs (%d still READY); lone p50/p99 without %.1f/%.1f ms, "
      "with %.1f/%.1f ms; server RSS %.1f -> %.1f MiB\n",
      connected, a.connections, connect_s, still_ready, Percentile(without_ms, 50),
      Percentile(without_ms, 99), Percentile(with_ms, 50), Percentile(with_ms, 99),
      rss_without / 1024.0, rss_with / 1024.0);
  std::printf("%s\n", out.dump().c_str());
  return connected == a.connections && without_failed + with_failed == 0 ? 0 : 1;
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
  // The plan depends on whether the model computes on padding: ask the model itself.
  rerank::InitTorchRuntime(a.threads, a.threads);
  auto probe = LoadScorer(a, a.model_dir, a.precision);
  if (!probe.ok()) {
    std::cerr << probe.status() << "\n";
    return 2;
  }
  const bool padding_free = (*probe)->PaddingFree();
  probe->reset();
  std::vector<rerank::bench::RooflineRequest> reqs;
  for (const Request& r : work) {
    const std::vector<rerank::Encoding> rows = EncodeRequest(**tok, r, a.max_length);
    rerank::bench::RooflineRequest rr;
    for (const auto& e : rows) rr.lengths.push_back(static_cast<int64_t>(e.input_ids.size()));
    rr.batches = PlanRequest(rows, a, (*tok)->pad_id(), padding_free).batches;
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
    auto s = LoadScorer(a, dir, precision);
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
    const std::vector<rerank::Encoding> rows = EncodeRequest(**tok, r, a.max_length);
    std::vector<float> s32(rows.size()), s16(rows.size());
    // The model under test's plan (a padding-free model packs more rows per forward); both
    // models score the same batches.
    const PlannedRequest plan = PlanRequest(rows, a, (*tok)->pad_id(), bf16->PaddingFree());
    for (size_t b = 0; b < plan.batches.size(); ++b) {
      auto x = fp32->Score(plan.batches[b]);
      auto y = bf16->Score(plan.batches[b]);
      if (!x.ok() || !y.ok()) return 1;
      const std::vector<int>& idx = plan.rows_of[b];
      for (size_t k = 0; k < idx.size(); ++k) s32[idx[k]] = (*x)[k], s16[idx[k]] = (*y)[k];
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
  std::cerr << "usage: rerank-bench --mode raw|serve|serve-http|fair|load|idle|fidelity|roofline\n"
               "         [--workload JSONL] [--requests N]\n"
               "  raw:   [--model-dir DIR] [--precision fp32|bf16] [--workers W] [--threads T]\n"
               "         [--max-length L] [--max-batch-pairs P] [--max-batch-tokens K]\n"
               "         [--one-batch-per-request] [--fixed-length N] [--warmup N]\n"
               "  serve: [--target HOST:PORT] [--rate REQ_PER_S | --concurrency C]\n"
               "  serve-http: [--target HOST:PORT] [--concurrency C]   (POST /v2/rerank)\n"
               "  fair:  [--target HOST:PORT] [--concurrency C] [--duration S]\n"
               "         [--light-clients N] [--light-rate REQ_PER_S] [--light-docs D]\n"
               "  load:  [--target HOST:PORT] --rate REQ_PER_S [--duration S] [--window S]\n"
               "         [--pid SERVER_PID] [--deadline-ms MS] [--lone N] [--max-outstanding N]\n"
               "  idle:  [--target HOST:PORT] [--connections N] [--lone N] [--pid SERVER_PID]\n"
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
    else if (k == "--window")
      a.window = std::stod(val());
    else if (k == "--pid")
      num(&a.pid);
    else if (k == "--deadline-ms")
      num(&a.deadline_ms);
    else if (k == "--lone")
      num(&a.lone);
    else if (k == "--max-outstanding")
      num(&a.max_outstanding);
    else if (k == "--connections")
      num(&a.connections);
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
  if (a.mode == "serve-http") return RunServeHttp(a, work);
  if (a.mode == "fair") return RunFair(a, work);
  if (a.mode == "load") return RunLoad(a, work);
  if (a.mode == "idle") return RunIdle(a, work);
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

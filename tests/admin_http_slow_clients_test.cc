// The acceptance test of the admin HTTP transport: the real admin server (AdminCore on real
// components, as in admin_plane_test.cc) holds 300 connections that each trickle one byte of a
// request every 2.5 s, and the kubelet's probes (GET /live, GET /health on fresh connections)
// must still answer in well under 100 ms. The old blocking server (4 workers, a timeout per
// recv()) let /live time out with 64 such clients. Then the slow clients each get 408 at their
// absolute deadline, trickling or not.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "admin/admin_core.h"
#include "admin/http_server.h"
#include "admin/live_stats.h"
#include "admin/service_metrics.h"
#include "common/audit_log.h"
#include "common/flag_store.h"
#include "common/score_cache.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/http_client.h"
#include "tests/testing/http_conn.h"

namespace rerank {
namespace {

namespace fs = std::filesystem;
using testing::FakeClock;
using testing::HttpConn;
using testing::HttpGet;
using testing::HttpResult;
using testing::RawResponse;

int ThreadCount() {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("Threads:", 0) == 0) return std::stoi(line.substr(8));
  }
  return -1;
}

std::string Summary(std::vector<double> ms) {
  std::sort(ms.begin(), ms.end());
  if (ms.empty()) return "no samples";
  auto at = [&](double q) {
    return ms[std::min(ms.size() - 1, static_cast<size_t>(q * ms.size()))];
  };
  return absl::StrFormat("n=%d min=%.2f median=%.2f p99=%.2f max=%.2f ms", ms.size(), ms.front(),
                         at(0.5), at(0.99), ms.back());
}

class AdminHttpSlowClientsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) / absl::StrCat("admin_http_slow_", getpid());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    AuditLog::Options ao;
    ao.path = (dir_ / "audit.jsonl").string();
    auto audit = AuditLog::Create(ao, &clock_);
    ASSERT_TRUE(audit.ok()) << audit.status();
    audit_ = *std::move(audit);
    FlagStore::Options fo;
    fo.path = (dir_ / "flags.yaml").string();
    fo.poll_interval = absl::ZeroDuration();
    auto flags = FlagStore::Create(fo, &clock_, audit_.get());
    ASSERT_TRUE(flags.ok()) << flags.status();
    flags_ = *std::move(flags);
    auto cache = ScoreCache::Create(ScoreCache::Options{});
    ASSERT_TRUE(cache.ok());
    cache_ = *std::move(cache);
    auto stats = LiveStats::Create(LiveStats::Options(), &clock_);
    ASSERT_TRUE(stats.ok());
    stats_ = *std::move(stats);
    auto metrics = ServiceMetrics::Create(ServiceMetrics::Options(), &registry_);
    ASSERT_TRUE(metrics.ok());
    metrics_ = *std::move(metrics);
    ServiceMetrics::Sources s;
    s.cache = cache_.get();
    s.flags = flags_.get();
    s.audit = audit_.get();
    s.ready = [] { return true; };
    metrics_->SetSources(s);
    AdminCore::Deps d;
    d.flags = flags_.get();
    d.audit = audit_.get();
    d.stats = stats_.get();
    d.cache = cache_.get();
    d.metrics = metrics_.get();
    d.clock = &clock_;
    d.start = clock_.Now();
    d.model_name = "tiny_model";
    d.model_version = "abc123";
    d.precision = "fp32";
    d.readiness = [] { return Readiness{true, ""}; };
    auto core = AdminCore::Create(AdminCore::Options(), d);
    ASSERT_TRUE(core.ok()) << core.status();
    core_ = *std::move(core);
    AdminHttpServer::Options ho;  // production defaults, on a free loopback port
    ho.listen = "127.0.0.1:0";
    auto http = AdminHttpServer::Start(ho, core_.get());
    ASSERT_TRUE(http.ok()) << http.status();
    http_ = *std::move(http);
  }
  void TearDown() override {
    http_.reset();
    core_.reset();
    flags_.reset();
    audit_.reset();
    fs::remove_all(dir_);
  }

  fs::path dir_;
  FakeClock clock_{absl::FromUnixSeconds(1'700'000'000)};
  std::unique_ptr<AuditLog> audit_;
  std::unique_ptr<FlagStore> flags_;
  std::unique_ptr<ScoreCache> cache_;
  std::unique_ptr<LiveStats> stats_;
  prometheus::Registry registry_;
  std::unique_ptr<ServiceMetrics> metrics_;
  std::unique_ptr<AdminCore> core_;
  std::unique_ptr<AdminHttpServer> http_;
};

TEST_F(AdminHttpSlowClientsTest, ProbesStayFastWhileHundredsOfClientsTrickle) {
  constexpr int kSlow = 300;
  constexpr absl::Duration kBytePeriod = absl::Milliseconds(2500);  // per slow connection
  constexpr absl::Duration kProbeFor = absl::Seconds(7);            // < the 10 s request deadline
  constexpr double kProbeLimitMs = 100;
  // 300 client + 300 server sockets: make sure the descriptor limit allows them.
  rlimit lim{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &lim), 0);
  if (lim.rlim_cur < 2048) {
    lim.rlim_cur = std::min<rlim_t>(lim.rlim_max, 4096);
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &lim), 0);
  }
  ASSERT_GE(lim.rlim_cur, 2 * kSlow + 100u) << "RLIMIT_NOFILE too low for this test";

  const int port = http_->port();
  const int threads_before = ThreadCount();
  const std::string slow_request = "GET /live HTTP/1.1\r\nX-Slow: " + std::string(200, 'a');
  std::vector<std::unique_ptr<HttpConn>> slow;
  const absl::Time first_byte = absl::Now();
  for (int i = 0; i < kSlow; ++i) {
    slow.push_back(std::make_unique<HttpConn>(port, absl::Seconds(15)));
    ASSERT_TRUE(slow.back()->connected()) << i;
    ASSERT_TRUE(slow.back()->Send(slow_request.substr(0, 1)));
  }
  for (int i = 0; i < 500 && http_->stats().open_connections < kSlow; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_EQ(http_->stats().open_connections, kSlow);
  EXPECT_EQ(ThreadCount(), threads_before) << "slow connections must not cost threads";

  std::atomic<bool> stop{false};
  std::thread trickler([&] {
    for (size_t pos = 1; pos < slow_request.size() && !stop; ++pos) {
      for (int i = 0; i < kSlow && !stop; ++i) {
        slow[i]->Send(slow_request.substr(pos, 1));
        absl::SleepFor(kBytePeriod / kSlow);
      }
    }
  });

  std::vector<double> live_ms, health_ms;
  const absl::Time probe_end = absl::Now() + kProbeFor;
  for (int n = 0; absl::Now() < probe_end; ++n) {
    const std::string path = n % 2 == 0 ? "/live" : "/health";
    const absl::Time t0 = absl::Now();
    absl::StatusOr<HttpResult> r = HttpGet(port, path);
    const double ms = absl::ToDoubleMilliseconds(absl::Now() - t0);
    ASSERT_TRUE(r.ok()) << path << ": " << r.status();
    EXPECT_EQ(r->status, 200) << path << ": " << r->body;
    EXPECT_LT(ms, kProbeLimitMs) << path << " took " << ms << " ms";
    (n % 2 == 0 ? live_ms : health_ms).push_back(ms);
    absl::SleepFor(absl::Milliseconds(50));
  }
  stop = true;
  trickler.join();

  // The slow clients were held (not dropped to make room), and still get no answer...
  int silent = 0;
  for (auto& c : slow) silent += c->OpenAndSilent() ? 1 : 0;
  EXPECT_EQ(silent, kSlow) << "slow connections answered or closed before their deadline";
  EXPECT_EQ(http_->stats().refused_connections, 0);
  // ... until their absolute deadline (request_timeout_ms = 10 s from the first byte): 408.
  int timed_out = 0;
  for (auto& c : slow) {
    std::optional<RawResponse> r = c->Read();
    timed_out += r.has_value() && r->status == 408 ? 1 : 0;
  }
  const absl::Duration all_408_after = absl::Now() - first_byte;
  EXPECT_EQ(timed_out, kSlow);
  EXPECT_LT(all_408_after, absl::Seconds(14));

  const std::string report =
      absl::StrCat("with ", kSlow, " trickling connections: GET /live ", Summary(live_ms),
                   "; GET /health ", Summary(health_ms), "; all ", timed_out, " got 408 ",
                   absl::FormatDuration(all_408_after), " after their first byte");
  std::cout << report << std::endl;
  RecordProperty("latency", report);
}

}  // namespace
}  // namespace rerank

#include "server/batcher.h"

#include <pthread.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <numeric>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace rerank {

struct Batcher::JobState {
  std::shared_ptr<ScoringJob> job;
  std::vector<float> scores;
  std::atomic<int> remaining{0};
  std::atomic<bool> finished{false};
  std::atomic<bool> started{false};  // a batch holding its rows began (queue_wait is set)
  // Why it was dropped before inference (set before `finished`), so later batches holding its
  // other rows count them as dropped too.
  std::atomic<DropReason> dropped{DropReason::kNone};
  absl::Time enqueued;
};

namespace {

// A row by pointer, hashed/compared by content: identical rows in a batch are scored once.
struct RowRef {
  const Encoding* enc;
  bool operator==(const RowRef& o) const {
    return enc->input_ids == o.enc->input_ids && enc->token_type_ids == o.enc->token_type_ids;
  }
  template <typename H>
  friend H AbslHashValue(H h, const RowRef& r) {
    return H::combine(std::move(h), r.enc->input_ids, r.enc->token_type_ids);
  }
};

}  // namespace

std::vector<MicroBatch> PlanMicroBatches(const std::vector<int64_t>& lengths, int max_rows,
                                         int64_t max_tokens, int64_t forward_overhead_tokens,
                                         bool padding_free) {
  const int n = static_cast<int>(lengths.size());
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return lengths[a] < lengths[b]; });
  // dp[i]: cheapest split of the i shortest rows; a micro-batch [j, i) costs
  // (i - j) * len(i - 1) + overhead, or its real tokens + overhead when padding_free.
  // O(n * max_rows), n <= a few hundred.
  constexpr int64_t kInf = std::numeric_limits<int64_t>::max() / 4;
  std::vector<int64_t> dp(n + 1, kInf);
  std::vector<int> from(n + 1, 0);
  dp[0] = 0;
  for (int i = 1; i <= n; ++i) {
    const int64_t longest = lengths[order[i - 1]];
    int64_t real = 0;  // tokens of rows [j, i)
    for (int j = i - 1; j >= 0 && i - j <= std::max(1, max_rows); --j) {
      const int64_t rows = i - j;
      real += lengths[order[j]];
      if (rows > 1 && rows * longest > max_tokens) break;
      const int64_t cost = dp[j] + (padding_free ? real : rows * longest) + forward_overhead_tokens;
      if (cost < dp[i]) {
        dp[i] = cost;
        from[i] = j;
      }
    }
  }
  std::vector<MicroBatch> plan;
  for (int i = n; i > 0; i = from[i]) {
    MicroBatch mb;
    mb.seq_len = lengths[order[i - 1]];
    mb.rows.assign(order.begin() + from[i], order.begin() + i);
    plan.push_back(std::move(mb));
  }
  std::reverse(plan.begin(), plan.end());
  return plan;
}

ScoreBatch BuildScoreBatch(const std::vector<const Encoding*>& rows, int64_t seq_len,
                           int64_t pad_id) {
  ScoreBatch b;
  b.rows = static_cast<int64_t>(rows.size());
  b.seq_len = seq_len;
  const size_t n = static_cast<size_t>(b.rows * seq_len);
  b.input_ids.assign(n, pad_id);
  b.attention_mask.assign(n, 0);
  b.token_type_ids.assign(n, 0);
  for (size_t r = 0; r < rows.size(); ++r) {
    const Encoding& e = *rows[r];
    const size_t len = std::min<size_t>(e.input_ids.size(), static_cast<size_t>(seq_len));
    const size_t off = r * static_cast<size_t>(seq_len);
    std::copy_n(e.input_ids.begin(), len, b.input_ids.begin() + off);
    std::fill_n(b.attention_mask.begin() + off, len, 1);
    std::copy_n(e.token_type_ids.begin(), std::min(len, e.token_type_ids.size()),
                b.token_type_ids.begin() + off);
  }
  return b;
}

Batcher::Batcher(const Options& options, ScorerFactory factory, Clock* clock,
                 BatcherObserver* observer)
    : options_(options), factory_(std::move(factory)), clock_(clock), observer_(observer) {}

absl::StatusOr<std::unique_ptr<Batcher>> Batcher::Create(const Options& options,
                                                         ScorerFactory factory, Clock* clock,
                                                         BatcherObserver* observer) {
  if (options.workers < 1) return absl::InvalidArgumentError("execution.workers: must be >= 1");
  if (options.max_batch_pairs < 1) {
    return absl::InvalidArgumentError("execution.max_batch_pairs: must be >= 1");
  }
  if (options.max_batch_tokens < 1) {
    return absl::InvalidArgumentError("execution.max_batch_tokens: must be >= 1");
  }
  if (options.max_queue_pairs < 1) {
    return absl::InvalidArgumentError("execution.max_queue_pairs: must be >= 1");
  }
  if (options.max_client_queue_pairs < 0) {
    return absl::InvalidArgumentError("execution.max_client_queue_pairs: must be >= 0");
  }
  if (options.fair_quantum_tokens < 1) {
    return absl::InvalidArgumentError("execution.fair_quantum_tokens: must be >= 1");
  }
  for (const auto& [client, weight] : options.client_weights) {
    if (weight < 1) {
      return absl::InvalidArgumentError(absl::StrCat("execution.client_weights: weight of '",
                                                     client, "' must be >= 1, got ", weight));
    }
  }
  if (!factory) return absl::InvalidArgumentError("Batcher: scorer factory is required");
  if (clock == nullptr) return absl::InvalidArgumentError("Batcher: clock is required");
  std::unique_ptr<Batcher> b(new Batcher(options, std::move(factory), clock, observer));
  for (int i = 0; i < options.workers; ++i) {
    b->threads_.emplace_back([raw = b.get(), i] { raw->WorkerLoop(i); });
  }
  absl::Status start_error;
  {
    absl::MutexLock lock(&b->mu_);
    b->mu_.Await(absl::Condition(
        +[](Batcher* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
          return self->started_ == self->options_.workers || !self->start_error_.ok();
        },
        b.get()));
    start_error = b->start_error_;
  }
  if (!start_error.ok()) {
    b->Stop();
    return start_error;
  }
  return b;
}

Batcher::~Batcher() { Stop(); }

absl::Status Batcher::Submit(std::shared_ptr<ScoringJob> job) {
  if (job == nullptr || job->rows.empty()) {
    return absl::InvalidArgumentError("Batcher::Submit: a job needs at least one row");
  }
  const int n = static_cast<int>(job->rows.size());
  auto state = std::make_shared<JobState>();
  state->job = std::move(job);
  state->scores.assign(n, 0.0f);
  state->remaining.store(n);
  state->enqueued = clock_->Now();
  const std::string& client = state->job->client;
  absl::MutexLock lock(&mu_);
  if (!accepting_) return absl::UnavailableError("server is draining; retry on another replica");
  if (absl::Status s = AdmitLocked(client, n); !s.ok()) return s;
  auto [it, inserted] = clients_.try_emplace(client);
  ClientQueue& c = it->second;
  if (inserted) {
    c.name = client;
    c.weight = WeightOf(client);
    // A client that had nothing queued (a sparse one) gets its first turn before the clients
    // that stayed backlogged, as FQ-CoDel's new flows do: a light client's request is served
    // after the batch in flight, not after a round of every heavy client's turns.
    c.is_new = true;
    new_ring_.push_back(&c);
    active_weight_ += c.weight;
  }
  for (int i = 0; i < n; ++i) {
    const int64_t tokens =
        std::max<int64_t>(1, static_cast<int64_t>(state->job->rows[i].input_ids.size()));
    c.items.push_back(Item{state, i, tokens});
  }
  queued_ += n;
  return absl::OkStatus();
}

absl::Status Batcher::CheckAdmission(const std::string& client, int min_rows) const {
  absl::MutexLock lock(&mu_);
  if (!accepting_) return absl::UnavailableError("server is draining; retry on another replica");
  if (min_rows < 1) return absl::OkStatus();
  return AdmitLocked(client, min_rows);
}

int Batcher::WeightOf(const std::string& client) const {
  auto it = options_.client_weights.find(client);
  return it == options_.client_weights.end() ? 1 : it->second;
}

absl::Status Batcher::AdmitLocked(const std::string& client, int rows) const {
  const int cap = options_.max_client_queue_pairs;
  if (cap > 0) {
    auto it = clients_.find(client);
    const int mine = it == clients_.end() ? 0 : static_cast<int>(it->second.items.size());
    // A job over the cap on its own is admitted when its client has nothing queued.
    if (mine > 0 && mine + rows > cap) {
      // It fits once this many of the client's rows are scored, at the client's weighted share.
      const int to_drain = std::min(mine, mine + rows - cap);
      const double share = static_cast<double>(it->second.weight) /
                           static_cast<double>(std::max<int64_t>(1, active_weight_));
      const int64_t retry_ms = RetryAfterMsLocked(to_drain, share);
      constexpr size_t kMaxShownKey = 64;  // the key is caller-controlled: bound the message
      absl::Status s = absl::ResourceExhaustedError(absl::StrCat(
          "client '", absl::string_view(client).substr(0, kMaxShownKey), "' has ", mine,
          " pairs queued; with this request's ", rows, " it would exceed its limit of ", cap,
          " (execution.max_client_queue_pairs); retry after ", retry_ms, " ms"));
      s.SetPayload(kQueueRetryAfterPayload, absl::Cord(absl::StrCat(retry_ms)));
      return s;
    }
  }
  if (queued_ + rows > options_.max_queue_pairs) {
    const int64_t retry_ms = RetryAfterMsLocked(queued_ + rows - options_.max_queue_pairs, 1.0);
    absl::Status s = absl::ResourceExhaustedError(
        absl::StrCat("scoring queue is full (", queued_, " of ", options_.max_queue_pairs,
                     " pairs queued); retry with backoff, e.g. after ", retry_ms, " ms"));
    s.SetPayload(kQueueRetryAfterPayload, absl::Cord(absl::StrCat(retry_ms)));
    return s;
  }
  return absl::OkStatus();
}

int64_t Batcher::RetryAfterMsLocked(int rows, double share) const {
  constexpr int64_t kMinMs = 10, kMaxMs = 60000, kUnknownMs = 1000;
  if (seconds_per_row_ <= 0) return kUnknownMs;  // no batch measured yet
  const double seconds =
      rows * seconds_per_row_ / std::max(share, 1e-3) / std::max(1, options_.workers);
  const double ms = std::ceil(seconds * 1000.0);
  return std::clamp<int64_t>(static_cast<int64_t>(std::min(ms, 1e9)), kMinMs, kMaxMs);
}

bool Batcher::FinishJob(const std::shared_ptr<JobState>& job,
                        absl::StatusOr<std::vector<float>> result) {
  if (job->finished.exchange(true)) return false;
  job->job->done(std::move(result));
  return true;
}

namespace {

// Any exception out of a Scorer (a model that throws instead of returning a status) becomes
// INTERNAL for the batch: the worker, the process and later batches are unaffected.
absl::StatusOr<std::vector<float>> ScoreNoThrow(Scorer& scorer, const ScoreBatch& batch) {
  try {
    return scorer.Score(batch);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("model forward threw: ", e.what()));
  } catch (...) {
    return absl::InternalError("model forward threw a non-standard exception");
  }
}

}  // namespace

bool Batcher::TakeBatch(std::vector<Item>* batch, absl::Time* oldest_enqueue) {
  absl::MutexLock lock(&mu_);
  while (true) {
    mu_.Await(absl::Condition(
        +[](Batcher* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
          return self->stopping_ || self->queued_ > 0;
        },
        this));
    if (stopping_) return false;
    // Give concurrent requests a short window to join this batch. The wait is in real time
    // (it is a scheduling delay, not business logic); it ends early once the batch is full.
    if (queued_ < options_.max_batch_pairs && options_.max_queue_delay > absl::ZeroDuration()) {
      const absl::Time until = absl::Now() + options_.max_queue_delay;
      mu_.AwaitWithDeadline(absl::Condition(
                                +[](Batcher* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
                                  return self->stopping_ ||
                                         self->queued_ >= self->options_.max_batch_pairs;
                                },
                                this),
                            until);
      if (stopping_) return false;
    }
    if (queued_ == 0) continue;  // another worker took it
    // Deficit round robin over the clients with queued rows, in tokens.
    int64_t tokens = 0;
    bool first = true;
    while ((!new_ring_.empty() || !ring_.empty()) &&
           static_cast<int>(batch->size()) < options_.max_batch_pairs) {
      std::deque<ClientQueue*>& from = new_ring_.empty() ? ring_ : new_ring_;
      ClientQueue* c = from.front();
      if (!c->in_turn) {
        c->deficit += options_.fair_quantum_tokens * c->weight;
        c->in_turn = true;
      }
      bool full = false;
      while (!c->items.empty()) {
        Item& head = c->items.front();
        if (head.tokens > c->deficit) break;  // its turn is over
        if (static_cast<int>(batch->size()) >= options_.max_batch_pairs ||
            (!batch->empty() && tokens + head.tokens > options_.max_batch_tokens)) {
          full = true;
          break;
        }
        tokens += head.tokens;
        c->deficit -= head.tokens;
        if (first || head.job->enqueued < *oldest_enqueue) *oldest_enqueue = head.job->enqueued;
        first = false;
        batch->push_back(std::move(head));
        c->items.pop_front();
        --queued_;
      }
      if (c->items.empty()) {
        // Nothing left: leave the round (an idle client keeps no credit).
        from.pop_front();
        active_weight_ -= c->weight;
        clients_.erase(clients_.find(c->name));
      } else if (full) {
        break;  // the batch is full: this client's turn continues in the next one
      } else {
        c->in_turn = false;  // its deficit carries over to its next turn
        c->is_new = false;   // after its first turn it takes turns with the backlogged clients
        from.pop_front();
        ring_.push_back(c);
      }
    }
    // Rows of clients this batch drained (no longer in clients_) run first; see RunBatch.
    for (Item& item : *batch) item.drains_client = !clients_.contains(item.job->job->client);
    ++busy_;
    return true;
  }
}

void Batcher::RunBatch(Scorer& scorer, std::vector<Item>& batch, absl::Time oldest_enqueue) {
  const absl::Time start = clock_->Now();
  BatchReport report;
  report.rows = static_cast<int>(batch.size());
  report.queue_wait = start - oldest_enqueue;

  // Drop rows of jobs that were cancelled or expired while queued: no inference for them. The
  // deadline is checked first: gRPC also cancels a call whose deadline passed.
  std::vector<Item> live;
  live.reserve(batch.size());
  auto count_dropped = [&report](DropReason reason) {
    if (reason == DropReason::kCancelled) ++report.dropped_cancelled_pairs;
    if (reason == DropReason::kDeadline) ++report.dropped_deadline_pairs;
  };
  for (Item& item : batch) {
    JobState& js = *item.job;
    if (js.finished.load()) {  // dropped or failed in an earlier batch
      count_dropped(js.dropped.load());
      continue;
    }
    absl::Status drop;
    DropReason reason = DropReason::kNone;
    if (start > js.job->deadline) {
      drop = absl::DeadlineExceededError("request deadline passed while queued");
      reason = DropReason::kDeadline;
    } else if (js.job->is_cancelled && js.job->is_cancelled()) {
      drop = absl::CancelledError("request cancelled by the client before scoring");
      reason = DropReason::kCancelled;
    }
    if (!drop.ok()) {
      DropReason none = DropReason::kNone;
      js.dropped.compare_exchange_strong(none, reason);
      count_dropped(js.dropped.load());
      if (FinishJob(item.job, drop) && observer_ != nullptr) observer_->OnJobDropped(drop.code());
      continue;
    }
    // Written before this worker's fetch_sub on `remaining`, so whichever thread finishes the
    // job sees it.
    if (!js.started.exchange(true)) js.job->queue_wait = start - js.enqueued;
    live.push_back(std::move(item));
  }

  // De-duplicate identical rows (same ids and segments): score each once. A row is scored
  // early when any of its copies is.
  absl::flat_hash_map<RowRef, int> unique_index;
  std::vector<const Encoding*> unique_rows;
  std::vector<bool> unique_early;
  std::vector<int> item_to_unique(live.size());
  for (size_t i = 0; i < live.size(); ++i) {
    const Encoding* enc = &live[i].job->job->rows[live[i].row];
    auto [it, inserted] =
        unique_index.try_emplace(RowRef{enc}, static_cast<int>(unique_rows.size()));
    if (inserted) {
      unique_rows.push_back(enc);
      unique_early.push_back(false);
    }
    item_to_unique[i] = it->second;
    if (live[i].drains_client) unique_early[it->second] = true;
  }
  report.unique_rows = static_cast<int>(unique_rows.size());
  // The items holding each unique row, so that jobs are completed forward by forward.
  std::vector<std::vector<int>> unique_items(unique_rows.size());
  for (size_t i = 0; i < live.size(); ++i) {
    unique_items[item_to_unique[i]].push_back(static_cast<int>(i));
  }

  if (!unique_rows.empty()) {
    // Two groups, each planned on its own: rows of drained clients, then the rest. A group's
    // plan indexes into `group`; it is mapped back to unique rows below.
    std::vector<MicroBatch> plan;
    for (bool early : {true, false}) {
      std::vector<int> group;
      std::vector<int64_t> lengths;
      for (size_t u = 0; u < unique_rows.size(); ++u) {
        if (unique_early[u] != early) continue;
        group.push_back(static_cast<int>(u));
        lengths.push_back(static_cast<int64_t>(unique_rows[u]->input_ids.size()));
        report.real_tokens += lengths.back();
      }
      if (group.empty()) continue;
      for (MicroBatch& mb :
           PlanMicroBatches(lengths, options_.max_batch_pairs, options_.max_batch_tokens,
                            options_.forward_overhead_tokens, scorer.PaddingFree())) {
        for (int& r : mb.rows) r = group[r];
        plan.push_back(std::move(mb));
      }
    }
    for (const MicroBatch& mb : plan) {
      std::vector<const Encoding*> rows;
      rows.reserve(mb.rows.size());
      for (int r : mb.rows) rows.push_back(unique_rows[r]);
      ScoreBatch sb = BuildScoreBatch(rows, mb.seq_len, options_.pad_id);
      if (scorer.PaddingFree()) {  // the model computes on the real tokens only
        for (const Encoding* e : rows) report.padded_tokens += e->input_ids.size();
      } else {
        report.padded_tokens += sb.rows * sb.seq_len;
      }
      ++report.forwards;
      const absl::Time forward_start = clock_->Now();
      absl::StatusOr<std::vector<float>> scores = ScoreNoThrow(scorer, sb);
      report.inference += clock_->Now() - forward_start;  // forwards only, not the callbacks
      if (!scores.ok()) report.ok = false;
      // Complete every job whose last row this forward scored, before the next forward.
      for (size_t k = 0; k < mb.rows.size(); ++k) {
        for (int i : unique_items[mb.rows[k]]) {
          const std::shared_ptr<JobState>& js = live[i].job;
          if (!scores.ok()) {
            if (FinishJob(js, scores.status()) && observer_ != nullptr) {
              observer_->OnJobDropped(scores.status().code());
            }
            continue;
          }
          js->scores[live[i].row] = (*scores)[k];
          if (js->remaining.fetch_sub(1) == 1) FinishJob(js, std::move(js->scores));
        }
      }
    }
  }
  if (observer_ != nullptr && report.rows > 0) observer_->OnBatch(report);
}

void Batcher::WorkerLoop(int index) {
  const std::string name = absl::StrCat("rerank-w", index);
  pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
  absl::StatusOr<std::unique_ptr<Scorer>> scorer;
  try {
    scorer = factory_();
  } catch (const std::exception& e) {
    scorer = absl::InternalError(absl::StrCat("model replica ", index, " threw: ", e.what()));
  } catch (...) {
    scorer = absl::InternalError(absl::StrCat("model replica ", index, " threw"));
  }
  {
    absl::MutexLock lock(&mu_);
    if (!scorer.ok()) {
      if (start_error_.ok()) start_error_ = scorer.status();
      return;
    }
    ++started_;
  }
  std::vector<Item> batch;
  while (true) {
    batch.clear();
    absl::Time oldest;
    if (!TakeBatch(&batch, &oldest)) break;
    const absl::Time started = clock_->Now();
    RunBatch(**scorer, batch, oldest);
    const double seconds = absl::ToDoubleSeconds(clock_->Now() - started);
    const size_t rows = batch.size();
    batch.clear();  // release job references before reporting idle
    absl::MutexLock lock(&mu_);
    --busy_;
    if (rows > 0 && seconds > 0) {  // feeds the retry hints
      const double per_row = seconds / static_cast<double>(rows);
      seconds_per_row_ = seconds_per_row_ <= 0 ? per_row : 0.8 * seconds_per_row_ + 0.2 * per_row;
    }
  }
}

bool Batcher::Drain(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  accepting_ = false;
  return mu_.AwaitWithTimeout(absl::Condition(
                                  +[](Batcher* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
                                    return self->queued_ == 0 && self->busy_ == 0;
                                  },
                                  this),
                              timeout);
}

void Batcher::Stop() {
  std::vector<Item> leftover;
  {
    absl::MutexLock lock(&mu_);
    accepting_ = false;
    stopping_ = true;
    for (auto* r : {&new_ring_, &ring_}) {
      for (ClientQueue* c : *r) {
        for (Item& item : c->items) leftover.push_back(std::move(item));
      }
      r->clear();
    }
    clients_.clear();
    queued_ = 0;
    active_weight_ = 0;
  }
  for (Item& item : leftover) {
    FinishJob(item.job, absl::UnavailableError("server is shutting down"));
  }
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

int Batcher::queued_rows() const {
  absl::MutexLock lock(&mu_);
  return queued_;
}

int Batcher::queued_rows(const std::string& client) const {
  absl::MutexLock lock(&mu_);
  auto it = clients_.find(client);
  return it == clients_.end() ? 0 : static_cast<int>(it->second.items.size());
}

int Batcher::busy_workers() const {
  absl::MutexLock lock(&mu_);
  return busy_;
}

}  // namespace rerank

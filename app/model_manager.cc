#include "app/model_manager.h"

#include <pthread.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "server/model_info.h"
#include "server/torch_scorer.h"
#include "spdlog/spdlog.h"

namespace rerank {

ModelManager::ModelManager(Options options, Deps deps)
    : options_(std::move(options)), deps_(std::move(deps)) {}

absl::StatusOr<std::unique_ptr<ModelManager>> ModelManager::Create(Options options, Deps deps) {
  if (deps.clock == nullptr) return absl::InvalidArgumentError("ModelManager: clock is required");
  if (deps.audit == nullptr) return absl::InvalidArgumentError("ModelManager: audit is required");
  if (!deps.scorer_factory) {
    // OpenBLAS's pool is process-wide: intra_op_threads with one worker, 1 with several. Once
    // per process: every later model reuses these settings.
    const int threads = static_cast<int>(options.execution.intra_op_threads);
    InitTorchRuntime(threads, options.execution.workers == 1 ? threads : 1);
  }
  std::unique_ptr<ModelManager> m(new ModelManager(std::move(options), std::move(deps)));
  ASSIGN_OR_RETURN(Bundle initial, m->Load(m->options_.model.dir));
  const ModelInfo& info = initial.serving->info;
  if (info.demo) {
    spdlog::warn(
        "model '{}' in {} has RANDOM demo weights: its scores are meaningless. Export a real "
        "checkpoint with: /usr/bin/python3 tools/export_model.py --checkpoint <hf_dir> --out "
        "<model_dir>, then set model.dir (or RERANKER_MODEL_DIR).",
        info.name, info.dir);
  }
  const ExecutionConfig& e = m->options_.execution;
  spdlog::info("model '{}' version {} loaded: {} worker(s) x {} thread(s), precision {}", info.name,
               info.version, e.workers, e.intra_op_threads, m->options_.model.precision);
  absl::MutexLock lock(&m->mu_);
  m->current_ = std::move(initial);
  return m;
}

ModelManager::~ModelManager() { Stop(); }

uint32_t ModelManager::MaxLengthFor(const ModelInfo& info) const {
  return std::min(options_.model.max_length, info.max_length);
}

absl::StatusOr<ModelManager::Bundle> ModelManager::Load(const std::string& dir) const {
  Bundle b;
  // Before reading: a change made while loading is seen by the next poll.
  b.fingerprint = ModelDirFingerprint(dir);
  ASSIGN_OR_RETURN(ModelInfo info, LoadModelInfo(dir));
  if (MaxLengthFor(info) < 8) {
    return absl::InvalidArgumentError(absl::StrCat(dir, "/model.yaml: max_length: must be >= 8"));
  }
  WordPieceTokenizer::Options tok;
  tok.vocab_path = info.vocab_path();
  tok.lowercase = info.lowercase;
  ASSIGN_OR_RETURN(std::unique_ptr<WordPieceTokenizer> tokenizer, WordPieceTokenizer::Create(tok));

  ScorerFactory factory = deps_.scorer_factory;
  if (!factory) {
    TorchScorer::Options so;
    so.model_path = info.model_path();
    so.precision = options_.model.precision;
    so.intra_op_threads = static_cast<int>(options_.execution.intra_op_threads);
    factory = [so]() -> absl::StatusOr<std::unique_ptr<Scorer>> {
      ASSIGN_OR_RETURN(std::unique_ptr<TorchScorer> scorer, TorchScorer::Create(so));
      return std::unique_ptr<Scorer>(std::move(scorer));
    };
  }
  if (deps_.wrap_scorer_factory) {
    ASSIGN_OR_RETURN(factory, deps_.wrap_scorer_factory(std::move(factory)));
  }
  const ExecutionConfig& e = options_.execution;
  Batcher::Options bo;
  bo.workers = static_cast<int>(e.workers);
  bo.max_batch_pairs = static_cast<int>(e.max_batch_pairs);
  bo.max_batch_tokens = e.max_batch_tokens;
  bo.max_queue_delay = absl::Microseconds(e.max_queue_delay_us);
  bo.max_queue_pairs = static_cast<int>(e.max_queue_pairs);
  bo.max_client_queue_pairs = static_cast<int>(e.max_client_queue_pairs);
  bo.fair_quantum_tokens = e.fair_quantum_tokens;
  ASSIGN_OR_RETURN(const auto weights, ParseClientWeights(e.client_weights));
  for (const auto& [client, weight] : weights) bo.client_weights[client] = static_cast<int>(weight);
  bo.pad_id = tokenizer->pad_id();
  ASSIGN_OR_RETURN(std::unique_ptr<Batcher> batcher,
                   Batcher::Create(bo, std::move(factory), deps_.clock, deps_.batcher_observer));
  b.batcher = std::move(batcher);
  auto serving = std::make_shared<ServingModel>();
  serving->info = std::move(info);
  serving->tokenizer = std::move(tokenizer);
  serving->queue = b.batcher;
  b.serving = std::move(serving);
  return b;
}

absl::Status ModelManager::Warmup(const ServingModel& model, Batcher& batcher) const {
  // A few forwards of different shapes so the first real request does not pay for oneDNN
  // kernel creation and allocator growth (and a model that cannot run is caught here).
  const WordPieceTokenizer& tokenizer = *model.tokenizer;
  const int64_t max_len = std::min<int64_t>(MaxLengthFor(model.info), 256);
  for (int64_t len : {int64_t{16}, max_len / 2, max_len}) {
    auto job = std::make_shared<ScoringJob>();
    const int rows = std::min(8, static_cast<int>(options_.execution.max_queue_pairs));
    for (int r = 0; r < rows; ++r) {
      Encoding e;
      e.input_ids.assign(len, tokenizer.unk_id());
      e.input_ids.front() = tokenizer.cls_id();
      e.input_ids.back() = tokenizer.sep_id();
      e.input_ids[r % (len - 1)] =
          r + 1000 < static_cast<int64_t>(tokenizer.vocab_size()) ? r + 1000 : 1;
      e.token_type_ids.assign(len, 0);
      job->rows.push_back(std::move(e));
    }
    auto done = std::make_shared<absl::Notification>();
    auto result = std::make_shared<absl::Status>();
    job->done = [done, result](absl::StatusOr<std::vector<float>> s) {
      *result = s.status();
      done->Notify();
    };
    RETURN_IF_ERROR(batcher.Submit(job));
    done->WaitForNotification();
    if (!result->ok()) {
      return absl::Status(result->code(), absl::StrCat("model warmup failed: ", result->message()));
    }
  }
  return absl::OkStatus();
}

absl::Status ModelManager::WarmupCurrent() {
  Bundle b;
  {
    absl::MutexLock lock(&mu_);
    b = current_;
  }
  return Warmup(*b.serving, *b.batcher);
}

void ModelManager::Start(SwapFn on_swap) {
  on_swap_ = std::move(on_swap);
  thread_ = std::thread([this] { Loop(); });
  absl::MutexLock lock(&mu_);
  started_ = true;
}

void ModelManager::Stop() {
  absl::MutexLock stop_lock(&stop_mu_);
  std::optional<Request> refused;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    refused.swap(pending_);
  }
  if (refused.has_value() && refused->done) {
    refused->done(absl::UnavailableError("model reload refused: the server is shutting down"));
  }
  if (thread_.joinable()) thread_.join();
  std::shared_ptr<Batcher> batcher = current_batcher();
  if (batcher != nullptr) batcher->Stop();
}

std::shared_ptr<const ServingModel> ModelManager::current() const {
  absl::MutexLock lock(&mu_);
  return current_.serving;
}

std::shared_ptr<Batcher> ModelManager::current_batcher() const {
  absl::MutexLock lock(&mu_);
  return current_.batcher;
}

ModelIdentity ModelManager::CurrentModel() const {
  std::shared_ptr<const ServingModel> m = current();
  ModelIdentity id;
  id.dir = m->info.dir;
  id.name = m->info.name;
  id.version = m->info.version;
  id.precision = options_.model.precision;
  id.demo = m->info.demo;
  return id;
}

int ModelManager::queued_rows() const { return current_batcher()->queued_rows(); }
int ModelManager::busy_workers() const { return current_batcher()->busy_workers(); }

void ModelManager::ReloadModel(const std::string& dir, const std::string& actor,
                               const std::string& source, ReloadDone done) {
  absl::Status refused;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      refused = absl::UnavailableError("model reload refused: the server is shutting down");
    } else if (!started_) {
      refused = absl::UnavailableError(
          "model reload refused: the server is still starting (the first model is warming up)");
    } else if (reloading_) {
      refused = absl::AbortedError(
          "a model reload is already running; retry when it has finished (GET /health shows "
          "the version serving)");
    } else {
      reloading_ = true;
      pending_ =
          Request{dir.empty() ? current_.serving->info.dir : dir, actor, source, std::move(done)};
      return;
    }
  }
  done(refused);
}

void ModelManager::Loop() {
  pthread_setname_np(pthread_self(), "model-reload");
  const absl::Duration interval = absl::Milliseconds(options_.model.watch_interval_ms);
  const bool watch = interval > absl::ZeroDuration();
  std::string last_seen;  // the poller's previous reading
  std::string rejected;   // files that failed to load: not retried until they change again
  absl::Time next_poll = absl::Now() + interval;
  while (true) {
    std::optional<Request> request;
    std::string dir;
    std::string loaded;
    {
      absl::MutexLock lock(&mu_);
      const absl::Condition wake(
          +[](ModelManager* m) ABSL_EXCLUSIVE_LOCKS_REQUIRED(m->mu_) {
            return m->stopping_ || m->pending_.has_value();
          },
          this);
      if (watch) {
        mu_.AwaitWithDeadline(wake, next_poll);
      } else {
        mu_.Await(wake);
      }
      if (stopping_) return;
      if (pending_.has_value()) {
        request.swap(pending_);
      } else if (absl::Now() < next_poll) {
        continue;
      }
      dir = current_.serving->info.dir;
      loaded = current_.fingerprint;
    }
    if (request.has_value()) {
      RunReload(*std::move(request));
      continue;
    }
    // The poller: reload once the files differ from the loaded ones and have been stable for a
    // whole interval (a copy in progress is not loaded half-written).
    next_poll = absl::Now() + interval;
    const std::string seen = ModelDirFingerprint(dir);
    const bool changed = seen != loaded && seen == last_seen && seen != rejected;
    last_seen = seen;
    if (!changed) continue;
    {
      absl::MutexLock lock(&mu_);
      if (reloading_ || stopping_) continue;
      reloading_ = true;
    }
    spdlog::info("model files in {} changed: reloading", dir);
    if (!RunReload(Request{dir, "model-watch", "file-watch", nullptr})) rejected = seen;
  }
}

bool ModelManager::RunReload(Request request) {
  const absl::Time start = absl::Now();
  ModelIdentity previous = CurrentModel();
  absl::StatusOr<Bundle> bundle = Load(request.dir);
  // A bundle dropped below (warmup or swap failed) stops its workers here, on this thread.
  if (bundle.ok() && options_.model.warmup) {
    if (absl::Status s = Warmup(*bundle->serving, *bundle->batcher); !s.ok()) bundle = s;
  }
  if (bundle.ok() && on_swap_) {
    if (absl::Status s = on_swap_(bundle->serving); !s.ok()) bundle = s;
  }
  const double load_ms = absl::ToDoubleMilliseconds(absl::Now() - start);
  nlohmann::json ev = {{"actor", request.actor},
                       {"source", request.source},
                       {"dir", request.dir},
                       {"previous_version", previous.version},
                       {"load_ms", load_ms}};
  if (!bundle.ok()) {
    const absl::Status error(
        bundle.status().code(),
        absl::StrCat("model reload from '", request.dir, "' rejected (still serving '",
                     previous.name, "' version ", previous.version,
                     "): ", bundle.status().message()));
    spdlog::error("{}", std::string(error.message()));
    ev["success"] = false;
    ev["error"] = std::string(error.message());
    deps_.audit->Record("model_reload", std::move(ev));
    {
      absl::MutexLock lock(&mu_);
      reloading_ = false;
    }
    if (request.done) request.done(error);
    return false;
  }
  ModelReloadResult result;
  result.previous = previous;
  result.load_ms = load_ms;
  Bundle old;
  {
    absl::MutexLock lock(&mu_);
    old = std::exchange(current_, *std::move(bundle));
    reloading_ = false;
  }
  result.model = CurrentModel();
  spdlog::info("model reloaded from {}: '{}' version {} (was {}), loaded and warmed in {:.0f} ms",
               request.dir, result.model.name, result.model.version, previous.version, load_ms);
  ev["success"] = true;
  ev["model_name"] = result.model.name;
  ev["model_version"] = result.model.version;
  ev["error"] = nullptr;
  deps_.audit->Record("model_reload", std::move(ev));
  if (request.done) request.done(std::move(result));
  Retire(std::move(old));
  return true;
}

void ModelManager::Retire(Bundle old) {
  std::weak_ptr<const ServingModel> serving = old.serving;
  old.serving.reset();
  // Requests hold the bundle from start to response; the poll is cheap and ends as soon as the
  // last one has answered (usually at once: requests take milliseconds).
  const absl::Time deadline = absl::Now() + options_.retire_timeout;
  while (!serving.expired() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  if (!serving.expired()) {
    spdlog::warn("old model still in use after {}: stopping its workers anyway",
                 absl::FormatDuration(options_.retire_timeout));
  }
  // This reference outlives the last request's, so the batcher is never destroyed on one of its
  // own workers (which cannot join itself).
  old.batcher->Stop();
}

}  // namespace rerank

// Owns the served model and swaps it without downtime (ModelControl for the admin plane).
//
// A model is a bundle (server/rerank_engine.h ServingModel): model.yaml's info, the tokenizer
// and a Batcher whose workers each hold a replica of the model. The engine takes the current
// bundle once per request and keeps it to the end. A reload -- an admin call naming a model
// directory, or a change of model.dir's files seen by the poller (model.watch_interval_ms) --
// runs on this class's own thread ("model-reload"): it loads and warms a complete new bundle
// next to the old one (memory: two models for the duration), then swaps it in with `on_swap`
// (the engine's SetModel, the metrics' model info). The old bundle is retired once the last
// request that started on it has finished (or after retire_timeout, when whatever is still
// queued on it fails UNAVAILABLE): only then are its workers stopped. A model that fails to load
// or warm up is rejected, and the old one keeps serving. One reload at a time.
//
// Thread-safe. Stop() (also the destructor) finishes a reload in progress, refuses new ones and
// stops every batcher; after it the bundles answer UNAVAILABLE.
#ifndef RERANK_APP_MODEL_MANAGER_H_
#define RERANK_APP_MODEL_MANAGER_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/audit_sink.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/model_control.h"
#include "common/observers.h"
#include "server/batcher.h"
#include "server/rerank_engine.h"
#include "server/scorer.h"

namespace rerank {

class ModelManager final : public ModelControl, public QueueStats {
 public:
  struct Options {
    ModelConfig model;          // dir, precision, max_length (cap), warmup, watch_interval_ms
    ExecutionConfig execution;  // replicas and batching of every bundle
    // How long an old bundle's in-flight requests get after a swap before its workers stop.
    absl::Duration retire_timeout = absl::Seconds(10);
  };
  struct Deps {
    Clock* clock = nullptr;                       // required; outlives the manager
    AuditSink* audit = nullptr;                   // required: model_reload events
    BatcherObserver* batcher_observer = nullptr;  // optional
    // Test seam: one factory for every model. Empty: a TorchScorer on the model's model.pt.
    ScorerFactory scorer_factory;
    // Optional decorator applied to each model's factory (the test-only latency fault).
    std::function<absl::StatusOr<ScorerFactory>(ScorerFactory)> wrap_scorer_factory;
  };
  // Called on the reload thread with a new, warmed bundle, before it becomes current(); an error
  // rejects the bundle (the old one keeps serving). Must not block for long.
  using SwapFn = std::function<absl::Status(const std::shared_ptr<const ServingModel>&)>;

  // Loads (not warms) the model in options.model.dir. Errors name the file.
  static absl::StatusOr<std::unique_ptr<ModelManager>> Create(Options options, Deps deps);
  ~ModelManager() override;  // Stop()
  ModelManager(const ModelManager&) = delete;
  ModelManager& operator=(const ModelManager&) = delete;

  // Runs a few forwards of different shapes through the current bundle (startup, before ready).
  absl::Status WarmupCurrent();
  // Starts the reload thread (and with model.watch_interval_ms the file poller). Once.
  void Start(SwapFn on_swap);
  // See the file comment. Idempotent.
  void Stop();

  std::shared_ptr<const ServingModel> current() const;
  // The current bundle's batcher (tests).
  std::shared_ptr<Batcher> current_batcher() const;
  // Effective tokens per pair for `info` (model.max_length capped by model.yaml's).
  uint32_t MaxLengthFor(const ModelInfo& info) const;

  // ModelControl.
  ModelIdentity CurrentModel() const override;
  void ReloadModel(const std::string& dir, const std::string& actor, const std::string& source,
                   ReloadDone done) override;
  // QueueStats: the current bundle's batcher.
  int queued_rows() const override;
  int busy_workers() const override;

 private:
  struct Bundle {
    std::shared_ptr<const ServingModel> serving;
    std::shared_ptr<Batcher> batcher;  // also serving->queue
    std::string fingerprint;           // ModelDirFingerprint when loaded
  };
  struct Request {
    std::string dir;
    std::string actor;
    std::string source;
    ReloadDone done;  // empty for the poller's reloads
  };

  ModelManager(Options options, Deps deps);
  absl::StatusOr<Bundle> Load(const std::string& dir) const;
  absl::Status Warmup(const ServingModel& model, Batcher& batcher) const;
  void Loop();
  // Loads, warms and swaps; records the model_reload audit event; answers request.done.
  // True when the new model serves.
  bool RunReload(Request request);
  // Waits until no request holds `old.serving` (up to retire_timeout), then stops its workers.
  void Retire(Bundle old);

  const Options options_;
  const Deps deps_;

  mutable absl::Mutex mu_;
  Bundle current_ ABSL_GUARDED_BY(mu_);
  std::optional<Request> pending_ ABSL_GUARDED_BY(mu_);
  bool reloading_ ABSL_GUARDED_BY(mu_) = false;  // pending_ or running
  bool started_ ABSL_GUARDED_BY(mu_) = false;    // Start() ran: reloads accepted
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  SwapFn on_swap_;       // set by Start(), before the thread exists
  absl::Mutex stop_mu_;  // serializes Stop() callers
  std::thread thread_;
};

}  // namespace rerank

#endif  // RERANK_APP_MODEL_MANAGER_H_

// Fan-out observers: the data plane takes one RequestObserver / BatcherObserver; these forward
// each report to several (metrics, live stats, a test's own observer), in the given order.
//
// The observer list is fixed at construction (null entries are skipped), so calls take no lock.
// Thread-safe as long as every target is. Targets are not owned and must outlive the composite.
#ifndef RERANK_ADMIN_COMPOSITE_OBSERVER_H_
#define RERANK_ADMIN_COMPOSITE_OBSERVER_H_

#include <utility>
#include <vector>

#include "server/batcher.h"
#include "server/request_observer.h"

namespace rerank {

class CompositeRequestObserver final : public RequestObserver {
 public:
  explicit CompositeRequestObserver(std::vector<RequestObserver*> observers) {
    for (RequestObserver* o : observers) {
      if (o != nullptr) observers_.push_back(o);
    }
  }
  void OnRequest(const RequestReport& report) override {
    for (RequestObserver* o : observers_) o->OnRequest(report);
  }
  size_t size() const { return observers_.size(); }

 private:
  std::vector<RequestObserver*> observers_;
};

class CompositeBatcherObserver final : public BatcherObserver {
 public:
  explicit CompositeBatcherObserver(std::vector<BatcherObserver*> observers) {
    for (BatcherObserver* o : observers) {
      if (o != nullptr) observers_.push_back(o);
    }
  }
  void OnBatch(const BatchReport& report) override {
    for (BatcherObserver* o : observers_) o->OnBatch(report);
  }
  void OnJobDropped(absl::StatusCode code) override {
    for (BatcherObserver* o : observers_) o->OnJobDropped(code);
  }
  size_t size() const { return observers_.size(); }

 private:
  std::vector<BatcherObserver*> observers_;
};

}  // namespace rerank

#endif  // RERANK_ADMIN_COMPOSITE_OBSERVER_H_

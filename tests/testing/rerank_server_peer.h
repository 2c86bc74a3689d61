// Test-only access to a RerankServer's components (app/rerank_server_impl.h), so the server's
// public API stays Options / BuildAndStart / Shutdown / Wait / ports.
#ifndef RERANK_TESTS_TESTING_RERANK_SERVER_PEER_H_
#define RERANK_TESTS_TESTING_RERANK_SERVER_PEER_H_

#include "app/rerank_server.h"
#include "app/rerank_server_impl.h"

namespace rerank {

class RerankServerTestPeer {
 public:
  explicit RerankServerTestPeer(RerankServer* server) : impl_(server->impl_.get()) {}

  FlagStore* flags() const { return impl_->flags.get(); }
  ScoreCache* cache() const { return impl_->cache.get(); }
  RateLimiter* rate_limiter() const { return impl_->rate_limiter.get(); }
  RateLimiter* pair_limiter() const { return impl_->pair_limiter.get(); }
  AuditLog* audit() const { return impl_->audit.get(); }
  // The current model's batcher and info (a hot reload replaces both).
  Batcher* batcher() const { return impl_->models->current_batcher().get(); }
  ModelInfo model() const { return impl_->engine->model(); }
  ModelManager* models() const { return impl_->models.get(); }
  Readiness readiness() const { return impl_->GetReadiness(); }
  const std::string& admin_token() const { return impl_->admin_token; }

 private:
  RerankServer::Impl* impl_;
};

}  // namespace rerank

#endif  // RERANK_TESTS_TESTING_RERANK_SERVER_PEER_H_

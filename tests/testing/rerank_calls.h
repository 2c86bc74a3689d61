// Building and sending Rerank calls in service tests (real gRPC channel): one request builder and
// one asynchronous call record, shared by the service tests instead of a copy in each.
#ifndef RERANK_TESTS_TESTING_RERANK_CALLS_H_
#define RERANK_TESTS_TESTING_RERANK_CALLS_H_

#include <grpcpp/grpcpp.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "rerank/v1/reranker.grpc.pb.h"

namespace rerank::testing {

// A RerankRequest from `client` with documents d0, d1, ... holding `docs`.
inline v1::RerankRequest RerankReq(const std::string& client, const std::string& query,
                                   const std::vector<std::string>& docs) {
  v1::RerankRequest r;
  r.set_client_id(client);
  r.set_query(query);
  for (size_t i = 0; i < docs.size(); ++i) {
    auto* d = r.add_documents();
    d->set_id(absl::StrCat("d", i));
    d->set_text(docs[i]);
  }
  return r;
}

// One asynchronous Rerank and what came back. Not copyable (owns the ClientContext); `done` is
// notified once, from gRPC's callback thread, after status/resp/latency are written.
struct AsyncCall {
  grpc::ClientContext ctx;
  v1::RerankRequest req;
  v1::RerankResponse resp;
  grpc::Status status;
  absl::Notification done;
  absl::Time sent;
  absl::Duration latency;
};

// Sends `call->req` on the callback API with a deadline `deadline` from now.
inline void SendAsync(v1::Reranker::Stub* stub, AsyncCall* call,
                      absl::Duration deadline = absl::Seconds(60)) {
  call->sent = absl::Now();
  call->ctx.set_deadline(absl::ToChronoTime(call->sent + deadline));
  stub->async()->Rerank(&call->ctx, &call->req, &call->resp, [call](grpc::Status s) {
    call->latency = absl::Now() - call->sent;
    call->status = std::move(s);
    call->done.Notify();
  });
}

}  // namespace rerank::testing

#endif  // RERANK_TESTS_TESTING_RERANK_CALLS_H_

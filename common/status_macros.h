// RETURN_IF_ERROR / ASSIGN_OR_RETURN: absl::Status propagation without hand-written blocks.
//   RETURN_IF_ERROR(DoThing());                  // returns the status if not OK
//   ASSIGN_OR_RETURN(auto x, MakeThing());        // x = *MakeThing() or return its status
//   ASSIGN_OR_RETURN(member_, MakeThing());       // assigns to an existing lvalue
// Works in functions returning absl::Status or absl::StatusOr<T>.
#ifndef RERANK_COMMON_STATUS_MACROS_H_
#define RERANK_COMMON_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define RERANK_STATUS_CONCAT_INNER(a, b) a##b
#define RERANK_STATUS_CONCAT(a, b) RERANK_STATUS_CONCAT_INNER(a, b)

#define RETURN_IF_ERROR(expr)                                              \
  do {                                                                     \
    ::absl::Status rerank_status_macro_status = (expr);                    \
    if (!rerank_status_macro_status.ok()) return rerank_status_macro_status; \
  } while (0)

#define ASSIGN_OR_RETURN(lhs, expr) \
  RERANK_ASSIGN_OR_RETURN_IMPL(RERANK_STATUS_CONCAT(rerank_statusor_, __LINE__), lhs, expr)

#define RERANK_ASSIGN_OR_RETURN_IMPL(statusor, lhs, expr) \
  auto statusor = (expr);                                 \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = *std::move(statusor)

#endif  // RERANK_COMMON_STATUS_MACROS_H_

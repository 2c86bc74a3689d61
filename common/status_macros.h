// Early-return helpers for errors as values (absl::Status / absl::StatusOr), in the style of
// absl's internal status macros:
//
//   absl::Status Load() {
//     RETURN_IF_ERROR(Open());                        // returns Open()'s error, if any
//     ASSIGN_OR_RETURN(auto text, ReadAll());         // declares `text`, or returns the error
//     ASSIGN_OR_RETURN(config_, Parse(text));         // assigns an existing lvalue
//     ASSIGN_OR_RETURN((std::pair<int, int> p), F()); // a type with commas: parenthesize it
//     ...
//   }
//
// Both work in functions returning absl::Status or any absl::StatusOr<T>. The error is returned
// unchanged (no context is added: name the field in the message where the error is made).
// ASSIGN_OR_RETURN expands to several statements: use it only where a statement list is allowed
// (not as the unbraced body of an if/else/for).
#ifndef RERANK_COMMON_STATUS_MACROS_H_
#define RERANK_COMMON_STATUS_MACROS_H_

#include <utility>

#include "absl/base/optimization.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Evaluates `expr` (an absl::Status) once; returns it from the enclosing function if not OK.
#define RETURN_IF_ERROR(expr)                                    \
  do {                                                           \
    ::absl::Status rerank_status_macros_status = (expr);         \
    if (ABSL_PREDICT_FALSE(!rerank_status_macros_status.ok())) { \
      return rerank_status_macros_status;                        \
    }                                                            \
  } while (false)

// Evaluates `expr` (an absl::StatusOr<T>; it may contain commas) once. If it is an error, returns
// its status from the enclosing function; otherwise moves the value into `lhs`, which is either a
// declaration (`auto x`, `const Foo& y`) or an assignable expression. Wrap `lhs` in parentheses
// when it contains commas.
#define ASSIGN_OR_RETURN(lhs, ...)            \
  RERANK_STATUS_MACROS_ASSIGN_OR_RETURN_IMPL( \
      RERANK_STATUS_MACROS_CONCAT(rerank_status_macros_statusor_, __COUNTER__), lhs, __VA_ARGS__)

// ---- implementation details ----

#define RERANK_STATUS_MACROS_ASSIGN_OR_RETURN_IMPL(statusor, lhs, ...) \
  auto statusor = (__VA_ARGS__);                                       \
  if (ABSL_PREDICT_FALSE(!statusor.ok())) {                            \
    return std::move(statusor).status();                               \
  }                                                                    \
  RERANK_STATUS_MACROS_UNPARENTHESIZE(lhs) = *std::move(statusor)

#define RERANK_STATUS_MACROS_CONCAT_INNER(x, y) x##y
#define RERANK_STATUS_MACROS_CONCAT(x, y) RERANK_STATUS_MACROS_CONCAT_INNER(x, y)

// (a, b) -> a, b; and x -> x. RERANK_STATUS_MACROS_EAT applied to a parenthesized argument
// swallows the parentheses and leaves its name in front; an unparenthesized argument leaves the
// name in front untouched. Pasting _VANISH onto that name yields a macro that expands to nothing.
#define RERANK_STATUS_MACROS_UNPARENTHESIZE(x) \
  RERANK_STATUS_MACROS_ESCAPE(RERANK_STATUS_MACROS_EAT x)
#define RERANK_STATUS_MACROS_EAT(...) RERANK_STATUS_MACROS_EAT __VA_ARGS__
#define RERANK_STATUS_MACROS_ESCAPE(...) RERANK_STATUS_MACROS_ESCAPE_INNER(__VA_ARGS__)
#define RERANK_STATUS_MACROS_ESCAPE_INNER(...) RERANK_STATUS_MACROS_VANISH_##__VA_ARGS__
#define RERANK_STATUS_MACROS_VANISH_RERANK_STATUS_MACROS_EAT

#endif  // RERANK_COMMON_STATUS_MACROS_H_

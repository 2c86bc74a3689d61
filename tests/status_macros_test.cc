#include "common/status_macros.h"

#include <map>
#include <memory>
#include <string>
#include <utility>

#include "gtest/gtest.h"

namespace rerank {
namespace {

absl::Status Fails() { return absl::NotFoundError("nope"); }

absl::StatusOr<int> Value(int v) { return v; }
absl::StatusOr<int> NoValue() { return absl::DataLossError("lost"); }

template <typename A, typename B>
absl::StatusOr<std::pair<A, B>> Pair(A a, B b) {
  return std::make_pair(a, b);
}

TEST(StatusMacrosTest, ReturnIfErrorPassesOkAndReturnsTheError) {
  int calls = 0;
  auto counted = [&calls](absl::Status s) {
    ++calls;
    return s;
  };
  auto f = [&](absl::Status s) -> absl::Status {
    RETURN_IF_ERROR(counted(s));
    return absl::AlreadyExistsError("reached the end");
  };
  EXPECT_EQ(f(absl::OkStatus()).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(calls, 1) << "evaluated once";
  EXPECT_EQ(f(Fails()), absl::NotFoundError("nope"));
  EXPECT_EQ(calls, 2);
  // In a StatusOr-returning function too.
  auto g = []() -> absl::StatusOr<int> {
    RETURN_IF_ERROR(Fails());
    return 1;
  };
  EXPECT_EQ(g().status(), absl::NotFoundError("nope"));
  // Usable as the unbraced body of an if/else.
  auto h = [](bool fail) -> absl::Status {
    // clang-format off
    if (fail)
      RETURN_IF_ERROR(Fails());
    else
      RETURN_IF_ERROR(absl::OkStatus());
    // clang-format on
    return absl::OkStatus();
  };
  EXPECT_TRUE(h(false).ok());
  EXPECT_FALSE(h(true).ok());
}

TEST(StatusMacrosTest, AssignOrReturnDeclaresAssignsOrReturns) {
  auto sum = [](bool fail_second) -> absl::StatusOr<int> {
    ASSIGN_OR_RETURN(auto a, Value(40));
    ASSIGN_OR_RETURN(const int b, fail_second ? NoValue() : Value(2));
    return a + b;
  };
  EXPECT_EQ(*sum(false), 42);
  EXPECT_EQ(sum(true).status(), absl::DataLossError("lost"));

  // An existing variable, through a pointer, and with the error leaving it untouched.
  auto assign = [](int* out, bool fail) -> absl::Status {
    ASSIGN_OR_RETURN(*out, fail ? NoValue() : Value(7));
    return absl::OkStatus();
  };
  int x = 1;
  EXPECT_TRUE(assign(&x, false).ok());
  EXPECT_EQ(x, 7);
  EXPECT_EQ(assign(&x, true).code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(x, 7);
}

TEST(StatusMacrosTest, AssignOrReturnMovesAndTakesCommas) {
  auto f = []() -> absl::StatusOr<std::string> {
    // Move-only value.
    ASSIGN_OR_RETURN(std::unique_ptr<int> p,
                     absl::StatusOr<std::unique_ptr<int>>(std::make_unique<int>(5)));
    // Commas in the expression, and (parenthesized) in the declared type.
    ASSIGN_OR_RETURN(auto q, Pair<int, char>(1, 'a'));
    ASSIGN_OR_RETURN((std::pair<int, char> r), Pair<int, char>(2, 'b'));
    ASSIGN_OR_RETURN((std::map<std::string, int> m), absl::StatusOr<std::map<std::string, int>>(
                                                         std::map<std::string, int>{{"k", 3}}));
    return std::to_string(*p) + q.second + std::to_string(r.first) + std::to_string(m.at("k"));
  };
  EXPECT_EQ(*f(), "5a23");
}

}  // namespace
}  // namespace rerank

#include "server/fused_ops/fused_ops.h"

#include <ATen/core/dispatch/Dispatcher.h>

#include <cmath>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"

namespace rerank::fused {
namespace {

using ::testing::TestWithParam;

// The kernels under test: the portable one always, the AVX-512 ones where the CPU has them
// (kAvx512 uses AVX512_BF16 instructions where the CPU also has those; kAvx512NoBf16 is the path
// of an AVX-512 CPU without them).
std::vector<Kernel> Kernels() {
  std::vector<Kernel> k{Kernel::kPortable};
  if (CpuHasAvx512()) {
    k.push_back(Kernel::kAvx512);
    k.push_back(Kernel::kAvx512NoBf16);
  }
  return k;
}

const char* Name(Kernel k) {
  switch (k) {
    case Kernel::kAvx512:
      return CpuHasAvx512Bf16() ? "avx512 (bf16 insns)" : "avx512";
    case Kernel::kAvx512NoBf16:
      return "avx512 without bf16 insns";
    default:
      return "portable";
  }
}

// Reference attention with plain ATen ops in float32, as the plain exported module computes it:
// padded batch, additive -10000 mask on padded keys, softmax, PV; padded query rows set to zero.
at::Tensor ReferenceAttention(const at::Tensor& qkv, const std::vector<int64_t>& lengths,
                              int64_t heads) {
  const int64_t b_n = qkv.size(0), t_n = qkv.size(1), hd = qkv.size(2) / 3, d = hd / heads;
  at::Tensor x = qkv.to(at::kFloat).view({b_n, t_n, 3, heads, d}).permute({2, 0, 3, 1, 4});
  at::Tensor mask = at::zeros({b_n, 1, 1, t_n});
  for (int64_t b = 0; b < b_n; ++b) mask[b].narrow(-1, lengths[b], t_n - lengths[b]).fill_(-1e4);
  at::Tensor p = at::softmax(at::matmul(x[0], x[1].transpose(-1, -2)) + mask, -1);
  at::Tensor ctx = at::matmul(p, x[2]).transpose(1, 2).reshape({b_n, t_n, hd});
  for (int64_t b = 0; b < b_n; ++b) ctx[b].narrow(0, lengths[b], t_n - lengths[b]).zero_();
  return ctx;
}

double MaxAbsDiff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kFloat) - b.to(at::kFloat)).abs().max().item<double>();
}

struct AttnCase {
  int64_t heads, head_dim, t;
  std::vector<int64_t> lengths;
};

class AttentionTest : public TestWithParam<AttnCase> {};

TEST_P(AttentionTest, MatchesPlainOpsOnRaggedLengths) {
  const AttnCase& c = GetParam();
  const int64_t b_n = static_cast<int64_t>(c.lengths.size()), hd = c.heads * c.head_dim;
  at::manual_seed(7);
  // Scores of order 1-10, like a real layer's (the scale is folded into q).
  at::Tensor qkv = at::randn({b_n, c.t, 3 * hd}) * 1.5;
  at::Tensor lengths = at::tensor(c.lengths, at::kLong);
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    at::Tensor in = qkv.to(dtype);
    const at::Tensor want = ReferenceAttention(in, c.lengths, c.heads);
    for (Kernel k : Kernels()) {
      SCOPED_TRACE(std::string(Name(k)) + (dtype == at::kFloat ? " fp32" : " bf16"));
      at::Tensor got = Attention(in, lengths, c.heads, k);
      ASSERT_EQ(got.scalar_type(), dtype);
      ASSERT_EQ(got.sizes(), (std::vector<int64_t>{b_n, c.t, hd}));
      // fp32: accumulation order only (scores up to ~50, so peaked softmaxes). bf16: the output
      // is rounded to bf16 (8 bits).
      const double tol = dtype == at::kFloat ? 1e-4 : 2e-2;
      EXPECT_LT(MaxAbsDiff(got, want), tol);
      for (int64_t b = 0; b < b_n; ++b) {
        const int64_t l = c.lengths[b];
        EXPECT_EQ(got[b].narrow(0, l, c.t - l).abs().sum().item<double>(), 0.0) << "pair " << b;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, AttentionTest,
    ::testing::Values(AttnCase{12, 32, 37, {37, 1, 20, 0, 33, 16}},  // MiniLM heads, ragged
                      AttnCase{4, 16, 70, {70, 64, 3, 17, 48}},      // one 16-wide vector
                      AttnCase{2, 48, 21, {21, 5}},                  // three vectors
                      AttnCase{2, 64, 40, {40, 32, 31}},             // four vectors
                      AttnCase{12, 32, 175, {175, 174, 130, 2}},     // the production shape
                      AttnCase{3, 8, 9, {9, 2}}));  // head dim 8: portable path even for avx512

// On a CPU with AVX512_BF16, kAvx512 runs bf16 attention with bf16 dot products: its results
// differ from the fp32 FMA kernel's (probabilities rounded to bf16) but are as close to the fp32
// reference; kAuto picks it.
TEST(AttentionTest, Bf16DotProductKernelIsUsedWhereTheCpuHasIt) {
  if (!CpuHasAvx512Bf16()) GTEST_SKIP() << "no AVX512_BF16";
  at::manual_seed(5);
  const std::vector<int64_t> lens{64, 51};
  at::Tensor qkv = (at::randn({2, 64, 3 * 4 * 32}) * 1.5).to(at::kBFloat16);
  const at::Tensor lengths = at::tensor(lens, at::kLong);
  const at::Tensor dot = Attention(qkv, lengths, 4, Kernel::kAvx512);
  const at::Tensor fma = Attention(qkv, lengths, 4, Kernel::kAvx512NoBf16);
  EXPECT_GT(MaxAbsDiff(dot, fma), 0.0);
  EXPECT_TRUE(at::equal(Attention(qkv, lengths, 4), dot));
  const at::Tensor want = ReferenceAttention(qkv, lens, 4);
  const double mean_dot = (dot.to(at::kFloat) - want).abs().mean().item<double>();
  const double mean_fma = (fma.to(at::kFloat) - want).abs().mean().item<double>();
  EXPECT_LT(mean_dot, 1.5 * mean_fma);
}

// bf16 padding holds NaN too: the bf16 kernels' packed K/V must not read it either.
TEST(AttentionTest, Bf16PaddingContentIsNeverRead) {
  at::manual_seed(4);
  const std::vector<int64_t> lens{19, 5, 1};
  at::Tensor qkv = at::randn({3, 24, 3 * 2 * 32}).to(at::kBFloat16);
  at::Tensor clean = qkv.clone();
  for (int64_t b = 0; b < 3; ++b) {
    qkv[b].narrow(0, lens[b], 24 - lens[b]).fill_(std::numeric_limits<float>::quiet_NaN());
    clean[b].narrow(0, lens[b], 24 - lens[b]).zero_();
  }
  for (Kernel k : Kernels()) {
    SCOPED_TRACE(Name(k));
    at::Tensor got = Attention(qkv, at::tensor(lens, at::kLong), 2, k);
    EXPECT_TRUE(got.isfinite().all().item<bool>());
    EXPECT_LT(MaxAbsDiff(got, ReferenceAttention(clean, lens, 2)), 2e-2);
  }
}

TEST(AttentionTest, PaddingContentIsNeverRead) {
  at::manual_seed(3);
  const std::vector<int64_t> lens{10, 4};
  at::Tensor qkv = at::randn({2, 12, 3 * 64});
  at::Tensor clean = qkv.clone();
  // NaN in every padded position: no kernel may read them (no work on padding).
  qkv[0].narrow(0, 10, 2).fill_(std::numeric_limits<float>::quiet_NaN());
  qkv[1].narrow(0, 4, 8).fill_(std::numeric_limits<float>::quiet_NaN());
  clean[0].narrow(0, 10, 2).zero_();
  clean[1].narrow(0, 4, 8).zero_();
  for (Kernel k : Kernels()) {
    SCOPED_TRACE(Name(k));
    at::Tensor got = Attention(qkv, at::tensor(lens, at::kLong), 2, k);
    EXPECT_TRUE(got.isfinite().all().item<bool>());
    EXPECT_LT(MaxAbsDiff(got, ReferenceAttention(clean, lens, 2)), 2e-5);
  }
}

TEST(AttentionTest, BadInputsAreErrorsNamingTheArgument) {
  at::Tensor qkv = at::randn({2, 5, 3 * 32});
  auto msg = [](auto fn) {
    try {
      fn();
    } catch (const c10::Error& e) {
      return std::string(e.what_without_backtrace());
    }
    return std::string("no error");
  };
  EXPECT_NE(msg([&] {
              Attention(qkv, at::tensor({5, 6}, at::kLong), 2);
            }).find("lengths[1] = 6"),
            std::string::npos);
  EXPECT_NE(msg([&] { Attention(qkv, at::tensor({5}, at::kLong), 2); }).find("lengths"),
            std::string::npos);
  EXPECT_NE(msg([&] {
              Attention(qkv, at::tensor({5, 5}, at::kLong), 5);
            }).find("num_heads"),
            std::string::npos);
  EXPECT_NE(msg([&] {
              Attention(qkv.to(at::kDouble), at::tensor({5, 5}, at::kLong), 2);
            }).find("float32 or bfloat16"),
            std::string::npos);
}

// The real rows of a padded [B, T, C] tensor laid end to end: [sum(lengths), C].
at::Tensor Pack(const at::Tensor& padded, const std::vector<int64_t>& lengths) {
  std::vector<at::Tensor> rows;
  for (size_t b = 0; b < lengths.size(); ++b) rows.push_back(padded[b].narrow(0, 0, lengths[b]));
  return at::cat(rows, 0);
}

at::Tensor Offsets(const std::vector<int64_t>& lengths) {
  std::vector<int64_t> off{0};
  for (int64_t l : lengths) off.push_back(off.back() + l);
  return at::tensor(off, at::kLong);
}

TEST_P(AttentionTest, PackedRowsMatchThePaddedOp) {
  const AttnCase& c = GetParam();
  const int64_t b_n = static_cast<int64_t>(c.lengths.size()), hd = c.heads * c.head_dim;
  at::manual_seed(11);
  at::Tensor qkv = at::randn({b_n, c.t, 3 * hd}) * 1.5;
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    at::Tensor in = qkv.to(dtype);
    const at::Tensor want = Pack(ReferenceAttention(in, c.lengths, c.heads), c.lengths);
    for (Kernel k : Kernels()) {
      SCOPED_TRACE(std::string(Name(k)) + (dtype == at::kFloat ? " fp32" : " bf16"));
      at::Tensor got = AttentionPacked(Pack(in, c.lengths), Offsets(c.lengths), c.heads, k);
      ASSERT_EQ(got.scalar_type(), dtype);
      ASSERT_EQ(got.sizes(), want.sizes());
      EXPECT_LT(MaxAbsDiff(got, want), dtype == at::kFloat ? 1e-4 : 2e-2);
      // The packed and padded ops run the same kernel per (pair, head): identical rows.
      EXPECT_EQ(MaxAbsDiff(got, Pack(Attention(in, at::tensor(c.lengths, at::kLong), c.heads, k),
                                     c.lengths)),
                0.0);
    }
  }
}

TEST(AttentionTest, PackedBadOffsetsAreErrorsNamingTheArgument) {
  at::Tensor qkv = at::randn({7, 3 * 32});
  auto msg = [&](std::vector<int64_t> off) {
    try {
      AttentionPacked(qkv, at::tensor(off, at::kLong), 2);
    } catch (const c10::Error& e) {
      return std::string(e.what_without_backtrace());
    }
    return std::string("no error");
  };
  EXPECT_EQ(msg({0, 3, 7}), "no error");
  EXPECT_NE(msg({0, 3, 6}).find("offsets must run from 0 to N = 7"), std::string::npos);
  EXPECT_NE(msg({1, 3, 7}).find("offsets must run from 0"), std::string::npos);
  EXPECT_NE(msg({0, 5, 3, 7}).find("offsets must not decrease"), std::string::npos);
  EXPECT_NE(msg({}).find("offsets must be int64 [B + 1]"), std::string::npos);
  EXPECT_NE(msg({0, 7}).find("no error"), std::string::npos);
  try {
    AttentionPacked(qkv.view({1, 7, 96}), at::tensor({0, 7}, at::kLong), 2);
    ADD_FAILURE() << "a 3-D qkv was accepted";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what_without_backtrace()).find("[N, 3*H*D]"), std::string::npos);
  }
}

struct LnCase {
  at::ScalarType y_dtype, lowp;
  int64_t n;
};

class AddLayerNormTest : public TestWithParam<LnCase> {};

TEST_P(AddLayerNormTest, MatchesPlainOps) {
  const LnCase& c = GetParam();
  at::manual_seed(11);
  at::Tensor y = (at::randn({3, 7, c.n}) * 2).to(c.y_dtype);
  at::Tensor bias = at::randn({c.n}).to(c.y_dtype);
  at::Tensor res = at::randn({3, 7, c.n}) * 3 + 1;
  at::Tensor w = at::randn({c.n}) * 0.2 + 1, be = at::randn({c.n}) * 0.1;
  at::Tensor want =
      at::layer_norm(y.to(at::kFloat) + bias.to(at::kFloat) + res, {c.n}, w, be, 1e-12);
  for (Kernel k : Kernels()) {
    SCOPED_TRACE(Name(k));
    auto [out, lowp] = AddLayerNorm(y, bias, res, w, be, 1e-12, c.lowp, k);
    ASSERT_EQ(out.scalar_type(), at::kFloat);
    ASSERT_EQ(lowp.scalar_type(), c.lowp);
    EXPECT_LT(MaxAbsDiff(out, want), 2e-5);
    // The low-precision copy is the float32 result rounded (to nearest even) once.
    EXPECT_TRUE(at::equal(lowp, out.to(c.lowp)));
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, AddLayerNormTest,
                         ::testing::Values(LnCase{at::kFloat, at::kFloat, 384},
                                           LnCase{at::kBFloat16, at::kBFloat16, 384},
                                           LnCase{at::kFloat, at::kBFloat16, 64},
                                           LnCase{at::kBFloat16, at::kFloat, 40}));  // n % 16 != 0

TEST(AddLayerNormTest, BadInputsAreErrors) {
  at::Tensor y = at::randn({4, 32}), b = at::randn({32}), w = at::ones({32}), e = at::zeros({32});
  EXPECT_THROW(AddLayerNorm(y, at::randn({31}), y, w, e, 1e-5, at::kFloat), c10::Error);
  EXPECT_THROW(AddLayerNorm(y, b, y.to(at::kBFloat16), w, e, 1e-5, at::kFloat), c10::Error);
  EXPECT_THROW(AddLayerNorm(y, b, y, w.to(at::kBFloat16), e, 1e-5, at::kFloat), c10::Error);
  EXPECT_THROW(AddLayerNorm(y, b, y, w, e, 1e-5, at::kHalf), c10::Error);
}

at::Tensor ExactGelu(const at::Tensor& z) { return z * 0.5 * at::erfc(z * -M_SQRT1_2); }

class BiasActTest : public TestWithParam<std::tuple<std::string, at::ScalarType, int64_t>> {};

TEST_P(BiasActTest, MatchesPlainOps) {
  const auto& [act, dtype, n] = GetParam();
  at::manual_seed(5);
  // Wide range: the erf/exp approximations must hold in both tails.
  at::Tensor x = (at::randn({9, n}) * 4).to(dtype);
  at::Tensor bias = at::randn({n}).to(dtype);
  // Reference in float64, gelu as z erfc(-z / sqrt 2) / 2: ATen's gelu (0.5 z (1 + erf)) loses
  // relative precision in the negative tail, in float32 and (beyond z = -8.3, where it is 0) in
  // float64.
  at::Tensor z = x.to(at::kDouble) + bias.to(at::kDouble);
  at::Tensor want = act == "gelu"        ? ExactGelu(z)
                    : act == "gelu_tanh" ? at::gelu(z, "tanh")
                                         : at::relu(z);
  for (Kernel k : Kernels()) {
    SCOPED_TRACE(Name(k));
    at::Tensor got = BiasAct(x, bias, act, k);
    ASSERT_EQ(got.scalar_type(), dtype);
    // bf16: one rounding of |values| up to ~16 (2^-8 relative) on either side.
    const double tol = dtype == at::kFloat ? 1e-5 : 0.07;
    EXPECT_LT(MaxAbsDiff(got, want), tol);
    if (dtype == at::kBFloat16) {
      // At least as many elements are the correctly rounded bf16 value as with ATen's own
      // float32 activation rounded to bf16 (which is off by an ulp in the tails).
      const at::Tensor zf = z.to(at::kFloat);
      const at::Tensor aten = (act == "gelu"        ? at::gelu(zf)
                               : act == "gelu_tanh" ? at::gelu(zf, "tanh")
                                                    : at::relu(zf))
                                  .to(dtype);
      auto rounded_share = [&](const at::Tensor& t) {
        return at::eq(t, want.to(dtype)).to(at::kFloat).mean().item<double>();
      };
      EXPECT_GE(rounded_share(got), rounded_share(aten) - 0.01);
      EXPECT_GT(rounded_share(got), 0.8);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Acts, BiasActTest,
                         ::testing::Combine(::testing::Values("gelu", "gelu_tanh", "relu"),
                                            ::testing::Values(at::kFloat, at::kBFloat16),
                                            ::testing::Values(int64_t{1536}, int64_t{24})));

// The AVX-512 gelu holds its relative precision in the negative tail (gelu(-12) ~ -2e-32),
// where 0.5 z (1 + erf) cancels to nothing.
TEST(BiasActTest, GeluIsRelativelyPreciseInTheNegativeTail) {
  if (!CpuHasAvx512()) GTEST_SKIP() << "no AVX-512";
  at::Tensor z = at::linspace(-13, -0.01, 1024);
  const at::Tensor zero = at::zeros({1024});
  const at::Tensor want = ExactGelu(z.to(at::kDouble));
  for (Kernel k : {Kernel::kAvx512, Kernel::kAvx512NoBf16}) {
    SCOPED_TRACE(Name(k));
    const at::Tensor got = BiasAct(z, zero, "gelu", k).to(at::kDouble);
    EXPECT_LT(((got - want) / want).abs().max().item<double>(), 2e-5);
    // bf16 results: correctly rounded but for the few within ~2e-5 of a rounding boundary.
    const at::Tensor got16 = BiasAct(z.to(at::kBFloat16), zero.to(at::kBFloat16), "gelu", k);
    const at::Tensor want16 = ExactGelu(z.to(at::kBFloat16).to(at::kDouble)).to(at::kBFloat16);
    EXPECT_GT(at::eq(got16, want16).to(at::kFloat).mean().item<double>(), 0.98);
  }
}

// vcvtneps2bf16 (kAvx512 on an AVX512_BF16 CPU) rounds as Store16 does (kAvx512NoBf16), but for
// denormal results, which it flushes to zero.
TEST(BiasActTest, Bf16RoundingInstructionMatchesSoftwareRounding) {
  if (!CpuHasAvx512Bf16()) GTEST_SKIP() << "no AVX512_BF16";
  at::manual_seed(9);
  const at::Tensor x = (at::randn({64, 256}) * 4).to(at::kBFloat16);
  const at::Tensor bias = at::randn({256}).to(at::kBFloat16);
  for (const char* act : {"gelu", "gelu_tanh", "relu"}) {
    SCOPED_TRACE(act);
    const at::Tensor a = BiasAct(x, bias, act, Kernel::kAvx512).to(at::kFloat);
    const at::Tensor b = BiasAct(x, bias, act, Kernel::kAvx512NoBf16).to(at::kFloat);
    const at::Tensor normal = b.abs() >= std::numeric_limits<float>::min();
    EXPECT_TRUE(at::equal(a.masked_select(normal), b.masked_select(normal)));
    EXPECT_EQ(a.masked_select(~normal).abs().max().item<float>(), 0.0f);
  }
}

TEST(BiasActTest, UnknownActivationIsAnErrorNamingIt) {
  try {
    BiasAct(at::randn({2, 16}), at::randn({16}), "swish");
    FAIL() << "no error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what_without_backtrace()).find("'swish'"), std::string::npos);
  }
}

TEST(RegistrationTest, OpsAreRegisteredAsTorchScriptOperators) {
  EXPECT_EQ(RegisteredOpCount(), 4);
  for (const char* op : {"rerank::attention", "rerank::attention_packed", "rerank::add_layernorm",
                         "rerank::bias_act"}) {
    EXPECT_TRUE(c10::Dispatcher::singleton().findSchema({op, ""}).has_value()) << op;
  }
  // Through the dispatcher, as a TorchScript model calls it.
  auto op = c10::Dispatcher::singleton()
                .findSchemaOrThrow("rerank::attention", "")
                .typed<at::Tensor(const at::Tensor&, const at::Tensor&, int64_t)>();
  at::Tensor qkv = at::randn({2, 6, 3 * 32});
  const std::vector<int64_t> lens{6, 2};
  EXPECT_LT(
      MaxAbsDiff(op.call(qkv, at::tensor(lens, at::kLong), 2), ReferenceAttention(qkv, lens, 2)),
      2e-5);
  EXPECT_TRUE(std::string(AutoKernelName()) == "avx512" ||
              std::string(AutoKernelName()) == "portable");
}

}  // namespace
}  // namespace rerank::fused

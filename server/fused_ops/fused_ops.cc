#include "server/fused_ops/fused_ops.h"

#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <immintrin.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace rerank::fused {
namespace {

// ---------------------------------------------------------------------------------------------
// Kernel choice
// ---------------------------------------------------------------------------------------------

bool DetectAvx512() {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  // libgcc also checks that the OS saves the zmm state (XCR0) before reporting these.
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl");
#else
  return false;
#endif
}

bool DetectAvx512Bf16() {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  return DetectAvx512() && __builtin_cpu_supports("avx512bf16");
#else
  return false;
#endif
}

bool EnvKernelIs(const char* name) {
  const char* v = std::getenv("RERANK_FUSED_OPS_KERNEL");
  return v != nullptr && std::strcmp(v, name) == 0;
}

bool UseAvx512(Kernel kernel) {
  static const bool has = DetectAvx512();
  static const bool forced_portable = EnvKernelIs("portable");
  switch (kernel) {
    case Kernel::kPortable:
      return false;
    case Kernel::kAvx512:
    case Kernel::kAvx512NoBf16:
      TORCH_CHECK(has,
                  "rerank fused ops: the AVX-512 kernel was requested but this CPU lacks "
                  "AVX-512F/BW/VL");
      return true;
    case Kernel::kAuto:
      break;
  }
  return has && !forced_portable;
}

bool CpuHasAvx512Bf16Cached() {
  static const bool has = DetectAvx512Bf16();
  return has;
}

// Whether an AVX-512 kernel may use AVX512_BF16 instructions (given UseAvx512(kernel)).
bool UseBf16Insns(Kernel kernel) {
  const bool has = CpuHasAvx512Bf16Cached();
  static const bool forced_off = EnvKernelIs("avx512_nobf16");
  switch (kernel) {
    case Kernel::kAvx512NoBf16:
      return false;
    case Kernel::kAuto:
      return has && !forced_off;
    default:
      return has;
  }
}

bool IsFloatOrBf16(const at::Tensor& t) {
  return t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16;
}

// ---------------------------------------------------------------------------------------------
// Portable kernels: plain ATen ops, the same math (float32) as the AVX-512 ones.
// ---------------------------------------------------------------------------------------------

at::Tensor AttentionPortable(const at::Tensor& qkv, const int64_t* len, int64_t heads) {
  const int64_t b_n = qkv.size(0), t_n = qkv.size(1), hd = qkv.size(2) / 3, d = hd / heads;
  at::Tensor out = at::zeros({b_n, t_n, hd}, qkv.options());
  for (int64_t b = 0; b < b_n; ++b) {
    const int64_t l = len[b];
    if (l == 0) continue;
    at::Tensor x = qkv[b].narrow(0, 0, l).to(at::kFloat).view({l, 3, heads, d});
    at::Tensor q = x.select(1, 0).transpose(0, 1);  // [H, L, D]
    at::Tensor k = x.select(1, 1).transpose(0, 1);
    at::Tensor v = x.select(1, 2).transpose(0, 1);
    at::Tensor p = at::softmax(at::bmm(q, k.transpose(1, 2)), -1);
    at::Tensor ctx = at::bmm(p, v).transpose(0, 1).reshape({l, hd});
    out[b].narrow(0, 0, l).copy_(ctx);
  }
  return out;
}

at::Tensor AttentionPackedPortable(const at::Tensor& qkv, const int64_t* off, int64_t b_n,
                                   int64_t heads) {
  const int64_t hd = qkv.size(1) / 3;
  at::Tensor out = at::empty({qkv.size(0), hd}, qkv.options());
  for (int64_t b = 0; b < b_n; ++b) {
    const int64_t l = off[b + 1] - off[b];
    if (l == 0) continue;
    // The padded kernel on one pair of length l: [1, l, 3HD] -> [1, l, HD].
    const at::Tensor len = at::full({1}, l, at::TensorOptions().dtype(at::kLong));
    out.narrow(0, off[b], l)
        .copy_(
            AttentionPortable(qkv.narrow(0, off[b], l).unsqueeze(0), len.data_ptr<int64_t>(), heads)
                .squeeze(0));
  }
  return out;
}

std::tuple<at::Tensor, at::Tensor> AddLayerNormPortable(const at::Tensor& y, const at::Tensor& bias,
                                                        const at::Tensor& residual,
                                                        const at::Tensor& weight,
                                                        const at::Tensor& beta, double eps,
                                                        at::ScalarType lowp) {
  at::Tensor z = y.to(at::kFloat) + bias.to(at::kFloat) + residual;
  at::Tensor out = at::layer_norm(z, {y.size(-1)}, weight, beta, eps);
  return {out, lowp == at::kFloat ? out : out.to(lowp)};
}

at::Tensor BiasActPortable(const at::Tensor& x, const at::Tensor& bias, int act) {
  at::Tensor z = x.to(at::kFloat) + bias.to(at::kFloat);
  if (act == 0) {
    z = at::gelu(z);
  } else if (act == 1) {
    z = at::gelu(z, "tanh");
  } else {
    z = at::relu(z);
  }
  return z.to(x.scalar_type());
}

// ---------------------------------------------------------------------------------------------
// AVX-512 kernels. Compiled for AVX-512 by the target pragma and only called after the run-time
// check above. Everything in this region is a plain function of raw pointers (no std:: templates
// are instantiated here, so no AVX-512 copy of a shared inline function can leak to other code).
// ---------------------------------------------------------------------------------------------
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,fma")

using bf16_t = uint16_t;

inline __m512 Load16(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 Load16(const bf16_t* p) {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
inline void Store16(float* p, __m512 v) { _mm512_storeu_ps(p, v); }
// Round to nearest even, as c10::BFloat16; NaN stays a (quiet) NaN.
inline void Store16(bf16_t* p, __m512 v) {
  const __m512i x = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(x, 16), _mm512_set1_epi32(1));
  __m512i r =
      _mm512_srli_epi32(_mm512_add_epi32(x, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
  const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  r = _mm512_mask_mov_epi32(r, nan, _mm512_set1_epi32(0x7fc0));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(r));
}
inline float ToFloat(float x) { return x; }
inline float ToFloat(bf16_t x) {
  const uint32_t u = static_cast<uint32_t>(x) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// exp(x) for x in float range: Cephes' polynomial on x - n*ln2, scaled by 2^n (vscalefps).
inline __m512 Exp(__m512 x) {
  x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.72f)), _mm512_set1_ps(-87.33f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

// 2^s for s <= 0: 2^f 2^n, n = round(s), with 2^f on [-1/2, 1/2] by a degree-5 polynomial
// (relative least-squares fit on Chebyshev nodes; max relative error 2.3e-7 evaluated in float32).
// Results below the float range come out denormal or 0 from vscalefps; s must be finite.
inline __m512 Exp2NonPositive(__m512 s) {
  const __m512 n = _mm512_roundscale_ps(s, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(s, n);
  __m512 p = _mm512_set1_ps(0.00132770371f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.00967554655f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.055507116f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.240221202f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.693146944f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.00000012f));
  return _mm512_scalef_ps(p, n);
}

// gelu(z) = z Phi(z) (the exact erf form) with the upper tail q(u) = Phi(-u) = erfc(u/sqrt2)/2,
// u = |z|: Phi = q for z < 0 and 1 - q for z >= 0, so the negative tail is a product (no
// cancellation as in 0.5 z (1 + erf)). q(u) = t P(t) exp(-u^2/2), t = 1 / (1 + c u) (vrcp14ps and
// one Newton step instead of a division), P fitted here for *relative* error of q over
// u in [0, 14] (iteratively reweighted least squares; the shape of Abramowitz & Stegun 7.1.26,
// whose absolute-error fit is off by up to ~40% relative in the far tail). Max relative error of
// q: for float32 results (kLowp false) P of degree 6, 8.7e-7; for results rounded to bf16 next
// (2^-8 steps) degree 4, 3.5e-5, and a degree-4 2^f. Computing -u^2/2 in float32 adds up to
// ~8e-6 relative for |z| > 10. Measured against float64 z erfc(-z/sqrt2)/2 on 4M float32 z in
// [-20, 20]: float32 max |error| 3.8e-7 (was 4.7e-7 with 0.5 z (1 + erf)), relative error
// <= 7.3e-6 for z in [-13, -5] (was up to 100%); bf16 results correctly rounded for 99.9% of
// bf16 z in [-8, 8] (was 78%).
constexpr float kGeluC = 0.36f, kGeluLowpC = 0.38f;
// exp(-u^2/2) = 2^(u^2 kGeluS)
constexpr float kGeluS = -0.72134752044448170f;

// t P(t) for bf16 results (degree 4).
inline __m512 GeluTailLowp(__m512 t) {
  __m512 p = _mm512_set1_ps(-0.0899283308f);
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.188876717f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.0919792253f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.157829789f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.151225077f));
  return _mm512_mul_ps(p, t);
}

// 1 / den, |relative error| ~1e-7 (vrcp14ps + one Newton step).
inline __m512 Reciprocal(__m512 den) {
  const __m512 t = _mm512_rcp14_ps(den);
  return _mm512_fmadd_ps(t, _mm512_fnmadd_ps(den, t, _mm512_set1_ps(1.0f)), t);
}

// z (1 - q) for z >= 0, z q for z < 0.
inline __m512 GeluFromTail(__m512 z, __m512 q) {
  const __mmask16 pos = _mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_GE_OQ);
  return _mm512_mul_ps(z, _mm512_mask_sub_ps(q, pos, _mm512_set1_ps(1.0f), q));
}

template <bool kLowp>
inline __m512 Gelu(__m512 z) {
  // Clamped so that +-inf gives a finite t (not inf * 0) and exponent; q is 0 beyond 14.5.
  const __m512 u = _mm512_min_ps(_mm512_abs_ps(z), _mm512_set1_ps(16.0f));
  const __m512 s = _mm512_mul_ps(_mm512_mul_ps(u, u), _mm512_set1_ps(kGeluS));
  if (kLowp) {
    const __m512 t =
        Reciprocal(_mm512_fmadd_ps(u, _mm512_set1_ps(kGeluLowpC), _mm512_set1_ps(1.0f)));
    // 2^s with a degree-4 2^f on [-1/2, 1/2] (relative error 2.7e-6).
    const __m512 n = _mm512_roundscale_ps(s, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_sub_ps(s, n);
    __m512 e = _mm512_set1_ps(0.009560510516166687f);
    e = _mm512_fmadd_ps(e, f, _mm512_set1_ps(0.05591703951358795f));
    e = _mm512_fmadd_ps(e, f, _mm512_set1_ps(0.24024981260299683f));
    e = _mm512_fmadd_ps(e, f, _mm512_set1_ps(0.6931219696998596f));
    e = _mm512_fmadd_ps(e, f, _mm512_set1_ps(0.9999991655349731f));
    return GeluFromTail(z, _mm512_mul_ps(GeluTailLowp(t), _mm512_scalef_ps(e, n)));
  }
  const __m512 t = Reciprocal(_mm512_fmadd_ps(u, _mm512_set1_ps(kGeluC), _mm512_set1_ps(1.0f)));
  __m512 p = _mm512_set1_ps(0.047056715f);
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.179766044f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.180955702f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.0265482667f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.139719613f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.141772397f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.143713049f));
  return GeluFromTail(z, _mm512_mul_ps(_mm512_mul_ps(p, t), Exp2NonPositive(s)));
}

// kLowp: the result is rounded to bf16 next (a cheaper gelu suffices).
template <int A, bool kLowp>
inline __m512 Act(__m512 z) {
  if (A == 0) return Gelu<kLowp>(z);
  if (A == 1) {
    // 0.5 z (1 + tanh u), u = sqrt(2/pi) (z + 0.044715 z^3), written as z / (1 + exp(-2u)):
    // no cancellation in 1 + tanh u for negative u, no overflow for large |u|.
    const __m512 z3 = _mm512_mul_ps(_mm512_mul_ps(z, z), z);
    const __m512 u = _mm512_mul_ps(_mm512_set1_ps(-1.5957691216057308f),
                                   _mm512_fmadd_ps(_mm512_set1_ps(0.044715f), z3, z));
    return _mm512_div_ps(z, _mm512_add_ps(Exp(u), _mm512_set1_ps(1.0f)));
  }
  return _mm512_max_ps(z, _mm512_setzero_ps());
}

// Scratch of one (pair, head) task. lp = L rounded up to 16, tp = t_max rounded up to 16.
// fp32 FMA kernel: kt = K transposed [D][lp], v = V [L][D], sc = scores [4][lp], q = the current
// query rows [4][D]. bf16 dot-product kernel (AttnHeadBf16): kt holds K as bf16 pairs along d
// ([D/2][lp] 32-bit words), v holds V as bf16 pairs along keys ([(L+1)/2][D] words), sc scores
// [8][lp], pb the rows' unnormalised probabilities rounded to bf16 [8][lp].
struct AttnScratch {
  float* kt;
  float* v;
  float* sc;
  float* q;
  bf16_t* pb;
  // Whether bf16 heads use the AVX512_BF16 kernel; AttnScratchAt sets it from the CPU, a caller
  // may clear it (Kernel::kAvx512NoBf16) to run the fp32 FMA kernel on bf16 inputs instead.
  bool bf16_dot;
};

// Floats of scratch one thread needs for heads of dimension d over pairs of at most t_max tokens.
inline int64_t AttnScratchFloats(int64_t d, int64_t t_max) {
  const int64_t tp = (t_max + 15) / 16 * 16;
  // kt, v, sc [8][tp], q [4][d], pb [8][tp] bf16. The bf16 kernel's K and V pairs take no more
  // room than kt and v: d/2 * tp words and ceil(t_max/2) * d <= t_max * d words.
  return d * tp + t_max * d + 8 * tp + 4 * d + 4 * tp;
}
// Carves AttnScratchFloats(d, t_max) floats at buf into one task's scratch.
inline AttnScratch AttnScratchAt(float* buf, int64_t d, int64_t t_max) {
  const int64_t tp = (t_max + 15) / 16 * 16;
  float* v = buf + d * tp;
  float* sc = v + t_max * d;
  float* q = sc + 8 * tp;
  return AttnScratch{buf, v, sc, q, reinterpret_cast<bf16_t*>(q + 4 * d), CpuHasAvx512Bf16Cached()};
}

// Scores of R query rows (qf [R][D]) against all key blocks: sc[r][j] = q_r . k_j for j < lp.
template <int R, int DV>
inline void QkRows(const float* qf, const float* kt, int64_t lp, float* sc) {
  constexpr int D = 16 * DV;
  int64_t c = 0;
  for (; c + 32 <= lp; c += 32) {
    __m512 acc[R][2];
    for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int d = 0; d < D; ++d) {
      const __m512 k0 = _mm512_loadu_ps(kt + d * lp + c);
      const __m512 k1 = _mm512_loadu_ps(kt + d * lp + c + 16);
      for (int r = 0; r < R; ++r) {
        const __m512 q = _mm512_set1_ps(qf[r * D + d]);
        acc[r][0] = _mm512_fmadd_ps(q, k0, acc[r][0]);
        acc[r][1] = _mm512_fmadd_ps(q, k1, acc[r][1]);
      }
    }
    for (int r = 0; r < R; ++r) {
      _mm512_storeu_ps(sc + r * lp + c, acc[r][0]);
      _mm512_storeu_ps(sc + r * lp + c + 16, acc[r][1]);
    }
  }
  for (; c < lp; c += 16) {
    __m512 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
    for (int d = 0; d < D; ++d) {
      const __m512 k0 = _mm512_loadu_ps(kt + d * lp + c);
      for (int r = 0; r < R; ++r)
        acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(qf[r * D + d]), k0, acc[r]);
    }
    for (int r = 0; r < R; ++r) _mm512_storeu_ps(sc + r * lp + c, acc[r]);
  }
}

// Mask of the real keys in the block of 16 starting at c (c < l).
inline __mmask16 KeyMask(int64_t c, int64_t l) {
  return l - c >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << (l - c)) - 1);
}

// The maximum of sc[0..l), l >= 1.
inline float RowMax(const float* sc, int64_t l) {
  __m512 mx = _mm512_set1_ps(-INFINITY);
  int64_t j = 0;
  for (; j + 16 <= l; j += 16) mx = _mm512_max_ps(mx, _mm512_loadu_ps(sc + j));
  if (j < l) mx = _mm512_mask_max_ps(mx, KeyMask(j, l), mx, _mm512_loadu_ps(sc + j));
  return _mm512_reduce_max_ps(mx);
}

// In place: sc[0..l) = exp(sc - max), sc[l..lp) = 0. Returns 1 / sum.
inline float SoftmaxRow(float* sc, int64_t l, int64_t lp) {
  const __m512 m = _mm512_set1_ps(RowMax(sc, l));
  __m512 sum = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + 16 <= l; j += 16) {
    const __m512 e = Exp(_mm512_sub_ps(_mm512_loadu_ps(sc + j), m));
    _mm512_storeu_ps(sc + j, e);
    sum = _mm512_add_ps(sum, e);
  }
  if (j < lp) {  // the last block: real keys [j, l), padding columns [l, lp) -> 0
    const __m512 e =
        _mm512_maskz_mov_ps(KeyMask(j, l), Exp(_mm512_sub_ps(_mm512_loadu_ps(sc + j), m)));
    _mm512_storeu_ps(sc + j, e);
    sum = _mm512_add_ps(sum, e);
  }
  return 1.0f / _mm512_reduce_add_ps(sum);
}

// out rows r < R: (sum_j p[r][j] v_j) * inv[r].
template <int R, int DV, typename T>
inline void PvRows(const float* sc, int64_t lp, const float* v, int64_t l, const float* inv, T* out,
                   int64_t out_stride) {
  constexpr int D = 16 * DV;
  __m512 acc[R][DV];
  for (int r = 0; r < R; ++r)
    for (int x = 0; x < DV; ++x) acc[r][x] = _mm512_setzero_ps();
  for (int64_t j = 0; j < l; ++j) {
    __m512 vv[DV];
    for (int x = 0; x < DV; ++x) vv[x] = _mm512_loadu_ps(v + j * D + 16 * x);
    for (int r = 0; r < R; ++r) {
      const __m512 p = _mm512_set1_ps(sc[r * lp + j]);
      for (int x = 0; x < DV; ++x) acc[r][x] = _mm512_fmadd_ps(p, vv[x], acc[r][x]);
    }
  }
  for (int r = 0; r < R; ++r) {
    const __m512 s = _mm512_set1_ps(inv[r]);
    for (int x = 0; x < DV; ++x)
      Store16(out + r * out_stride + 16 * x, _mm512_mul_ps(acc[r][x], s));
  }
}

template <int R, int DV, typename T>
inline void AttnRows(const T* q, int64_t stride, const AttnScratch& s, int64_t l, int64_t lp,
                     T* out, int64_t out_stride) {
  constexpr int D = 16 * DV;
  for (int r = 0; r < R; ++r)
    for (int x = 0; x < DV; ++x)
      _mm512_storeu_ps(s.q + r * D + 16 * x, Load16(q + r * stride + 16 * x));
  QkRows<R, DV>(s.q, s.kt, lp, s.sc);
  float inv[R];
  for (int r = 0; r < R; ++r) inv[r] = SoftmaxRow(s.sc + r * lp, l, lp);
  PvRows<R, DV, T>(s.sc, lp, s.v, l, inv, out, out_stride);
}

// One (pair, head) with fp32 FMAs: q/k/v point at row 0 of this head's slices (row stride
// `stride`), out at row 0 of its context slice; l >= 1 real tokens.
template <int DV, typename T>
void AttnHeadAvx512(const T* q, const T* k, const T* v, int64_t stride, int64_t l, T* out,
                    int64_t out_stride, const AttnScratch& s) {
  constexpr int D = 16 * DV;
  const int64_t lp = (l + 15) / 16 * 16;
  for (int64_t j = 0; j < l; ++j) {
    for (int x = 0; x < DV; ++x) {
      _mm512_storeu_ps(s.v + j * D + 16 * x, Load16(v + j * stride + 16 * x));
    }
    const T* kj = k + j * stride;
    for (int d = 0; d < D; ++d) s.kt[d * lp + j] = ToFloat(kj[d]);
  }
  for (int d = 0; d < D; ++d)
    for (int64_t j = l; j < lp; ++j) s.kt[d * lp + j] = 0.0f;
  int64_t i = 0;
  for (; i + 4 <= l; i += 4) {
    AttnRows<4, DV, T>(q + i * stride, stride, s, l, lp, out + i * out_stride, out_stride);
  }
  for (; i < l; ++i) {
    AttnRows<1, DV, T>(q + i * stride, stride, s, l, lp, out + i * out_stride, out_stride);
  }
}

// ---- AVX512_BF16 attention for bf16 inputs: vdpbf16ps (fp32 += a0*b0 + a1*b1 over bf16 pairs
// in each 32-bit lane). Only called when CpuHasAvx512Bf16().
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512bf16,fma")

// Two adjacent bf16 values as one 32-bit word (the low one first), broadcast to all lanes.
inline __m512i BroadcastPair(const bf16_t* p) {
  uint32_t w;
  std::memcpy(&w, p, sizeof w);
  return _mm512_set1_epi32(static_cast<int>(w));
}

inline __m512 DotPairs(__m512 acc, __m512i a, __m512i b) {
  return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b);
}

// 16 floats to bf16, round to nearest even (vcvtneps2bf16).
inline __m256i ToBf16(__m512 x) { return (__m256i)_mm512_cvtneps_pbh(x); }

// K as bf16 pairs along d: kp[d2 * lp + j] = (k_j[2 d2], k_j[2 d2 + 1]) for j < l, 0 for
// l <= j < lp. A masked gather per 16 keys and pair of dims: padding rows are never read.
template <int DV>
inline void PackKeyPairs(const bf16_t* k, int64_t stride, int64_t l, int64_t lp, uint32_t* kp) {
  constexpr int D2 = 8 * DV;
  const __m512i rows =
      _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                         _mm512_set1_epi32(static_cast<int>(stride)));
  for (int64_t c = 0; c < lp; c += 16) {
    const __mmask16 m = KeyMask(c, l);
    const bf16_t* base = k + c * stride;
    for (int d2 = 0; d2 < D2; ++d2) {
      // Index in bf16 elements (scale 2): row (c + lane), dims 2 d2 and 2 d2 + 1.
      const __m512i idx = _mm512_add_epi32(rows, _mm512_set1_epi32(2 * d2));
      const __m512i w = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, idx, base, 2);
      _mm512_storeu_si512(kp + d2 * lp + c, w);
    }
  }
}

// V as bf16 pairs along keys: vp[j2 * D + dim] = (v_{2 j2}[dim], v_{2 j2 + 1}[dim]), with a zero
// second key when l is odd.
template <int DV>
inline void PackValuePairs(const bf16_t* v, int64_t stride, int64_t l, uint32_t* vp) {
  constexpr int D = 16 * DV;
  // Word w of the result: (a[w / 2] if w is even, else b[w / 2]); b's words are 32..63.
  const __m512i interleave =
      _mm512_set_epi16(47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9, 40, 8, 39, 7, 38, 6,
                       37, 5, 36, 4, 35, 3, 34, 2, 33, 1, 32, 0);
  for (int64_t j = 0; j < l; j += 2) {
    for (int x = 0; x < DV; ++x) {
      const __m512i a = _mm512_zextsi256_si512(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(v + j * stride + 16 * x)));
      const __m512i b = j + 1 < l
                            ? _mm512_zextsi256_si512(_mm256_loadu_si256(
                                  reinterpret_cast<const __m256i*>(v + (j + 1) * stride + 16 * x)))
                            : _mm512_setzero_si512();
      _mm512_storeu_si512(vp + (j / 2) * D + 16 * x, _mm512_permutex2var_epi16(a, interleave, b));
    }
  }
}

// Scores of R query rows (row stride `stride`) against all key blocks: sc[r][j] = q_r . k_j for
// j < lp, fp32 accumulation of bf16 products; row_max[r] = max over the l real keys (taken from
// the accumulators, which saves softmax a pass over the scores).
template <int R, int DV>
inline void QkRowsBf16(const bf16_t* q, int64_t stride, const uint32_t* kp, int64_t l, int64_t lp,
                       float* sc, float* row_max) {
  constexpr int D2 = 8 * DV;
  __m512 mx[R];
  for (int r = 0; r < R; ++r) mx[r] = _mm512_set1_ps(-INFINITY);
  int64_t c = 0;
  for (; c + 32 <= lp; c += 32) {
    __m512 acc[R][2];
    for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int d2 = 0; d2 < D2; ++d2) {
      const __m512i k0 = _mm512_loadu_si512(kp + d2 * lp + c);
      const __m512i k1 = _mm512_loadu_si512(kp + d2 * lp + c + 16);
      for (int r = 0; r < R; ++r) {
        const __m512i qp = BroadcastPair(q + r * stride + 2 * d2);
        acc[r][0] = DotPairs(acc[r][0], qp, k0);
        acc[r][1] = DotPairs(acc[r][1], qp, k1);
      }
    }
    const __mmask16 m0 = KeyMask(c, l), m1 = KeyMask(c + 16, l);
    for (int r = 0; r < R; ++r) {
      _mm512_storeu_ps(sc + r * lp + c, acc[r][0]);
      _mm512_storeu_ps(sc + r * lp + c + 16, acc[r][1]);
      mx[r] = _mm512_mask_max_ps(mx[r], m0, mx[r], acc[r][0]);
      mx[r] = _mm512_mask_max_ps(mx[r], m1, mx[r], acc[r][1]);
    }
  }
  for (; c < lp; c += 16) {
    __m512 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
    for (int d2 = 0; d2 < D2; ++d2) {
      const __m512i k0 = _mm512_loadu_si512(kp + d2 * lp + c);
      for (int r = 0; r < R; ++r)
        acc[r] = DotPairs(acc[r], BroadcastPair(q + r * stride + 2 * d2), k0);
    }
    const __mmask16 m0 = KeyMask(c, l);
    for (int r = 0; r < R; ++r) {
      _mm512_storeu_ps(sc + r * lp + c, acc[r]);
      mx[r] = _mm512_mask_max_ps(mx[r], m0, mx[r], acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) row_max[r] = _mm512_reduce_max_ps(mx[r]);
}

// exp(s - m) for softmax probabilities that are rounded to bf16 next (relative step 2^-8):
// 2^t, t = s log2(e) - m log2(e) <= 0 (one FMA), as 2^(t - n) 2^n with n = round(t) and a
// degree-4 polynomial for 2^f on [-1/2, 1/2] (least-squares fit on Chebyshev nodes; max relative
// error 2.7e-6 evaluated in float32, vs 1.2e-7 for Exp, at half of Exp's instructions).
// neg_m_log2e = -m log2(e); very negative t underflow to 0 in vscalefps.
inline __m512 ExpForBf16(__m512 s, __m512 neg_m_log2e) {
  const __m512 t = _mm512_fmadd_ps(s, _mm512_set1_ps(1.44269504088896341f), neg_m_log2e);
  const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(t, n);
  __m512 p = _mm512_set1_ps(0.009560510516166687f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.05591703951358795f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.24024981260299683f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.6931219696998596f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.9999991655349731f));
  return _mm512_scalef_ps(p, n);
}

// pb[0..l) = exp(sc - max) rounded to bf16, pb[l..lp) = 0 (max: the row's max over its l
// keys). Returns 1 / the fp32 sum. Two sums: the exps of consecutive blocks are independent.
inline float SoftmaxRowBf16(const float* sc, float max, int64_t l, int64_t lp, bf16_t* pb) {
  const __m512 nm = _mm512_set1_ps(-max * 1.44269504088896341f);
  __m512 sum0 = _mm512_setzero_ps(), sum1 = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + 32 <= l; j += 32) {
    const __m512 e0 = ExpForBf16(_mm512_loadu_ps(sc + j), nm);
    const __m512 e1 = ExpForBf16(_mm512_loadu_ps(sc + j + 16), nm);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(pb + j), ToBf16(e0));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(pb + j + 16), ToBf16(e1));
    sum0 = _mm512_add_ps(sum0, e0);
    sum1 = _mm512_add_ps(sum1, e1);
  }
  for (; j + 16 <= l; j += 16) {
    const __m512 e = ExpForBf16(_mm512_loadu_ps(sc + j), nm);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(pb + j), ToBf16(e));
    sum0 = _mm512_add_ps(sum0, e);
  }
  if (j < lp) {
    const __m512 e = _mm512_maskz_mov_ps(KeyMask(j, l), ExpForBf16(_mm512_loadu_ps(sc + j), nm));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(pb + j), ToBf16(e));
    sum0 = _mm512_add_ps(sum0, e);
  }
  return 1.0f / _mm512_reduce_add_ps(_mm512_add_ps(sum0, sum1));
}

// out rows r < R: (sum_j p[r][j] v_j) * inv[r], over key pairs (p's padding and V's odd-l zero
// row make the last pair exact).
template <int R, int DV>
inline void PvRowsBf16(const bf16_t* pb, int64_t lp, const uint32_t* vp, int64_t l,
                       const float* inv, bf16_t* out, int64_t out_stride) {
  constexpr int D = 16 * DV;
  __m512 acc[R][DV];
  for (int r = 0; r < R; ++r)
    for (int x = 0; x < DV; ++x) acc[r][x] = _mm512_setzero_ps();
  for (int64_t j = 0; j < l; j += 2) {
    __m512i vv[DV];
    for (int x = 0; x < DV; ++x) vv[x] = _mm512_loadu_si512(vp + (j / 2) * D + 16 * x);
    for (int r = 0; r < R; ++r) {
      const __m512i p = BroadcastPair(pb + r * lp + j);
      for (int x = 0; x < DV; ++x) acc[r][x] = DotPairs(acc[r][x], p, vv[x]);
    }
  }
  for (int r = 0; r < R; ++r) {
    const __m512 s = _mm512_set1_ps(inv[r]);
    for (int x = 0; x < DV; ++x)
      Store16(out + r * out_stride + 16 * x, _mm512_mul_ps(acc[r][x], s));
  }
}

template <int R, int DV>
inline void AttnRowsBf16(const bf16_t* q, int64_t stride, const AttnScratch& s, int64_t l,
                         int64_t lp, bf16_t* out, int64_t out_stride) {
  const uint32_t* kp = reinterpret_cast<const uint32_t*>(s.kt);
  const uint32_t* vp = reinterpret_cast<const uint32_t*>(s.v);
  float mx[R], inv[R];
  QkRowsBf16<R, DV>(q, stride, kp, l, lp, s.sc, mx);
  for (int r = 0; r < R; ++r) inv[r] = SoftmaxRowBf16(s.sc + r * lp, mx[r], l, lp, s.pb + r * lp);
  PvRowsBf16<R, DV>(s.pb, lp, vp, l, inv, out, out_stride);
}

// One (pair, head) of bf16 inputs with bf16 dot products; arguments as AttnHeadAvx512's.
// Blocks of 8 query rows (4 for head dims over 32, whose accumulators would not fit the
// registers) reuse each K/V load across the rows.
template <int DV>
void AttnHeadBf16(const bf16_t* q, const bf16_t* k, const bf16_t* v, int64_t stride, int64_t l,
                  bf16_t* out, int64_t out_stride, const AttnScratch& s) {
  constexpr int R = DV <= 2 ? 8 : 4;
  const int64_t lp = (l + 15) / 16 * 16;
  PackKeyPairs<DV>(k, stride, l, lp, reinterpret_cast<uint32_t*>(s.kt));
  PackValuePairs<DV>(v, stride, l, reinterpret_cast<uint32_t*>(s.v));
  int64_t i = 0;
  for (; i + R <= l; i += R) {
    AttnRowsBf16<R, DV>(q + i * stride, stride, s, l, lp, out + i * out_stride, out_stride);
  }
  if (R > 4 && i + 4 <= l) {
    AttnRowsBf16<4, DV>(q + i * stride, stride, s, l, lp, out + i * out_stride, out_stride);
    i += 4;
  }
  if (i + 2 <= l) {
    AttnRowsBf16<2, DV>(q + i * stride, stride, s, l, lp, out + i * out_stride, out_stride);
    i += 2;
  }
  if (i < l)
    AttnRowsBf16<1, DV>(q + i * stride, stride, s, l, lp, out + i * out_stride, out_stride);
}

void AttnHeadBf16Dispatch(int64_t dv, const bf16_t* q, const bf16_t* k, const bf16_t* v,
                          int64_t stride, int64_t l, bf16_t* out, int64_t out_stride,
                          const AttnScratch& s) {
  switch (dv) {
    case 1:
      return AttnHeadBf16<1>(q, k, v, stride, l, out, out_stride, s);
    case 2:
      return AttnHeadBf16<2>(q, k, v, stride, l, out, out_stride, s);
    case 3:
      return AttnHeadBf16<3>(q, k, v, stride, l, out, out_stride, s);
    default:
      return AttnHeadBf16<4>(q, k, v, stride, l, out, out_stride, s);
  }
}

#pragma GCC pop_options

// The fp32-FMA kernel for head dimension 16 * dv.
template <typename T>
void AttnHeadFmaDispatch(int64_t dv, const T* q, const T* k, const T* v, int64_t stride, int64_t l,
                         T* out, int64_t out_stride, const AttnScratch& s) {
  switch (dv) {
    case 1:
      return AttnHeadAvx512<1, T>(q, k, v, stride, l, out, out_stride, s);
    case 2:
      return AttnHeadAvx512<2, T>(q, k, v, stride, l, out, out_stride, s);
    case 3:
      return AttnHeadAvx512<3, T>(q, k, v, stride, l, out, out_stride, s);
    default:
      return AttnHeadAvx512<4, T>(q, k, v, stride, l, out, out_stride, s);
  }
}

// One (pair, head): float32 heads run the fp32-FMA kernel; bf16 heads the AVX512_BF16 kernel
// where the scratch says so, else the fp32-FMA one.
template <typename T>
void AttnHeadDispatch(int64_t dv, const T* q, const T* k, const T* v, int64_t stride, int64_t l,
                      T* out, int64_t out_stride, const AttnScratch& s) {
  AttnHeadFmaDispatch<T>(dv, q, k, v, stride, l, out, out_stride, s);
}
template <>
void AttnHeadDispatch<bf16_t>(int64_t dv, const bf16_t* q, const bf16_t* k, const bf16_t* v,
                              int64_t stride, int64_t l, bf16_t* out, int64_t out_stride,
                              const AttnScratch& s) {
  if (s.bf16_dot) return AttnHeadBf16Dispatch(dv, q, k, v, stride, l, out, out_stride, s);
  AttnHeadFmaDispatch<bf16_t>(dv, q, k, v, stride, l, out, out_stride, s);
}

// One row of AddLayerNorm; n % 16 == 0. out may alias nothing; lowp may be null.
template <typename Y, typename B>
void AddLayerNormRowAvx512(const Y* y, const B* bias, const float* res, const float* w,
                           const float* be, float eps, int64_t n, float* out, bf16_t* lowp) {
  __m512 sum = _mm512_setzero_ps();
  for (int64_t j = 0; j < n; j += 16) {
    const __m512 z =
        _mm512_add_ps(_mm512_add_ps(Load16(y + j), Load16(bias + j)), _mm512_loadu_ps(res + j));
    _mm512_storeu_ps(out + j, z);
    sum = _mm512_add_ps(sum, z);
  }
  const float mean = _mm512_reduce_add_ps(sum) / static_cast<float>(n);
  const __m512 m = _mm512_set1_ps(mean);
  __m512 sq = _mm512_setzero_ps();
  for (int64_t j = 0; j < n; j += 16) {
    const __m512 c = _mm512_sub_ps(_mm512_loadu_ps(out + j), m);
    sq = _mm512_fmadd_ps(c, c, sq);
  }
  const float var = _mm512_reduce_add_ps(sq) / static_cast<float>(n);
  const __m512 rstd = _mm512_set1_ps(1.0f / std::sqrt(var + eps));
  for (int64_t j = 0; j < n; j += 16) {
    const __m512 c = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(out + j), m), rstd);
    const __m512 o = _mm512_fmadd_ps(c, _mm512_loadu_ps(w + j), _mm512_loadu_ps(be + j));
    _mm512_storeu_ps(out + j, o);
    if (lowp != nullptr) Store16(lowp + j, o);
  }
}

template <typename Y, typename B>
void AddLayerNormRowsAvx512(const Y* y, const B* bias, const float* res, const float* w,
                            const float* be, float eps, int64_t n, int64_t rows, float* out,
                            bf16_t* lowp) {
  for (int64_t r = 0; r < rows; ++r) {
    AddLayerNormRowAvx512(y + r * n, bias, res + r * n, w, be, eps, n, out + r * n,
                          lowp != nullptr ? lowp + r * n : nullptr);
  }
}

// act(x + bias) over rows of n (n % 16 == 0); bias in float32. Store16 rounds bf16 results.
template <int A, typename T>
void BiasActRowsAvx512(const T* x, const float* bias, int64_t n, int64_t rows, T* out) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < n; j += 16) {
      const __m512 z = _mm512_add_ps(Load16(x + r * n + j), _mm512_loadu_ps(bias + j));
      Store16(out + r * n + j, Act<A, sizeof(T) == 2>(z));
    }
  }
}

template <typename T>
void BiasActDispatch(int act, const T* x, const float* bias, int64_t n, int64_t rows, T* out) {
  if (act == 0) return BiasActRowsAvx512<0, T>(x, bias, n, rows, out);
  if (act == 1) return BiasActRowsAvx512<1, T>(x, bias, n, rows, out);
  return BiasActRowsAvx512<2, T>(x, bias, n, rows, out);
}

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512bf16,fma")

// BiasActRowsAvx512 for bf16 with vcvtneps2bf16 rounding (one instruction instead of Store16's
// eight; the same round-to-nearest-even, except that it flushes denormal results to zero).
template <int A>
void BiasActRowsBf16Insns(const bf16_t* x, const float* bias, int64_t n, int64_t rows,
                          bf16_t* out) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < n; j += 16) {
      const __m512 z = _mm512_add_ps(Load16(x + r * n + j), _mm512_loadu_ps(bias + j));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + r * n + j), ToBf16(Act<A, true>(z)));
    }
  }
}

void BiasActBf16InsnsDispatch(int act, const bf16_t* x, const float* bias, int64_t n, int64_t rows,
                              bf16_t* out) {
  if (act == 0) return BiasActRowsBf16Insns<0>(x, bias, n, rows, out);
  if (act == 1) return BiasActRowsBf16Insns<1>(x, bias, n, rows, out);
  return BiasActRowsBf16Insns<2>(x, bias, n, rows, out);
}

#pragma GCC pop_options

#pragma GCC pop_options

// ---------------------------------------------------------------------------------------------
// Op entry points
// ---------------------------------------------------------------------------------------------

template <typename T>
T* Ptr(const at::Tensor& t) {
  return reinterpret_cast<T*>(t.data_ptr());
}

int ActCode(const std::string& act) {
  if (act == "gelu") return 0;
  if (act == "gelu_tanh") return 1;
  if (act == "relu") return 2;
  TORCH_CHECK(false, "rerank::bias_act: act must be gelu, gelu_tanh or relu, got '", act, "'");
  return -1;
}

// The AVX-512 attention over every (pair, head), in parallel on the intra-op threads. Pair b
// owns len[b] <= t_max rows starting at row start[b] of x ([rows, 3*H*D]) and of out
// ([rows, H*D], x's dtype); rows of no pair are left untouched. bf16_insns: bf16 inputs use the
// AVX512_BF16 dot-product kernel (UseBf16Insns).
void AttentionTasksAvx512(const at::Tensor& x, const int64_t* start, const int64_t* len,
                          int64_t b_n, int64_t num_heads, int64_t t_max, bool bf16_insns,
                          const at::Tensor& out) {
  const int64_t hd = x.size(-1) / 3, d = hd / num_heads, stride = 3 * hd;
  const bool bf16 = x.scalar_type() == at::kBFloat16;
  // Pairs arrive sorted by length (the batcher's plan) and a (pair, head) costs ~ l^2, so equal
  // task counts per thread would leave the thread with the short pairs idle for a good part of
  // the call. Split the tasks into one contiguous range per thread of equal estimated cost.
  const int64_t tasks = b_n * num_heads;
  std::vector<double> cum(static_cast<size_t>(tasks) + 1, 0.0);
  for (int64_t t = 0; t < tasks; ++t) {
    const double l = static_cast<double>(len[t / num_heads]);
    cum[t + 1] = cum[t] + l * (l + 2.0 * static_cast<double>(d));  // scores + per-row work
  }
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), tasks));
  auto part_begin = [&](int64_t p) -> int64_t {
    if (p >= parts) return tasks;
    const double target = cum[tasks] * static_cast<double>(p) / static_cast<double>(parts);
    return std::lower_bound(cum.begin(), cum.end(), target) - cum.begin();
  };
  at::parallel_for(0, parts, 1, [&](int64_t part0, int64_t part1) {
    const int64_t begin = part_begin(part0), end = std::min(tasks, part_begin(part1));
    if (begin >= end) return;
    std::vector<float> buf(static_cast<size_t>(AttnScratchFloats(d, t_max)));
    AttnScratch s = AttnScratchAt(buf.data(), d, t_max);
    s.bf16_dot = s.bf16_dot && bf16_insns;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / num_heads, h = task % num_heads, l = len[b];
      if (l == 0) continue;
      const int64_t row0 = start[b] * stride + h * d;
      const int64_t out0 = start[b] * hd + h * d;
      if (bf16) {
        const bf16_t* p = Ptr<bf16_t>(x);
        AttnHeadDispatch<bf16_t>(d / 16, p + row0, p + row0 + hd, p + row0 + 2 * hd, stride, l,
                                 Ptr<bf16_t>(out) + out0, hd, s);
      } else {
        const float* p = Ptr<float>(x);
        AttnHeadDispatch<float>(d / 16, p + row0, p + row0 + hd, p + row0 + 2 * hd, stride, l,
                                Ptr<float>(out) + out0, hd, s);
      }
    }
  });
}

}  // namespace

bool CpuHasAvx512() {
  static const bool has = DetectAvx512();
  return has;
}

bool CpuHasAvx512Bf16() { return CpuHasAvx512Bf16Cached(); }

const char* AutoKernelName() { return UseAvx512(Kernel::kAuto) ? "avx512" : "portable"; }

at::Tensor Attention(const at::Tensor& qkv, const at::Tensor& lengths, int64_t num_heads,
                     Kernel kernel) {
  TORCH_CHECK(qkv.dim() == 3, "rerank::attention: qkv must be [B, T, 3*H*D], got ", qkv.sizes());
  TORCH_CHECK(IsFloatOrBf16(qkv), "rerank::attention: qkv must be float32 or bfloat16, got ",
              qkv.scalar_type());
  TORCH_CHECK(num_heads >= 1 && qkv.size(2) % (3 * num_heads) == 0,
              "rerank::attention: qkv's last dimension ", qkv.size(2), " is not 3 * num_heads (",
              num_heads, ") * head_dim");
  TORCH_CHECK(
      lengths.dim() == 1 && lengths.size(0) == qkv.size(0) && lengths.scalar_type() == at::kLong,
      "rerank::attention: lengths must be int64 [B] with B = ", qkv.size(0));
  const at::Tensor x = qkv.contiguous();
  const at::Tensor lens = lengths.contiguous();
  const int64_t b_n = x.size(0), t_n = x.size(1), hd = x.size(2) / 3, d = hd / num_heads;
  const int64_t* len = lens.data_ptr<int64_t>();
  for (int64_t b = 0; b < b_n; ++b) {
    TORCH_CHECK(len[b] >= 0 && len[b] <= t_n, "rerank::attention: lengths[", b, "] = ", len[b],
                " is outside [0, ", t_n, "]");
  }
  if (!UseAvx512(kernel) || d % 16 != 0 || d > 64) return AttentionPortable(x, len, num_heads);
  at::Tensor out = at::empty({b_n, t_n, hd}, x.options());
  const int64_t elem = x.element_size();
  for (int64_t b = 0; b < b_n; ++b) {  // padding rows are zero
    if (len[b] < t_n) {
      std::memset(static_cast<char*>(out.data_ptr()) + (b * t_n + len[b]) * hd * elem, 0,
                  (t_n - len[b]) * hd * elem);
    }
  }
  std::vector<int64_t> start(b_n);
  for (int64_t b = 0; b < b_n; ++b) start[b] = b * t_n;
  AttentionTasksAvx512(x, start.data(), len, b_n, num_heads, t_n, UseBf16Insns(kernel), out);
  return out;
}

at::Tensor AttentionPacked(const at::Tensor& qkv, const at::Tensor& offsets, int64_t num_heads,
                           Kernel kernel) {
  TORCH_CHECK(qkv.dim() == 2, "rerank::attention_packed: qkv must be [N, 3*H*D], got ",
              qkv.sizes());
  TORCH_CHECK(IsFloatOrBf16(qkv), "rerank::attention_packed: qkv must be float32 or bfloat16, got ",
              qkv.scalar_type());
  TORCH_CHECK(num_heads >= 1 && qkv.size(1) % (3 * num_heads) == 0,
              "rerank::attention_packed: qkv's last dimension ", qkv.size(1),
              " is not 3 * num_heads (", num_heads, ") * head_dim");
  TORCH_CHECK(offsets.dim() == 1 && offsets.size(0) >= 1 && offsets.scalar_type() == at::kLong,
              "rerank::attention_packed: offsets must be int64 [B + 1]");
  const at::Tensor x = qkv.contiguous();
  const at::Tensor offs = offsets.contiguous();
  const int64_t n = x.size(0), b_n = offs.size(0) - 1, hd = x.size(1) / 3, d = hd / num_heads;
  const int64_t* off = offs.data_ptr<int64_t>();
  TORCH_CHECK(off[0] == 0 && off[b_n] == n, "rerank::attention_packed: offsets must run from 0 to ",
              "N = ", n, ", got ", off[0], " .. ", off[b_n]);
  int64_t t_max = 0;
  for (int64_t b = 0; b < b_n; ++b) {
    TORCH_CHECK(off[b + 1] >= off[b], "rerank::attention_packed: offsets must not decrease (",
                "offsets[", b + 1, "] = ", off[b + 1], " < ", off[b], ")");
    t_max = std::max(t_max, off[b + 1] - off[b]);
  }
  if (!UseAvx512(kernel) || d % 16 != 0 || d > 64) {
    return AttentionPackedPortable(x, off, b_n, num_heads);
  }
  at::Tensor out = at::empty({n, hd}, x.options());
  std::vector<int64_t> len(b_n);
  for (int64_t b = 0; b < b_n; ++b) len[b] = off[b + 1] - off[b];
  AttentionTasksAvx512(x, off, len.data(), b_n, num_heads, t_max, UseBf16Insns(kernel), out);
  return out;
}

std::tuple<at::Tensor, at::Tensor> AddLayerNorm(const at::Tensor& y, const at::Tensor& bias,
                                                const at::Tensor& residual,
                                                const at::Tensor& weight, const at::Tensor& beta,
                                                double eps, at::ScalarType lowp_dtype,
                                                Kernel kernel) {
  TORCH_CHECK(y.dim() >= 1 && IsFloatOrBf16(y) && IsFloatOrBf16(bias),
              "rerank::add_layernorm: y and bias must be float32 or bfloat16");
  const int64_t n = y.size(-1);
  TORCH_CHECK(bias.dim() == 1 && bias.size(0) == n, "rerank::add_layernorm: bias must be [", n,
              "], got ", bias.sizes());
  TORCH_CHECK(residual.sizes() == y.sizes() && residual.scalar_type() == at::kFloat,
              "rerank::add_layernorm: residual must be float32 of y's shape ", y.sizes());
  TORCH_CHECK(weight.dim() == 1 && weight.size(0) == n && beta.dim() == 1 && beta.size(0) == n &&
                  weight.scalar_type() == at::kFloat && beta.scalar_type() == at::kFloat,
              "rerank::add_layernorm: weight and beta must be float32 [", n, "]");
  TORCH_CHECK(lowp_dtype == at::kFloat || lowp_dtype == at::kBFloat16,
              "rerank::add_layernorm: lowp_dtype must be float32 or bfloat16");
  if (!UseAvx512(kernel) || n % 16 != 0) {
    return AddLayerNormPortable(y, bias, residual, weight, beta, eps, lowp_dtype);
  }
  const at::Tensor yc = y.contiguous(), bc = bias.contiguous(), rc = residual.contiguous();
  const at::Tensor wc = weight.contiguous(), ec = beta.contiguous();
  at::Tensor out = at::empty(y.sizes(), y.options().dtype(at::kFloat));
  at::Tensor lowp =
      lowp_dtype == at::kFloat ? out : at::empty(y.sizes(), y.options().dtype(lowp_dtype));
  const int64_t rows = n == 0 ? 0 : y.numel() / n;
  const float e = static_cast<float>(eps);
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    const int64_t off = begin * n;
    bf16_t* lp = lowp_dtype == at::kFloat ? nullptr : Ptr<bf16_t>(lowp) + off;
    float* o = Ptr<float>(out) + off;
    const float* r = Ptr<float>(rc) + off;
    const bool yb = yc.scalar_type() == at::kBFloat16, bb = bc.scalar_type() == at::kBFloat16;
    if (yb && bb) {
      AddLayerNormRowsAvx512(Ptr<bf16_t>(yc) + off, Ptr<bf16_t>(bc), r, Ptr<float>(wc),
                             Ptr<float>(ec), e, n, end - begin, o, lp);
    } else if (yb) {
      AddLayerNormRowsAvx512(Ptr<bf16_t>(yc) + off, Ptr<float>(bc), r, Ptr<float>(wc),
                             Ptr<float>(ec), e, n, end - begin, o, lp);
    } else if (bb) {
      AddLayerNormRowsAvx512(Ptr<float>(yc) + off, Ptr<bf16_t>(bc), r, Ptr<float>(wc),
                             Ptr<float>(ec), e, n, end - begin, o, lp);
    } else {
      AddLayerNormRowsAvx512(Ptr<float>(yc) + off, Ptr<float>(bc), r, Ptr<float>(wc),
                             Ptr<float>(ec), e, n, end - begin, o, lp);
    }
  });
  return {out, lowp};
}

at::Tensor BiasAct(const at::Tensor& x, const at::Tensor& bias, const std::string& act,
                   Kernel kernel) {
  const int code = ActCode(act);
  TORCH_CHECK(x.dim() >= 1 && IsFloatOrBf16(x), "rerank::bias_act: x must be float32 or bfloat16");
  const int64_t n = x.size(-1);
  TORCH_CHECK(bias.dim() == 1 && bias.size(0) == n && IsFloatOrBf16(bias),
              "rerank::bias_act: bias must be float32 or bfloat16 [", n, "], got ", bias.sizes());
  if (!UseAvx512(kernel) || n % 16 != 0 || bias.scalar_type() != x.scalar_type()) {
    return BiasActPortable(x, bias, code);
  }
  const at::Tensor xc = x.contiguous(), bc = bias.to(at::kFloat).contiguous();
  at::Tensor out = at::empty(x.sizes(), x.options());
  const int64_t rows = n == 0 ? 0 : x.numel() / n;
  const bool bf16 = x.scalar_type() == at::kBFloat16;
  const bool bf16_insns = bf16 && UseBf16Insns(kernel);
  const float* b = Ptr<float>(bc);
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    if (bf16_insns) {
      BiasActBf16InsnsDispatch(code, Ptr<bf16_t>(xc) + begin * n, b, n, end - begin,
                               Ptr<bf16_t>(out) + begin * n);
    } else if (bf16) {
      BiasActDispatch(code, Ptr<bf16_t>(xc) + begin * n, b, n, end - begin,
                      Ptr<bf16_t>(out) + begin * n);
    } else {
      BiasActDispatch(code, Ptr<float>(xc) + begin * n, b, n, end - begin,
                      Ptr<float>(out) + begin * n);
    }
  });
  return out;
}

namespace {

at::Tensor AttentionOp(const at::Tensor& qkv, const at::Tensor& lengths, int64_t num_heads) {
  return Attention(qkv, lengths, num_heads);
}

at::Tensor AttentionPackedOp(const at::Tensor& qkv, const at::Tensor& offsets, int64_t num_heads) {
  return AttentionPacked(qkv, offsets, num_heads);
}

std::tuple<at::Tensor, at::Tensor> AddLayerNormOp(const at::Tensor& y, const at::Tensor& bias,
                                                  const at::Tensor& residual,
                                                  const at::Tensor& weight, const at::Tensor& beta,
                                                  double eps, at::ScalarType lowp_dtype) {
  return AddLayerNorm(y, bias, residual, weight, beta, eps, lowp_dtype);
}

at::Tensor BiasActOp(const at::Tensor& x, const at::Tensor& bias, c10::string_view act) {
  return BiasAct(x, bias, std::string(act));
}

}  // namespace

int RegisteredOpCount() { return 4; }

}  // namespace rerank::fused

TORCH_LIBRARY(rerank, m) {
  m.def("attention(Tensor qkv, Tensor lengths, int num_heads) -> Tensor",
        &rerank::fused::AttentionOp);
  m.def("attention_packed(Tensor qkv, Tensor offsets, int num_heads) -> Tensor",
        &rerank::fused::AttentionPackedOp);
  m.def(
      "add_layernorm(Tensor y, Tensor bias, Tensor residual, Tensor weight, Tensor beta, float "
      "eps, ScalarType lowp_dtype) -> (Tensor, Tensor)",
      &rerank::fused::AddLayerNormOp);
  m.def("bias_act(Tensor x, Tensor bias, str act) -> Tensor", &rerank::fused::BiasActOp);
}

// Fused CPU kernels for the exported cross-encoder (tools/export_model.py, FusedLayer), registered
// as TorchScript custom operators in the `rerank` namespace (TORCH_LIBRARY), so a model.pt that
// calls torch.ops.rerank.* stays a TorchScript model:
//   rerank::attention(Tensor qkv, Tensor lengths, int num_heads) -> Tensor
//   rerank::attention_packed(Tensor qkv, Tensor offsets, int num_heads) -> Tensor
//   rerank::add_layernorm(Tensor y, Tensor bias, Tensor residual, Tensor weight, Tensor beta,
//                         float eps, ScalarType lowp_dtype) -> (Tensor, Tensor)
//   rerank::bias_act(Tensor x, Tensor bias, str act) -> Tensor
// Each op has an AVX-512 kernel (chosen at run time when the CPU has AVX-512F/BW/VL) and a
// portable kernel made of plain ATen ops; RERANK_FUSED_OPS_KERNEL=portable in the environment
// forces the portable one, RERANK_FUSED_OPS_KERNEL=avx512_nobf16 the AVX-512 one without its
// AVX512_BF16 instructions (tests pass Kernel explicitly). Built into rerank_torch_scorer (so every
// binary that loads a model has the ops) and as librerank_fused_ops.so for Python's
// torch.ops.load_library (the exporter and its tests).
// Thread-safety: the ops are pure functions of their inputs; they run on at::parallel_for's
// intra-op (OpenMP) threads of the calling thread.
#ifndef RERANK_SERVER_FUSED_OPS_FUSED_OPS_H_
#define RERANK_SERVER_FUSED_OPS_FUSED_OPS_H_

#include <ATen/ATen.h>

#include <string>
#include <tuple>

namespace rerank::fused {

enum class Kernel {
  // AVX-512 when the CPU has it and RERANK_FUSED_OPS_KERNEL != portable; its AVX512_BF16 parts
  // where the CPU has those and RERANK_FUSED_OPS_KERNEL != avx512_nobf16.
  kAuto,
  kPortable,  // plain ATen ops (any CPU)
  // AVX-512 kernels; an error if the CPU lacks them. Where the CPU has AVX512_BF16, bf16
  // attention multiplies with bf16 dot products (vdpbf16ps, fp32 accumulation, probabilities
  // rounded to bf16 as the plain bf16 module does), and bias_act rounds bf16 results with
  // vcvtneps2bf16 (the same rounding, but denormal results flush to zero).
  kAvx512,
  // kAvx512 without AVX512_BF16 instructions, as a CPU without them runs it: bf16 attention in
  // fp32 FMAs. Lets tests (and benchmarks) cover that path on any AVX-512 CPU.
  kAvx512NoBf16,
};

// Whether this CPU (and OS) runs the AVX-512 kernels (AVX-512F, BW and VL).
bool CpuHasAvx512();
// Whether it also has AVX512_BF16 (used by Kernel::kAvx512 for bf16 tensors).
bool CpuHasAvx512Bf16();
// The kernel kAuto resolves to in this process ("avx512" or "portable").
const char* AutoKernelName();

// Scaled dot-product attention per (pair, head) in one pass over cache-resident blocks.
// qkv: [B, T, 3*H*D] contiguous, float32 or bfloat16, laid out as [q | k | v] with heads
// contiguous inside each (the exporter's fused QKV GEMM output; the 1/sqrt(D) scale is already
// folded into q). lengths: int64 [B], 0 <= lengths[b] <= T, each pair's real tokens (padding on
// the right): pair b attends over its first lengths[b] keys only and no work is done on its
// padding. Returns the context [B, T, H*D] in qkv's dtype (float32 accumulation); rows at or past
// a pair's length are zero.
at::Tensor Attention(const at::Tensor& qkv, const at::Tensor& lengths, int64_t num_heads,
                     Kernel kernel = Kernel::kAuto);

// Attention over packed rows (no padding anywhere): the real tokens of B pairs laid end to end.
// qkv: [N, 3*H*D] as in Attention; offsets: int64 [B + 1], offsets[0] = 0, non-decreasing,
// offsets[B] = N; pair b owns rows [offsets[b], offsets[b+1]) and attends over them only.
// Returns the context [N, H*D] in qkv's dtype. Same kernels as Attention; the exporter's default
// module (tools/export_model.py, FusedInferenceCrossEncoder) runs every GEMM on such rows.
at::Tensor AttentionPacked(const at::Tensor& qkv, const at::Tensor& offsets, int64_t num_heads,
                           Kernel kernel = Kernel::kAuto);

// out = LayerNorm(y + bias + residual) * weight + beta over the last dimension, in float32.
// y: [..., N] float32 or bfloat16 (a GEMM's output without its bias); bias: [N] (float32 or
// bfloat16); residual: float32, y's shape; weight, beta: float32 [N]. Returns (out, out cast to
// lowp_dtype): the float32 residual stream and the next GEMM's input, written in the same pass
// (the second is `out` itself when lowp_dtype is float32).
std::tuple<at::Tensor, at::Tensor> AddLayerNorm(const at::Tensor& y, const at::Tensor& bias,
                                                const at::Tensor& residual,
                                                const at::Tensor& weight, const at::Tensor& beta,
                                                double eps, at::ScalarType lowp_dtype,
                                                Kernel kernel = Kernel::kAuto);

// act(x + bias) in x's dtype (float32 math). act: "gelu" (exact erf), "gelu_tanh" or "relu".
// x: [..., N] contiguous float32 or bfloat16; bias: [N].
at::Tensor BiasAct(const at::Tensor& x, const at::Tensor& bias, const std::string& act,
                   Kernel kernel = Kernel::kAuto);

// Referenced by server/torch_scorer.cc so that a static link keeps this object (and with it the
// TORCH_LIBRARY registration). Returns the number of registered ops.
int RegisteredOpCount();

}  // namespace rerank::fused

#endif  // RERANK_SERVER_FUSED_OPS_FUSED_OPS_H_

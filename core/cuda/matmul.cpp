// cuda::matmul through cuBLASLt: y[M, N] = alpha · op(a) @ op(b) + beta · y, row-major, fp32
// inputs and outputs with fp32 compute (CUBLAS_COMPUTE_32F: no TF32, so the GPU agrees with
// the CPU backend to ~1e-6). cuda::matmul_bf16: the operands are first rounded to bf16 into a
// workspace (cuda::f32_to_bf16), then multiplied on tensor cores with fp32 accumulation and
// fp32 output; matmul_bf16_rounded takes bf16 operands, and its bf16-output form has cuBLASLt
// round the fp32 result (C = D of type bf16, beta = 0). matmul_add reads C from the residual
// and writes D = y (beta = 1), so the residual needs no copy into y first.
//
// Row-major trick: a row-major [M, N] matrix is the column-major [N, M] matrix yᵀ, and
// yᵀ = op(b)ᵀ op(a)ᵀ, so cuBLASLt (column-major) is called with A := b and B := a, each with
// its own transpose flag, and no copies.
//
// Descriptors and the algorithm are cached per shape, transposes, types and the operands'
// alignments; the workspace is allocated once. cuBLASLt's heuristic assumes 256-byte-aligned
// operands unless told (MIN_ALIGNMENT_*_BYTES), and an algorithm chosen for that refuses a less
// aligned one (CUBLAS_STATUS_NOT_SUPPORTED): views into the flat weights need not be, so each
// plan is made for the alignments its operands have. The algorithm is the heuristic's first
// choice, or under ops::MatmulTuning::Timed the fastest of up to kCandidates of its choices,
// each run kRuns times on the shape's first product (into y when the product overwrites it
// anyway, else into scratch, so that y is accumulated into once, by the chosen algorithm). A
// fixed algorithm per shape keeps results bitwise reproducible within a process (and across processes under
// Heuristic, or under Timed with an earlier process's choices preset: preset_matmul_choices).
#include <cublasLt.h>

#include <cstdint>
#include <cstdio>
#include <map>
#include <utility>
#include <tuple>
#include <vector>

#include "core/cuda/kernels.h"
#include "core/cuda/runtime.h"
#include "core/op_profile.h"

namespace retort::cuda {

namespace {

#define RETORT_CUBLAS_CHECK(expr)                                                           \
  do {                                                                                      \
    const cublasStatus_t st_ = (expr);                                                      \
    if (st_ != CUBLAS_STATUS_SUCCESS)                                                       \
      throw Error(str_cat(__FILE__, ":", __LINE__, ": cuBLASLt error ",                     \
                          cublasLtGetStatusName(st_), " (", cublasLtGetStatusString(st_),   \
                          ") in `" #expr "`"));                                             \
  } while (0)

constexpr size_t kWorkspaceBytes = size_t(32) << 20;
constexpr int kCandidates = 8, kRuns = 3;  // MatmulTuning::Timed

struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  std::vector<cublasLtMatmulAlgo_t> candidates;  // Timed: to time at the first product
};

// (M, N, K, ta, tb, bf16 operands, bf16 output, alignments in bytes of a, b, c, y)
using PlanKey = std::tuple<int64_t, int64_t, int64_t, bool, bool, bool, bool, uint32_t, uint32_t,
                           uint32_t, uint32_t>;

// The largest power of two up to 256 dividing p's address.
uint32_t alignment(const void* p) {
  const uintptr_t u = reinterpret_cast<uintptr_t>(p);
  uint32_t a = 256;
  while (a > 1 && u % a != 0) a /= 2;
  return a;
}

// The key as text, "M,N,K,ta,tb,bf16,bf16_out,align_a,align_b,align_c,align_y"
// (TunedProduct::key).
std::string key_text(const PlanKey& key) {
  std::string s;
  std::apply([&](const auto&... v) { ((s.append(std::to_string(v)).push_back(',')), ...); }, key);
  s.pop_back();
  return s;
}

struct Context {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  std::map<PlanKey, Plan> plans;
  uint16_t* bf16_operands = nullptr;  // a then b, rounded (matmul_bf16), grown on demand
  int64_t bf16_capacity = 0;
};

// MatmulTuning::Timed, what it chose, and the choices to take instead of timing (by key; apart
// from the context, which needs a GPU).
bool g_timed = false;
std::vector<ops::TunedProduct> g_tuned;
std::map<std::string, ops::TunedProduct> g_presets;

Context& context() {
  static Context ctx = [] {
    Context c;
    RETORT_CUBLAS_CHECK(cublasLtCreate(&c.handle));
    c.workspace = allocate(kWorkspaceBytes);
    return c;
  }();
  return ctx;
}

// Column-major call: D[N, M] = alpha · opA(A) opB(B) + beta · C with A := b, B := a.
Plan make_plan(Context& ctx, const PlanKey& key) {
  const auto [M, N, K, ta, tb, bf16, bf16_out, align_a, align_b, align_c, align_y] = key;
  Plan p;
  const cudaDataType_t in = bf16 ? CUDA_R_16BF : CUDA_R_32F;
  const cudaDataType_t out = bf16_out ? CUDA_R_16BF : CUDA_R_32F;
  RETORT_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t op_a = tb ? CUBLAS_OP_T : CUBLAS_OP_N;  // applied to b
  const cublasOperation_t op_b = ta ? CUBLAS_OP_T : CUBLAS_OP_N;  // applied to a
  RETORT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a,
                                                     sizeof op_a));
  RETORT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b,
                                                     sizeof op_b));
  // b stored row-major [K, N] (or [N, K] when tb) = column-major [N, K] (or [K, N]).
  RETORT_CUBLAS_CHECK(tb ? cublasLtMatrixLayoutCreate(&p.a, in, K, N, K)
                         : cublasLtMatrixLayoutCreate(&p.a, in, N, K, N));
  // a stored row-major [M, K] (or [K, M] when ta) = column-major [K, M] (or [M, K]).
  RETORT_CUBLAS_CHECK(ta ? cublasLtMatrixLayoutCreate(&p.b, in, M, K, M)
                         : cublasLtMatrixLayoutCreate(&p.b, in, K, M, K));
  RETORT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.c, out, N, M, N));

  cublasLtMatmulPreference_t pref;
  RETORT_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  size_t ws = kWorkspaceBytes;
  RETORT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
  const std::pair<cublasLtMatmulPreferenceAttributes_t, uint32_t> alignments[] = {
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, align_b},  // A := b
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, align_a},  // B := a
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, align_c},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, align_y}};
  for (const auto& [attr, bytes] : alignments)
    RETORT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attr, &bytes, sizeof bytes));
  cublasLtMatmulHeuristicResult_t results[kCandidates] = {};
  int found = 0;
  const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(
      ctx.handle, p.desc, p.a, p.b, p.c, p.c, pref, g_timed ? kCandidates : 1, results, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  RETORT_CUBLAS_CHECK(st);
  RETORT_CHECK(found > 0, "cuBLASLt has no algorithm for matmul M=", M, " N=", N, " K=", K,
               " ta=", ta, " tb=", tb, bf16_out ? " (bf16 output)" : "",
               " with operands aligned to ", align_a, ", ", align_b, ", ", align_c, ", ", align_y,
               " bytes");
  p.algo = results[0].algo;
  for (int i = 0; g_timed && found > 1 && i < found; ++i)
    if (results[i].state == CUBLAS_STATUS_SUCCESS) p.candidates.push_back(results[i].algo);
  if (p.candidates.size() < 2) p.candidates.clear();
  return p;
}

// Timed: runs each candidate on this product's operands (a warm-up, then kRuns timed runs) and
// keeps the fastest in p.algo; a candidate that fails to run is skipped. `call(algo, d)` queues
// the product with output d: y itself when the product does not read y (the chosen algorithm
// overwrites it next), else scratch of out_bytes.
template <class Call>
void choose_by_time(Plan& p, const Call& call, void* y, bool reads_y, size_t out_bytes,
                    std::string shape, std::string key) {
  void* scratch = reads_y ? allocate(out_bytes) : y;
  ops::TunedProduct t{std::move(shape), std::move(key)};
  double best = 0;
  for (size_t i = 0; i < p.candidates.size(); ++i) {
    if (call(p.candidates[i], scratch) != CUBLAS_STATUS_SUCCESS) continue;
    cudaEvent_t from = timing_mark();
    for (int r = 0; r < kRuns; ++r) call(p.candidates[i], scratch);
    cudaEvent_t to = timing_mark();
    RETORT_CUDA_CHECK(cudaStreamSynchronize(compute_stream()));
    const double us = 1e3 * timing_elapsed_ms(from, to) / kRuns;
    timing_release(from);
    timing_release(to);
    if (i == 0) t.heuristic_us = us;
    if (t.candidates++ == 0 || us < best) {
      best = us;
      t.chosen = int(i);
      p.algo = p.candidates[i];
    }
  }
  if (reads_y) release(scratch);
  RETORT_CHECK(t.candidates > 0, "cuBLASLt: none of the ", p.candidates.size(),
               " algorithms timed for ", t.shape, " ran");
  t.chosen_us = best;
  p.candidates.clear();
  g_tuned.push_back(std::move(t));
}

// y = alpha · op(a) op(b) + beta · c with a, b and y of the element types the plan was made for;
// c (y's type and layout) is y itself unless given.
void run(const void* a, bool ta, const void* b, bool tb, void* y, int64_t M, int64_t N,
         int64_t K, float alpha, float beta, bool bf16, bool bf16_out, const void* c = nullptr) {
  Context& ctx = context();
  const PlanKey key{M, N, K, ta, tb, bf16, bf16_out,
                    alignment(a), alignment(b), alignment(c ? c : y), alignment(y)};
  auto it = ctx.plans.find(key);
  if (it == ctx.plans.end()) it = ctx.plans.emplace(key, make_plan(ctx, key)).first;
  Plan& p = it->second;
  const auto call = [&](const cublasLtMatmulAlgo_t& algo, void* d) {
    return cublasLtMatmul(ctx.handle, p.desc, &alpha, b, p.a, a, p.b, &beta, c ? c : y, p.c, d,
                          p.c, &algo, ctx.workspace, kWorkspaceBytes, compute_stream());
  };
  if (!p.candidates.empty()) {
    std::string key_s = key_text(key);
    const auto preset = g_presets.find(key_s);
    if (preset != g_presets.end() && preset->second.chosen < int(p.candidates.size())) {
      p.algo = p.candidates[size_t(preset->second.chosen)];  // what the earlier process timed
      p.candidates.clear();
      g_tuned.push_back(preset->second);
      g_tuned.back().preset = true;
    } else {
      choose_by_time(p, call, y, beta != 0.0f && (!c || c == y), size_t(M * N) * (bf16_out ? 2 : 4),
                     str_cat(op_profile::product_name(M, N, K, ta, tb),
                             bf16 ? "" : " fp32", bf16_out ? " bf16 out" : ""),
                     std::move(key_s));
    }
  }
  RETORT_CUBLAS_CHECK(call(p.algo, y));
}

// K == 0: the empty sum, y = beta · y (beta = 0 overwrites, even NaN). True when handled.
bool trivial(float* y, int64_t M, int64_t N, int64_t K, float beta) {
  if (M == 0 || N == 0) return true;
  if (K != 0) return false;
  if (beta == 0.0f)
    RETORT_CUDA_CHECK(cudaMemsetAsync(y, 0, size_t(M * N) * sizeof(float), compute_stream()));
  else
    scale_inplace(y, M * N, beta);
  return true;
}

}  // namespace

void set_matmul_timed(bool timed) { g_timed = timed; }
std::vector<ops::TunedProduct> matmul_tuned_products() { return g_tuned; }

void preset_matmul_choices(const std::vector<ops::TunedProduct>& choices) {
  for (const ops::TunedProduct& t : choices) g_presets[t.key] = t;
}

std::string matmul_tuning_identity() {
  int device = 0;
  RETORT_CUDA_CHECK(cudaGetDevice(&device));
  cudaDeviceProp prop{};
  RETORT_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  return str_cat(prop.name, ", cuBLASLt ", cublasLtGetVersion(), ", ", kCandidates,
                 " candidates, ", kWorkspaceBytes >> 20, " MiB workspace");
}

void matmul(float* y, const float* a, bool ta, const float* b, bool tb, int64_t M, int64_t N,
            int64_t K, float alpha, float beta) {
  if (!trivial(y, M, N, K, beta)) run(a, ta, b, tb, y, M, N, K, alpha, beta, false, false);
}

void matmul_bf16(float* y, const float* a, bool ta, const float* b, bool tb, int64_t M, int64_t N,
                 int64_t K, float alpha, float beta) {
  if (trivial(y, M, N, K, beta)) return;
  Context& ctx = context();
  const int64_t b_at = (M * K + 127) / 128 * 128;  // b 256-byte aligned, as a is
  if (ctx.bf16_capacity < b_at + K * N) {  // stream-ordered: earlier users finish first
    release(ctx.bf16_operands);
    ctx.bf16_capacity = b_at + K * N;
    ctx.bf16_operands = static_cast<uint16_t*>(allocate(size_t(ctx.bf16_capacity) * 2));
  }
  uint16_t* a16 = ctx.bf16_operands;
  uint16_t* b16 = ctx.bf16_operands + b_at;
  f32_to_bf16(a16, a, M * K);
  f32_to_bf16(b16, b, K * N);
  run(a16, ta, b16, tb, y, M, N, K, alpha, beta, true, false);
}

void matmul_bf16_rounded(float* y, const uint16_t* a, bool ta, const uint16_t* b, bool tb,
                         int64_t M, int64_t N, int64_t K, float alpha, float beta) {
  if (!trivial(y, M, N, K, beta)) run(a, ta, b, tb, y, M, N, K, alpha, beta, true, false);
}

void matmul_bf16_rounded(uint16_t* y, const uint16_t* a, bool ta, const uint16_t* b, bool tb,
                         int64_t M, int64_t N, int64_t K, float alpha) {
  if (M == 0 || N == 0) return;
  if (K != 0) return run(a, ta, b, tb, y, M, N, K, alpha, 0.0f, true, true);
  RETORT_CUDA_CHECK(cudaMemsetAsync(y, 0, size_t(M * N) * 2, compute_stream()));  // +0 in bf16
}

namespace {
// y = c + op(a) op(b) (a, b of the types bf16 says).
void product_add(float* y, const float* c, const void* a, bool ta, const void* b, bool tb,
                 int64_t M, int64_t N, int64_t K, bool bf16) {
  if (M == 0 || N == 0) return;
  if (K != 0) return run(a, ta, b, tb, y, M, N, K, 1.0f, 1.0f, bf16, false, c);
  if (y != c)  // the empty sum: y = c
    RETORT_CUDA_CHECK(cudaMemcpyAsync(y, c, size_t(M * N) * sizeof(float), cudaMemcpyDeviceToDevice,
                                      compute_stream()));
}
}  // namespace

void matmul_add(float* y, const float* c, const float* a, bool ta, const float* b, bool tb,
                int64_t M, int64_t N, int64_t K) {
  product_add(y, c, a, ta, b, tb, M, N, K, false);
}

void matmul_add(float* y, const float* c, const uint16_t* a, bool ta, const uint16_t* b, bool tb,
                int64_t M, int64_t N, int64_t K) {
  product_add(y, c, a, ta, b, tb, M, N, K, true);
}

}  // namespace retort::cuda

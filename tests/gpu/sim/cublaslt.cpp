// cuBLASLt on the host for the simulator build (see include/cublasLt.h). Column-major:
// element (i, j) of a rows × cols matrix with leading dimension ld is at i + j·ld. With
// op(A): m × k, op(B): k × n, C and D: m × n, every product is accumulated in double, so the
// result is the exact product rounded once (the GPU's fp32 sum agrees with it to ~1e-6).
// When beta is 0, C is not read (as in cuBLAS: NaN there does not propagate).
// Alignment: the heuristic's algorithms need the operands aligned as the preference's
// MIN_ALIGNMENT_{A,B,C,D}_BYTES said (default 256, as documented: "selecting a smaller value
// will exclude algorithms that can not work with" a less aligned matrix); cublasLtMatmul with an
// operand less aligned than its algorithm needs is CUBLAS_STATUS_NOT_SUPPORTED, the answer
// PyTorch met for 2-byte-aligned operands (pytorch/pytorch#92201).
#include <cublasLt.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

struct cublasLtContext {};
struct cublasLtMatmulDescOpaque {
  cublasComputeType_t compute;
  cudaDataType_t scale;
  cublasOperation_t ta = CUBLAS_OP_N, tb = CUBLAS_OP_N;
  int32_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
};
struct cublasLtMatrixLayoutOpaque {
  cudaDataType_t type;
  uint64_t rows, cols;
  int64_t ld;
  int32_t batch = 1;     // CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT
  int64_t stride = 0;    // CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET (elements)
};
struct cublasLtMatmulPreferenceOpaque {
  size_t max_workspace = 0;
  uint32_t min_alignment[4] = {256, 256, 256, 256};  // bytes, for A, B, C, D
};

namespace {

// SIM_CUBLASLT_ALGOS: how many algorithms the heuristic offers (default 1).
int sim_algorithms() {
  const char* n = std::getenv("SIM_CUBLASLT_ALGOS");
  return n && std::atoi(n) > 1 ? std::atoi(n) : 1;
}

// SIM_CUBLASLT_FIRST_FASTEST=1: the heuristic's first algorithm is the fastest (default: the
// slowest), so that a machine on which another algorithm wins can be played.
bool sim_first_fastest() {
  const char* f = std::getenv("SIM_CUBLASLT_FIRST_FASTEST");
  return f && *f == '1';
}

double load(const void* base, cudaDataType_t type, uint64_t index) {
  if (type == CUDA_R_32F) return static_cast<const float*>(base)[index];
  uint16_t h = static_cast<const uint16_t*>(base)[index];  // CUDA_R_16BF: the high half of a float
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

unsigned elem(cudaDataType_t t) { return t == CUDA_R_32F ? 4u : 2u; }
bool valid_type(cudaDataType_t t) { return t == CUDA_R_32F || t == CUDA_R_16BF; }

// The stored shape of an operand that op turns into rows × cols.
bool layout_fits(const cublasLtMatrixLayoutOpaque* l, cublasOperation_t op, uint64_t rows,
                 uint64_t cols) {
  const uint64_t r = op == CUBLAS_OP_N ? rows : cols, c = op == CUBLAS_OP_N ? cols : rows;
  return l->rows == r && l->cols == c && l->ld >= int64_t(l->rows) && l->ld >= 1;
}

bool check(cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
           cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d) {
  if (!desc || !a || !b || !c || !d) return false;
  if (desc->compute != CUBLAS_COMPUTE_32F || desc->scale != CUDA_R_32F) return false;
  if (desc->epilogue != CUBLASLT_EPILOGUE_DEFAULT) return false;
  // cuBLASLt's type table for COMPUTE_32F: bf16 A, B with bf16 or fp32 C = D; fp32 A, B with
  // fp32 C = D only.
  if (a->type != b->type || !valid_type(a->type) || !valid_type(d->type) || c->type != d->type ||
      (a->type == CUDA_R_32F && d->type != CUDA_R_32F))
    return false;
  const uint64_t m = d->rows, n = d->cols;
  const uint64_t k = desc->ta == CUBLAS_OP_N ? a->cols : a->rows;
  return layout_fits(a, desc->ta, m, k) && layout_fits(b, desc->tb, k, n) &&
         c->rows == m && c->cols == n && c->ld >= int64_t(m) && d->ld >= int64_t(m) &&
         a->batch == d->batch && b->batch == d->batch && c->batch == d->batch;
}

// D = alpha · op(A) op(B) + beta · C for one matrix of each (C unread when beta is 0).
void product(const cublasLtMatmulDescOpaque& desc, const cublasLtMatrixLayoutOpaque& la,
             const cublasLtMatrixLayoutOpaque& lb, const cublasLtMatrixLayoutOpaque& lc,
             const cublasLtMatrixLayoutOpaque& ld, const void* A, const void* B, const void* C,
             void* D, float alpha, float beta, uint64_t m, uint64_t n, uint64_t k) {
  std::vector<double> out(m * n);
  for (uint64_t j = 0; j < n; ++j)
    for (uint64_t i = 0; i < m; ++i) {
      double s = 0;
      for (uint64_t p = 0; p < k; ++p) {
        const uint64_t ia = desc.ta == CUBLAS_OP_N ? i + p * la.ld : p + i * la.ld;
        const uint64_t ib = desc.tb == CUBLAS_OP_N ? p + j * lb.ld : j + p * lb.ld;
        s += load(A, la.type, ia) * load(B, lb.type, ib);
      }
      double v = double(alpha) * s;
      if (beta != 0.0f) v += double(beta) * load(C, lc.type, i + j * lc.ld);
      out[i + j * m] = v;
    }
  for (uint64_t j = 0; j < n; ++j)
    for (uint64_t i = 0; i < m; ++i) {
      const float f = float(out[i + j * m]);
      if (ld.type == CUDA_R_32F) {
        static_cast<float*>(D)[i + j * ld.ld] = f;
        continue;
      }
      uint32_t u;  // CUDA_R_16BF: the fp32 result rounded to nearest even (NaN stays NaN)
      std::memcpy(&u, &f, 4);
      const bool nan = (u & 0x7fffffffu) > 0x7f800000u;
      static_cast<uint16_t*>(D)[i + j * ld.ld] =
          uint16_t(nan ? (u >> 16) | 0x40u : (u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    }
}

}  // namespace

size_t cublasLtGetVersion(void) { return 0; }  // the simulator's
cublasStatus_t cublasLtCreate(cublasLtHandle_t* handle) {
  *handle = new cublasLtContext;
  return CUBLAS_STATUS_SUCCESS;
}
const char* cublasLtGetStatusName(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "CUBLAS_STATUS_(other)";
  }
}
const char* cublasLtGetStatusString(cublasStatus_t s) {
  return s == CUBLAS_STATUS_SUCCESS ? "success" : "error in the cuBLASLt simulator";
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* desc, cublasComputeType_t compute,
                                        cudaDataType_t scale) {
  *desc = new cublasLtMatmulDescOpaque{compute, scale};
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t desc,
                                              cublasLtMatmulDescAttributes_t attr,
                                              const void* buf, size_t size) {
  switch (attr) {
    case CUBLASLT_MATMUL_DESC_TRANSA:
    case CUBLASLT_MATMUL_DESC_TRANSB: {
      if (size != sizeof(int32_t)) return CUBLAS_STATUS_INVALID_VALUE;
      int32_t op;
      std::memcpy(&op, buf, 4);
      if (op != CUBLAS_OP_N && op != CUBLAS_OP_T) return CUBLAS_STATUS_INVALID_VALUE;
      (attr == CUBLASLT_MATMUL_DESC_TRANSA ? desc->ta : desc->tb) = cublasOperation_t(op);
      return CUBLAS_STATUS_SUCCESS;
    }
    case CUBLASLT_MATMUL_DESC_EPILOGUE:
      if (size != sizeof(int32_t)) return CUBLAS_STATUS_INVALID_VALUE;
      std::memcpy(&desc->epilogue, buf, 4);
      return CUBLAS_STATUS_SUCCESS;
  }
  return CUBLAS_STATUS_INVALID_VALUE;
}
cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* layout, cudaDataType_t type,
                                          uint64_t rows, uint64_t cols, int64_t ld) {
  *layout = new cublasLtMatrixLayoutOpaque{type, rows, cols, ld};
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t layout,
                                                cublasLtMatrixLayoutAttribute_t attr,
                                                const void* buf, size_t size) {
  if (!layout) return CUBLAS_STATUS_INVALID_VALUE;
  if (attr == CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT && size == sizeof(int32_t)) {
    std::memcpy(&layout->batch, buf, size);
    return layout->batch >= 1 ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
  }
  if (attr == CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET && size == sizeof(int64_t)) {
    std::memcpy(&layout->stride, buf, size);
    return layout->stride >= 0 ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
  }
  return CUBLAS_STATUS_INVALID_VALUE;
}
cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* pref) {
  *pref = new cublasLtMatmulPreferenceOpaque;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref) {
  delete pref;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                                    cublasLtMatmulPreferenceAttributes_t attr,
                                                    const void* buf, size_t size) {
  if (!pref) return CUBLAS_STATUS_INVALID_VALUE;
  if (attr >= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES &&
      attr <= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES && size == sizeof(uint32_t)) {
    std::memcpy(&pref->min_alignment[attr - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES], buf, size);
    return CUBLAS_STATUS_SUCCESS;
  }
  if (attr != CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES || size != sizeof(uint64_t))
    return CUBLAS_STATUS_INVALID_VALUE;
  std::memcpy(&pref->max_workspace, buf, size);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
                                              cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                              cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d,
                                              cublasLtMatmulPreference_t pref, int requested,
                                              cublasLtMatmulHeuristicResult_t results[],
                                              int* returned) {
  if (!handle || !pref || requested < 1) return CUBLAS_STATUS_INVALID_VALUE;
  *returned = 0;
  if (!check(desc, a, b, c, d)) return CUBLAS_STATUS_NOT_SUPPORTED;
  // SIM_CUBLASLT_ALGOS=n: n algorithms (default 1), equal but for speed (see cublasLtMatmul).
  for (int i = 0; i < std::min(requested, sim_algorithms()); ++i) {
    results[i] = {};
    results[i].algo.data[0] = 0x5151;  // the simulator's algorithms
    results[i].algo.data[1] = uint64_t(i);
    for (int m = 0; m < 4; ++m) results[i].algo.data[2 + m] = pref->min_alignment[m];  // needs
    results[i].state = CUBLAS_STATUS_SUCCESS;
    ++*returned;
  }
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
                              const void* alpha_p, const void* A, cublasLtMatrixLayout_t a,
                              const void* B, cublasLtMatrixLayout_t b, const void* beta_p,
                              const void* C, cublasLtMatrixLayout_t c, void* D,
                              cublasLtMatrixLayout_t d, const cublasLtMatmulAlgo_t* algo,
                              void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  if (!handle || !check(desc, a, b, c, d)) return CUBLAS_STATUS_INVALID_VALUE;
  if (algo && (algo->data[0] != 0x5151 || algo->data[1] >= uint64_t(sim_algorithms())))
    return CUBLAS_STATUS_INVALID_VALUE;
  if (algo) {
    const void* operands[4] = {A, B, C, D};
    for (int m = 0; m < 4; ++m)
      if (algo->data[2 + m] > 1 && reinterpret_cast<uintptr_t>(operands[m]) % algo->data[2 + m])
        return CUBLAS_STATUS_NOT_SUPPORTED;  // less aligned than the algorithm needs
  }
  // Algorithm i of n computes the same product, then waits (n − 1 − i) times as long as that
  // took, plus as many ms: the heuristic's first choice is the slowest by a margin that grows
  // with the product (above the noise of a loaded machine), so a timed choice must find the last.
  // SIM_CUBLASLT_FIRST_FASTEST=1: i times instead (the first the fastest).
  const int i = algo ? int(algo->data[1]) : 0;
  const int slower = !algo ? 0 : sim_first_fastest() ? i : sim_algorithms() - 1 - i;
  const uint64_t m = d->rows, n = d->cols;
  const uint64_t k = desc->ta == CUBLAS_OP_N ? a->cols : a->rows;
  const float alpha = *static_cast<const float*>(alpha_p), beta = *static_cast<const float*>(beta_p);
  const auto span = [&](cublasLtMatrixLayout_t l) {  // bytes from the first to the last member's end
    return l->cols == 0 ? 0
                        : (uint64_t(l->batch - 1) * l->stride + (l->cols - 1) * l->ld + l->rows) *
                              elem(l->type);
  };
  const std::vector<sim::Span> operands = {
      {A, k > 0 ? span(a) : 0},
      {B, k > 0 ? span(b) : 0},
      {D, m > 0 && n > 0 ? span(d) : 0},
      {C, beta != 0.0f && m > 0 && n > 0 ? span(c) : 0},
      {workspace, workspace_bytes}};
  for (const sim::Span& o : operands)
    if (o.bytes && !sim::is_device_pointer(o.p, o.bytes))
      sim::fault("cublasLtMatmul: an operand or the workspace is not (all) device memory");
  // Queued like the real call: the operands are read when the stream gets there.
  sim::enqueue(stream, [desc = *desc, la = *a, lb = *b, lc = *c, ld = *d, A, B, C, D, alpha, beta,
                        m, n, k, slower, operands] {
    sim::require_still_allocated(operands, "cublasLtMatmul");
    const auto start = std::chrono::steady_clock::now();
    // Member i of a strided batch: each operand offset by i times its stride (in elements).
    const auto at = [](const void* base, const cublasLtMatrixLayoutOpaque& l, int32_t i) {
      return static_cast<char*>(const_cast<void*>(base)) + i * l.stride * elem(l.type);
    };
    for (int32_t i = 0; i < ld.batch; ++i)
      product(desc, la, lb, lc, ld, at(A, la, i), at(B, lb, i), at(C, lc, i), at(D, ld, i), alpha,
              beta, m, n, k);
    const auto took = std::chrono::steady_clock::now() - start;
    std::this_thread::sleep_for(slower * (took + std::chrono::milliseconds(1)));
  });
  return CUBLAS_STATUS_SUCCESS;
}

// cuDNN's backend (graph) API on the host for the simulator build (see include/cudnn.h): a
// generic interpreter of operation graphs made of matmul, pointwise, reduction and reshape
// operations, from cuDNN's documented semantics. Nothing here knows about attention.
//
//  - Tensors: dims and strides in elements, any rank up to CUDNN_DIM_MAX. A virtual tensor is
//    materialised inside the interpreter at its strides (which must lay it out densely, in any
//    dim order, for a reshape's view to mean something, unless a reshape writes it: then it is
//    that view of its input's memory, gaps and all); every other tensor is bound by
//    its UNIQUE_ID in the variant pack to simulated device memory, except a by-value tensor,
//    whose value is read from the host pointer in the variant pack when cudnnBackendExecute is
//    called (like a kernel argument).
//  - Types: FLOAT, BFLOAT16, INT32, INT64, BOOLEAN (one byte, 0/1). Pointwise math is float;
//    matmul and reduction accumulate in double and round once to float. Every store rounds to
//    the tensor's type (bf16: round to nearest even, virtual tensors included, as on the GPU;
//    int: toward zero; boolean: nonzero → 1).
//  - Broadcasting: an operand dim is the output's or 1. Matmul A [..., M, K] · B [..., K, N] =
//    C [..., M, N]; a batch dim of A is C's or 1, of B a divisor of C's (1, C's, or grouped:
//    batch c of C reads batch c / (C/B) of B, as cuDNN's grouped-query attention graphs rely
//    on). A reduction's output dim is the input's, 1 (reduced), or a divisor (group sums,
//    input i → output i / (in/out): the fold of grouped-query dK/dV). A reshape is the same
//    elements seen through Y's dims and strides (y at element offset o = x at offset o, cast
//    to Y's type): cudnn-frontend's transpose of P and dS in its SDPA backward graph.
//  - Execution: ops run in dependency order of their tensors (whatever order OPS lists them),
//    queued on the handle's stream with sim::enqueue; one engine (global index 0) for every
//    graph the interpreter accepts; SIM_CUDNN_NO_ENGINE=1 offers none, and
//    SIM_CUDNN_DENSE_ONLY=1 refuses a graph with any tensor whose strides leave gaps (a cuDNN
//    that takes only packed layouts).
// NaN propagates through MAX/MIN (pointwise and reduction), so a read of uninitialised
// (NaN-filled) memory shows in the result.
#include <cudnn.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>
#include <vector>

struct cudnnContext {
  cudaStream_t stream = nullptr;
};

namespace {

thread_local std::string last_error;

cudnnStatus_t fail(cudnnStatus_t s, const std::string& why) {
  last_error = "cudnn sim: " + why;
  return s;
}

// The workspace every plan asks for, so that callers are seen to pass one (it is filled with
// 0xFF on each execution: memory aliased with it shows).
constexpr int64_t kWorkspaceBytes = 4096;

bool flag(const char* name) {
  const char* e = std::getenv(name);
  return e && std::strcmp(e, "0") != 0 && *e;
}
bool no_engine() { return flag("SIM_CUDNN_NO_ENGINE"); }

size_t elem_size(cudnnDataType_t t) {
  switch (t) {
    case CUDNN_DATA_FLOAT:
    case CUDNN_DATA_INT32: return 4;
    case CUDNN_DATA_BFLOAT16: return 2;
    case CUDNN_DATA_INT64: return 8;
    case CUDNN_DATA_BOOLEAN: return 1;
    default: return 0;  // not modelled
  }
}

float bf16_round(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if (std::isnan(f))
    u = 0x7FC00000u;
  else
    u = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;  // round to nearest even
  std::memcpy(&f, &u, 4);
  return f;
}

// The value a store of v into a tensor of type t keeps.
float round_to(cudnnDataType_t t, float v) {
  switch (t) {
    case CUDNN_DATA_BFLOAT16: return bf16_round(v);
    case CUDNN_DATA_INT32: return std::isnan(v) ? 0.0f : float(int32_t(v));
    case CUDNN_DATA_INT64: return std::isnan(v) ? 0.0f : float(int64_t(v));
    case CUDNN_DATA_BOOLEAN: return v != 0.0f ? 1.0f : 0.0f;
    default: return v;
  }
}

float load_elem(const char* base, cudnnDataType_t t, int64_t i) {
  switch (t) {
    case CUDNN_DATA_FLOAT: {
      float f;
      std::memcpy(&f, base + 4 * i, 4);
      return f;
    }
    case CUDNN_DATA_BFLOAT16: {
      uint16_t h;
      std::memcpy(&h, base + 2 * i, 2);
      uint32_t u = uint32_t(h) << 16;
      float f;
      std::memcpy(&f, &u, 4);
      return f;
    }
    case CUDNN_DATA_INT32: {
      int32_t v;
      std::memcpy(&v, base + 4 * i, 4);
      return float(v);
    }
    case CUDNN_DATA_INT64: {
      int64_t v;
      std::memcpy(&v, base + 8 * i, 8);
      return float(v);
    }
    case CUDNN_DATA_BOOLEAN: return base[i] != 0 ? 1.0f : 0.0f;
    default: return std::numeric_limits<float>::quiet_NaN();
  }
}

void store_elem(char* base, cudnnDataType_t t, int64_t i, float v) {  // v already rounded
  switch (t) {
    case CUDNN_DATA_FLOAT: std::memcpy(base + 4 * i, &v, 4); break;
    case CUDNN_DATA_BFLOAT16: {
      uint32_t u;
      std::memcpy(&u, &v, 4);
      uint16_t h = uint16_t(u >> 16);
      std::memcpy(base + 2 * i, &h, 2);
      break;
    }
    case CUDNN_DATA_INT32: {
      int32_t x = int32_t(v);
      std::memcpy(base + 4 * i, &x, 4);
      break;
    }
    case CUDNN_DATA_INT64: {
      int64_t x = int64_t(v);
      std::memcpy(base + 8 * i, &x, 8);
      break;
    }
    case CUDNN_DATA_BOOLEAN: base[i] = v != 0.0f; break;
    default: break;
  }
}

// ---- descriptors ------------------------------------------------------------------------

struct TensorInfo {
  int64_t uid = 0, alignment = 0;
  cudnnDataType_t type = CUDNN_DATA_FLOAT;
  std::vector<int64_t> dims, strides;
  bool is_virtual = false, by_value = false;
  bool same_as(const TensorInfo& o) const {
    return uid == o.uid && type == o.type && dims == o.dims && strides == o.strides &&
           is_virtual == o.is_virtual && by_value == o.by_value;
  }
  int64_t count() const {
    int64_t n = 1;
    for (int64_t d : dims) n *= d;
    return n;
  }
  // Elements from the first to one past the last.
  int64_t span() const {
    int64_t last = 0;
    for (size_t d = 0; d < dims.size(); ++d) last += (dims[d] - 1) * strides[d];
    return last + 1;
  }
  size_t span_bytes() const { return size_t(span()) * elem_size(type); }
  // Every offset in [0, count) exactly once: a dense layout in some order of the dims.
  bool dense() const {
    std::vector<std::pair<int64_t, int64_t>> by_stride;  // (stride, dim) of dims > 1
    for (size_t d = 0; d < dims.size(); ++d)
      if (dims[d] > 1) by_stride.push_back({strides[d], dims[d]});
    std::sort(by_stride.begin(), by_stride.end());
    int64_t expect = 1;
    for (auto [stride, dim] : by_stride) {
      if (stride != expect) return false;
      expect *= dim;
    }
    return true;
  }
};

std::string shape(const TensorInfo& t) {
  std::string s = "uid " + std::to_string(t.uid) + " [";
  for (size_t d = 0; d < t.dims.size(); ++d) {
    if (d) s += ',';
    s += std::to_string(t.dims[d]);
  }
  return s + "]";
}

enum class Kind { Pointwise, Matmul, Reduction, Reshape };

// One operation of a graph: inputs (pointwise x, b, t; matmul a, b; reduction and reshape x)
// and output.
struct OpInfo {
  Kind kind;
  int mode = 0;  // cudnnPointwiseMode_t or cudnnReduceTensorOp_t
  int64_t axis = -1;
  std::vector<TensorInfo> in;
  TensorInfo out;
};

// A finalized operation graph: its tensors once each, and its ops in dependency order.
struct Graph {
  struct Node {
    Kind kind;
    int mode;
    int64_t axis;
    std::vector<int> in;
    int out;
  };
  std::vector<TensorInfo> tensors;
  std::vector<Node> nodes;
};

struct Desc {
  const cudnnBackendDescriptorType_t type;
  bool finalized = false;
  explicit Desc(cudnnBackendDescriptorType_t t) : type(t) {}
  virtual ~Desc() = default;
  virtual cudnnStatus_t set(cudnnBackendAttributeName_t, cudnnBackendAttributeType_t, int64_t,
                            const void*) = 0;
  virtual cudnnStatus_t finalize() = 0;
  virtual cudnnStatus_t get(cudnnBackendAttributeName_t a, cudnnBackendAttributeType_t, int64_t,
                            int64_t*, void*) {
    return fail(CUDNN_STATUS_NOT_SUPPORTED,
                "attribute " + std::to_string(a) + " is not readable in the simulator");
  }
};

std::mutex registry_mu;
std::unordered_set<const Desc*> registry;

Desc* lookup(const void* p) {
  std::lock_guard<std::mutex> lock(registry_mu);
  auto it = registry.find(static_cast<const Desc*>(p));
  return it == registry.end() ? nullptr : const_cast<Desc*>(*it);
}

// Attribute values: `want` is the documented type; n the element count.
cudnnStatus_t check_type(cudnnBackendAttributeType_t got, cudnnBackendAttributeType_t want,
                         int64_t n, const void* p, bool array = false) {
  if (got != want)
    return fail(CUDNN_STATUS_BAD_PARAM_ATTRIBUTE_TYPE,
                "attribute type " + std::to_string(got) + ", expected " + std::to_string(want));
  if ((!array && n != 1) || n < 0) return fail(CUDNN_STATUS_BAD_PARAM, "wrong element count");
  if (n > 0 && !p) return fail(CUDNN_STATUS_BAD_PARAM_NULL_POINTER, "null attribute values");
  return CUDNN_STATUS_SUCCESS;
}
template <class T>
cudnnStatus_t take(cudnnBackendAttributeType_t got, cudnnBackendAttributeType_t want, int64_t n,
                   const void* p, T* out) {
  if (cudnnStatus_t s = check_type(got, want, n, p)) return s;
  std::memcpy(out, p, sizeof(T));
  return CUDNN_STATUS_SUCCESS;
}
template <class T>
cudnnStatus_t take_array(cudnnBackendAttributeType_t got, cudnnBackendAttributeType_t want,
                         int64_t n, const void* p, std::vector<T>* out) {
  if (cudnnStatus_t s = check_type(got, want, n, p, true)) return s;
  out->resize(size_t(n));
  if (n) std::memcpy(out->data(), p, size_t(n) * sizeof(T));
  return CUDNN_STATUS_SUCCESS;
}
// A float attribute given as CUDNN_TYPE_FLOAT or CUDNN_TYPE_DOUBLE.
cudnnStatus_t take_real(cudnnBackendAttributeType_t got, int64_t n, const void* p, double* out) {
  if (got == CUDNN_TYPE_DOUBLE) return take(got, CUDNN_TYPE_DOUBLE, n, p, out);
  float f;
  if (cudnnStatus_t s = take(got, CUDNN_TYPE_FLOAT, n, p, &f)) return s;
  *out = f;
  return CUDNN_STATUS_SUCCESS;
}
// A finalized descriptor of type `want` (nullptr allowed when `optional`).
cudnnStatus_t take_desc(cudnnBackendAttributeType_t got, int64_t n, const void* p,
                        cudnnBackendDescriptorType_t want, Desc** out, bool optional = false) {
  cudnnBackendDescriptor_t d;
  if (cudnnStatus_t s = take(got, CUDNN_TYPE_BACKEND_DESCRIPTOR, n, p, &d)) return s;
  if (!d && optional) {
    *out = nullptr;
    return CUDNN_STATUS_SUCCESS;
  }
  Desc* desc = lookup(d);
  if (!desc) return fail(CUDNN_STATUS_BAD_PARAM, "not a live backend descriptor");
  if (desc->type != want)
    return fail(
        CUDNN_STATUS_BAD_PARAM_DESCRIPTOR_TYPE,
        "descriptor of type " + std::to_string(desc->type) + ", expected " + std::to_string(want));
  if (!desc->finalized)
    return fail(CUDNN_STATUS_BAD_PARAM_NOT_FINALIZED, "an attribute descriptor is not finalized");
  *out = desc;
  return CUDNN_STATUS_SUCCESS;
}
template <class T>
cudnnStatus_t put(cudnnBackendAttributeType_t got, cudnnBackendAttributeType_t want,
                  const std::vector<T>& v, int64_t requested, int64_t* count, void* out) {
  if (got != want) return fail(CUDNN_STATUS_BAD_PARAM_ATTRIBUTE_TYPE, "wrong attribute type");
  if (requested < 0 || (requested > 0 && !out))
    return fail(CUDNN_STATUS_BAD_PARAM, "bad requested element count or null output");
  if (count) *count = int64_t(v.size());
  const size_t n = std::min(size_t(requested), v.size());
  if (n) std::memcpy(out, v.data(), n * sizeof(T));
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t unknown_attribute(const char* desc, cudnnBackendAttributeName_t a) {
  return fail(CUDNN_STATUS_BAD_PARAM,
              std::string(desc) + ": attribute " + std::to_string(a) + " is not settable here");
}

struct TensorDesc : Desc {
  TensorInfo t;
  bool has_uid = false, has_type = false, has_dims = false, has_strides = false,
       has_alignment = false;
  TensorDesc() : Desc(CUDNN_BACKEND_TENSOR_DESCRIPTOR) {}
  cudnnStatus_t set(cudnnBackendAttributeName_t a, cudnnBackendAttributeType_t ty, int64_t n,
                    const void* p) override {
    cudnnStatus_t s;
    switch (a) {
      case CUDNN_ATTR_TENSOR_UNIQUE_ID:
        if (!(s = take(ty, CUDNN_TYPE_INT64, n, p, &t.uid))) has_uid = true;
        return s;
      case CUDNN_ATTR_TENSOR_DATA_TYPE:
        if (!(s = take(ty, CUDNN_TYPE_DATA_TYPE, n, p, &t.type))) has_type = true;
        return s;
      case CUDNN_ATTR_TENSOR_DIMENSIONS:
        if (!(s = take_array(ty, CUDNN_TYPE_INT64, n, p, &t.dims))) has_dims = true;
        return s;
      case CUDNN_ATTR_TENSOR_STRIDES:
        if (!(s = take_array(ty, CUDNN_TYPE_INT64, n, p, &t.strides))) has_strides = true;
        return s;
      case CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT:
        if (!(s = take(ty, CUDNN_TYPE_INT64, n, p, &t.alignment))) has_alignment = true;
        return s;
      case CUDNN_ATTR_TENSOR_IS_VIRTUAL: return take(ty, CUDNN_TYPE_BOOLEAN, n, p, &t.is_virtual);
      case CUDNN_ATTR_TENSOR_IS_BY_VALUE: return take(ty, CUDNN_TYPE_BOOLEAN, n, p, &t.by_value);
      case CUDNN_ATTR_TENSOR_REORDERING_MODE: {
        cudnnBackendTensorReordering_t r;
        if ((s = take(ty, CUDNN_TYPE_TENSOR_REORDERING_MODE, n, p, &r))) return s;
        return r == CUDNN_TENSOR_REORDERING_NONE
                   ? CUDNN_STATUS_SUCCESS
                   : fail(CUDNN_STATUS_NOT_SUPPORTED, "tensor reordering is not modelled");
      }
      case CUDNN_ATTR_TENSOR_VECTOR_COUNT: {
        int64_t v;
        if ((s = take(ty, CUDNN_TYPE_INT64, n, p, &v))) return s;
        return v == 1 ? s : fail(CUDNN_STATUS_NOT_SUPPORTED, "vectorised tensors are not modelled");
      }
      default: return unknown_attribute("tensor", a);
    }
  }
  cudnnStatus_t finalize() override {
    if (!has_uid || !has_type || !has_dims || !has_strides || !has_alignment)
      return fail(
          CUDNN_STATUS_BAD_PARAM,
          "tensor: UNIQUE_ID, DATA_TYPE, DIMENSIONS, STRIDES and BYTE_ALIGNMENT are required");
    if (t.dims.empty() || t.dims.size() > CUDNN_DIM_MAX || t.strides.size() != t.dims.size())
      return fail(CUDNN_STATUS_BAD_PARAM, "tensor " + shape(t) + ": bad rank or stride count");
    for (size_t d = 0; d < t.dims.size(); ++d)
      if (t.dims[d] <= 0 || t.strides[d] <= 0)
        return fail(CUDNN_STATUS_BAD_PARAM,
                    "tensor " + shape(t) + ": dims and strides must be > 0");
    if (t.alignment <= 0) return fail(CUDNN_STATUS_BAD_PARAM, "tensor: BYTE_ALIGNMENT must be > 0");
    if (t.is_virtual && t.by_value)
      return fail(CUDNN_STATUS_BAD_PARAM, "tensor: virtual and by-value at once");
    if (!elem_size(t.type))
      return fail(CUDNN_STATUS_NOT_SUPPORTED_DATA_TYPE,
                  "tensor: data type " + std::to_string(t.type) + " is not modelled");
    finalized = true;
    return CUDNN_STATUS_SUCCESS;
  }
  cudnnStatus_t get(cudnnBackendAttributeName_t a, cudnnBackendAttributeType_t ty, int64_t req,
                    int64_t* n, void* out) override {
    switch (a) {
      case CUDNN_ATTR_TENSOR_UNIQUE_ID:
        return put(ty, CUDNN_TYPE_INT64, std::vector{t.uid}, req, n, out);
      case CUDNN_ATTR_TENSOR_DATA_TYPE:
        return put(ty, CUDNN_TYPE_DATA_TYPE, std::vector{t.type}, req, n, out);
      case CUDNN_ATTR_TENSOR_DIMENSIONS: return put(ty, CUDNN_TYPE_INT64, t.dims, req, n, out);
      case CUDNN_ATTR_TENSOR_STRIDES: return put(ty, CUDNN_TYPE_INT64, t.strides, req, n, out);
      default: return Desc::get(a, ty, req, n, out);
    }
  }
};

// Optional tensor attribute of an operation.
cudnnStatus_t take_tensor(cudnnBackendAttributeType_t ty, int64_t n, const void* p,
                          std::unique_ptr<TensorInfo>* out) {
  Desc* d;
  if (cudnnStatus_t s = take_desc(ty, n, p, CUDNN_BACKEND_TENSOR_DESCRIPTOR, &d)) return s;
  *out = std::make_unique<TensorInfo>(static_cast<TensorDesc*>(d)->t);
  return CUDNN_STATUS_SUCCESS;
}

struct PointwiseDesc : Desc {
  cudnnPointwiseMode_t mode{};
  bool has_mode = false;
  cudnnDataType_t math = CUDNN_DATA_FLOAT;
  int64_t axis = -1;
  PointwiseDesc() : Desc(CUDNN_BACKEND_POINTWISE_DESCRIPTOR) {}
  cudnnStatus_t set(cudnnBackendAttributeName_t a, cudnnBackendAttributeType_t ty, int64_t n,
                    const void* p) override {
    double ignored;
    cudnnStatus_t s;
    switch (a) {
      case CUDNN_ATTR_POINTWISE_MODE:
        if (!(s = take(ty, CUDNN_TYPE_POINTWISE_MODE, n, p, &mode))) has_mode = true;
        return s;
      // Math precision: pointwise math is float whatever it says (integers and booleans of
      // index and mask graphs are exact in float).
      case CUDNN_ATTR_POINTWISE_MATH_PREC: return take(ty, CUDNN_TYPE_DATA_TYPE, n, p, &math);
      case CUDNN_ATTR_POINTWISE_AXIS: return take(ty, CUDNN_TYPE_INT64, n, p, &axis);
      case CUDNN_ATTR_POINTWISE_NAN_PROPAGATION: {
        cudnnNanPropagation_t v;
        return take(ty, CUDNN_TYPE_NAN_PROPOGATION, n, p, &v);
      }
      case CUDNN_ATTR_POINTWISE_RELU_LOWER_CLIP:
      case CUDNN_ATTR_POINTWISE_RELU_UPPER_CLIP:
      case CUDNN_ATTR_POINTWISE_RELU_LOWER_CLIP_SLOPE:
      case CUDNN_ATTR_POINTWISE_ELU_ALPHA:
      case CUDNN_ATTR_POINTWISE_SOFTPLUS_BETA:
      case CUDNN_ATTR_POINTWISE_SWISH_BETA:
        return take_real(ty, n, p, &ignored);  // parameters of activation modes (not modelled)
      default: return unknown_attribute("pointwise", a);
    }
  }
  cudnnStatus_t finalize() override {
    if (!has_mode) return fail(CUDNN_STATUS_BAD_PARAM, "pointwise: MODE is required");
    finalized = true;
    return CUDNN_STATUS_SUCCESS;
  }
};

// Inputs each pointwise mode takes (x; x, b; x, b, t), 0 for modes not modelled.
int arity(int mode) {
  switch (mode) {
    case CUDNN_POINTWISE_NEG:
    case CUDNN_POINTWISE_EXP:
    case CUDNN_POINTWISE_LOG:
    case CUDNN_POINTWISE_RECIPROCAL:
    case CUDNN_POINTWISE_SQRT:
    case CUDNN_POINTWISE_RSQRT:
    case CUDNN_POINTWISE_IDENTITY:
    case CUDNN_POINTWISE_ABS:
    case CUDNN_POINTWISE_CEIL:
    case CUDNN_POINTWISE_FLOOR:
    case CUDNN_POINTWISE_SIN:
    case CUDNN_POINTWISE_COS:
    case CUDNN_POINTWISE_TAN:
    case CUDNN_POINTWISE_ERF:
    case CUDNN_POINTWISE_LOGICAL_NOT:
    case CUDNN_POINTWISE_GEN_INDEX: return 1;
    case CUDNN_POINTWISE_ADD:
    case CUDNN_POINTWISE_SUB:
    case CUDNN_POINTWISE_MUL:
    case CUDNN_POINTWISE_DIV:
    case CUDNN_POINTWISE_MAX:
    case CUDNN_POINTWISE_MIN:
    case CUDNN_POINTWISE_POW:
    case CUDNN_POINTWISE_CMP_EQ:
    case CUDNN_POINTWISE_CMP_NEQ:
    case CUDNN_POINTWISE_CMP_GT:
    case CUDNN_POINTWISE_CMP_GE:
    case CUDNN_POINTWISE_CMP_LT:
    case CUDNN_POINTWISE_CMP_LE:
    case CUDNN_POINTWISE_LOGICAL_AND:
    case CUDNN_POINTWISE_LOGICAL_OR: return 2;
    case CUDNN_POINTWISE_BINARY_SELECT: return 3;
    default: return 0;
  }
}

// SIM_CUDNN_SELECT_SWAPPED=1 (read by each cudnnBackendExecute for the graph it queues):
// BINARY_SELECT reads its
// mask the other way round, y = t ? b : x — a cuDNN that computes something else than the
// graph means, for testing callers that check cuDNN's results.
thread_local bool select_swapped = false;  // of the graph this thread is running

// y = op(x[, b[, t]]) in float. BINARY_SELECT: y = t ? x : b (t is the mask; cudnn-frontend's
// masks are "keep" masks: the score x where true, the fill value b where false).
inline float pointwise(int mode, float x, float b, float t) {
  switch (mode) {
    case CUDNN_POINTWISE_NEG: return -x;
    case CUDNN_POINTWISE_EXP: return std::exp(x);
    case CUDNN_POINTWISE_LOG: return std::log(x);
    case CUDNN_POINTWISE_RECIPROCAL: return 1.0f / x;
    case CUDNN_POINTWISE_SQRT: return std::sqrt(x);
    case CUDNN_POINTWISE_RSQRT: return 1.0f / std::sqrt(x);
    case CUDNN_POINTWISE_IDENTITY: return x;
    case CUDNN_POINTWISE_ABS: return std::fabs(x);
    case CUDNN_POINTWISE_CEIL: return std::ceil(x);
    case CUDNN_POINTWISE_FLOOR: return std::floor(x);
    case CUDNN_POINTWISE_SIN: return std::sin(x);
    case CUDNN_POINTWISE_COS: return std::cos(x);
    case CUDNN_POINTWISE_TAN: return std::tan(x);
    case CUDNN_POINTWISE_ERF: return std::erf(x);
    case CUDNN_POINTWISE_LOGICAL_NOT: return x == 0.0f ? 1.0f : 0.0f;
    case CUDNN_POINTWISE_ADD: return x + b;
    case CUDNN_POINTWISE_SUB: return x - b;
    case CUDNN_POINTWISE_MUL: return x * b;
    case CUDNN_POINTWISE_DIV: return x / b;
    case CUDNN_POINTWISE_MAX: return std::isnan(x) || std::isnan(b) ? x + b : std::max(x, b);
    case CUDNN_POINTWISE_MIN: return std::isnan(x) || std::isnan(b) ? x + b : std::min(x, b);
    case CUDNN_POINTWISE_POW: return std::pow(x, b);
    case CUDNN_POINTWISE_CMP_EQ: return x == b;
    case CUDNN_POINTWISE_CMP_NEQ: return x != b;
    case CUDNN_POINTWISE_CMP_GT: return x > b;
    case CUDNN_POINTWISE_CMP_GE: return x >= b;
    case CUDNN_POINTWISE_CMP_LT: return x < b;
    case CUDNN_POINTWISE_CMP_LE: return x <= b;
    case CUDNN_POINTWISE_LOGICAL_AND: return x != 0.0f && b != 0.0f;
    case CUDNN_POINTWISE_LOGICAL_OR: return x != 0.0f || b != 0.0f;
    case CUDNN_POINTWISE_BINARY_SELECT: return (t != 0.0f) != select_swapped ? x : b;
    default: return std::numeric_limits<float>::quiet_NaN();
  }
}

bool broadcasts(const TensorInfo& in, const TensorInfo& out) {
  if (in.dims.size() != out.dims.size()) return false;
  for (size_t d = 0; d < in.dims.size(); ++d)
    if (in.dims[d] != out.dims[d] && in.dims[d] != 1) return false;
  return true;
}

struct OpDesc : Desc {
  OpInfo op;
  using Desc::Desc;
};

struct OpPointwiseDesc : OpDesc {
  std::unique_ptr<TensorInfo> x, b, t, y, dx, dy;
  std::unique_ptr<PointwiseDesc> pw;
  double alpha1 = 1, alpha2 = 1;
  OpPointwiseDesc() : OpDesc(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR) {}
  cudnnStatus_t set(cudnnBackendAttributeName_t a, cudnnBackendAttributeType_t ty, int64_t n,
                    const void* p) override {
    switch (a) {
      case CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR: {
        Desc* d;
        if (cudnnStatus_t s = take_desc(ty, n, p, CUDNN_BACKEND_POINTWISE_DESCRIPTOR, &d)) return s;
        pw = std::make_unique<PointwiseDesc>(*static_cast<PointwiseDesc*>(d));
        return CUDNN_STATUS_SUCCESS;
      }
      case CUDNN_ATTR_OPERATION_POINTWISE_XDESC: return take_tensor(ty, n, p, &x);
      case CUDNN_ATTR_OPERATION_POINTWISE_BDESC: return take_tensor(ty, n, p, &b);
      case CUDNN_ATTR_OPERATION_POINTWISE_TDESC: return take_tensor(ty, n, p, &t);
      case CUDNN_ATTR_OPERATION_POINTWISE_YDESC: return take_tensor(ty, n, p, &y);
      case CUDNN_ATTR_OPERATION_POINTWISE_DXDESC: return take_tensor(ty, n, p, &dx);
      case CUDNN_ATTR_OPERATION_POINTWISE_DYDESC: return take_tensor(ty, n, p, &dy);
      case CUDNN_ATTR_OPERATION_POINTWISE_ALPHA1: return take_real(ty, n, p, &alpha1);
      case CUDNN_ATTR_OPERATION_POINTWISE_ALPHA2: return take_real(ty, n, p, &alpha2);
      default: return unknown_attribute("pointwise operation", a);
    }
  }
  cudnnStatus_t finalize() override {
    if (!pw || !x || !y)
      return fail(CUDNN_STATUS_BAD_PARAM,
                  "pointwise operation: PW_DESCRIPTOR, XDESC and YDESC are required");
    const int k = arity(pw->mode);
    if (k == 0 || dx || dy)
      return fail(CUDNN_STATUS_NOT_SUPPORTED,
                  "pointwise mode " + std::to_string(pw->mode) + " is not modelled");
    if ((k >= 2) != bool(b) || (k == 3) != bool(t))
      return fail(CUDNN_STATUS_BAD_PARAM, "pointwise mode " + std::to_string(pw->mode) + " takes " +
                                              std::to_string(k) + " input(s)");
    // The runtime fusion engines support only alpha1 = alpha2 = 1 (cuDNN's support surface).
    if (alpha1 != 1.0 || alpha2 != 1.0)
      return fail(CUDNN_STATUS_NOT_SUPPORTED, "pointwise ALPHA1/ALPHA2 other than 1");
    op = {Kind::Pointwise, pw->mode, pw->axis, {*x}, *y};
    if (b) op.in.push_back(*b);
    if (t) op.in.push_back(*t);
    for (const TensorInfo& in : op.in)
      if (!broadcasts(in, *y))
        return fail(CUDNN_STATUS_BAD_PARAM,
                    "pointwise: input " + shape(in) + " does not broadcast to output " + shape(*y));
    if (pw->mode == CUDNN_POINTWISE_GEN_INDEX &&
        (pw->axis < 0 || pw->axis >= int64_t(y->dims.size())))
      return fail(CUDNN_STATUS_BAD_PARAM, "GEN_INDEX: AXIS outside the output's dims");
    finalized = true;
    return CUDNN_STATUS_SUCCESS;
  }
};

struct MatmulDesc : Desc {
  bool has_comp = false;
  cudnnDataType_t comp{};
  MatmulDesc() : Desc(CUDNN_BACKEND_MATMUL_DESCRIPTOR) {}
  cudnnStatus_t set(cudnnBackendAttributeName_t a, cudnnBackendAttributeType_t ty, int64_t n,
                    const void* p) override {
    double ignored;
    switch (a) {
      case CUDNN_ATTR_MATMUL_COMP_TYPE: {
        cudnnStatus_t s = take(ty, CUDNN_TYPE_DATA_TYPE, n, p, &comp);
        if (!s) has_comp = true;
        return s;
      }
      case CUDNN_ATTR_MATMUL_PADDING_VALUE:
        return take_real(ty, n, p, &ignored);  // M/N/K overrides only
      default: return unknown_attribute("matmul", a);
    }
  }
  cudnnStatus_t finalize() override {
    if (!has_comp) return fail(CUDNN_STATUS_BAD_PARAM, "matmul: COMP_TYPE is required");
    finalized = true;
    return CUDNN_STATUS_SUCCESS;
  }
};

struct OpMatmulDesc : OpDesc {
  std::unique_ptr<TensorInfo> a, b, c;
  bool has_desc = false, overrides = false;
  OpMatmulDesc() : OpDesc(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR) {}
  cudnnStatus_t set(cudnnBackendAttributeName_t attr, cudnnBackendAttributeType_t ty, int64_t n,
                    const void* p) override {
    Desc* d;
    cudnnStatus_t s;
    switch (attr) {
      case CUDNN_ATTR_OPERATION_MATMUL_ADESC: return take_tensor(ty, n, p, &a);
      case CUDNN_ATTR_OPERATION_MATMUL_BDESC: return take_tensor(ty, n, p, &b);
      case CUDNN_ATTR_OPERATION_MATMUL_CDESC: return take_tensor(ty, n, p, &c);
      case CUDNN_ATTR_OPERATION_MATMUL_DESC:
        if (!(s = take_desc(ty, n, p, CUDNN_BACKEND_MATMUL_DESCRIPTOR, &d))) has_desc = true;
        return s;
      case CUDNN_ATTR_OPERATION_MATMUL_GEMM_M_OVERRIDE_DESC:
      case CUDNN_ATTR_OPERATION_MATMUL_GEMM_N_OVERRIDE_DESC:
      case CUDNN_ATTR_OPERATION_MATMUL_GEMM_K_OVERRIDE_DESC:
        if (!(s = take_desc(ty, n, p, CUDNN_BACKEND_TENSOR_DESCRIPTOR, &d, true)) && d)
          overrides = true;
        return s;
      default: return unknown_attribute("matmul operation", attr);
    }
  }
  cudnnStatus_t finalize() override {
    if (!a || !b || !c || !has_desc)
      return fail(CUDNN_STATUS_BAD_PARAM,
                  "matmul operation: ADESC, BDESC, CDESC and DESC are required");
    if (overrides)
      return fail(CUDNN_STATUS_NOT_SUPPORTED,
                  "matmul M/N/K overrides (ragged sequences) are not modelled");
    const size_t r = c->dims.size();
    if (r < 2 || a->dims.size() != r || b->dims.size() != r)
      return fail(CUDNN_STATUS_BAD_PARAM, "matmul: A, B and C need the same rank >= 2");
    const int64_t m = c->dims[r - 2], nn = c->dims[r - 1], k = a->dims[r - 1];
    if (a->dims[r - 2] != m || b->dims[r - 2] != k || b->dims[r - 1] != nn)
      return fail(CUDNN_STATUS_BAD_PARAM,
                  "matmul: A " + shape(*a) + " · B " + shape(*b) + " does not give C " + shape(*c));
    for (size_t d = 0; d + 2 < r; ++d) {
      const int64_t ca = a->dims[d], cb = b->dims[d], cc = c->dims[d];
      if ((ca != cc && ca != 1) || cc % cb != 0 || std::max(ca, cb) != cc)
        return fail(CUDNN_STATUS_BAD_PARAM, "matmul: batch dim " + std::to_string(d) + " of A " +
                                                shape(*a) + ", B " + shape(*b) + ", C " +
                                                shape(*c) + " does not broadcast");
    }
    op = {Kind::Matmul, 0, -1, {*a, *b}, *c};
    finalized = true;
    return CUDNN_STATUS_SUCCESS;
  }
};

struct ReductionDesc : Desc {
  bool has_op = false;
  cudnnReduceTensorOp_t reduce{};
  ReductionDesc() : Desc(CUDNN_BACKEND_REDUCTION_DESCRIPTOR) {}
  cudnnStatus_t set(cudnnBackendAttributeName_t a, cudnnBackendAttributeType_t ty, int64_t n,
                    const void* p) override {
    cudnnDataType_t comp;
    bool det;
    switch (a) {
      case CUDNN_ATTR_REDUCTION_OPERATOR: {
        cudnnStatus_t s = take(ty, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, n, p, &reduce);
        if (!s) has_op = true;
        return s;
      }
      case CUDNN_ATTR_REDUCTION_COMP_TYPE: return take(ty, CUDNN_TYPE_DATA_TYPE, n, p, &comp);
      case CUDNN_ATTR_REDUCTION_IS_DETERMINISTIC: return take(ty, CUDNN_TYPE_BOOLEAN, n, p, &det);
      default: return unknown_attribute("reduction", a);
    }
  }
  cudnnStatus_t finalize() override {
    if (!has_op) return fail(CUDNN_STATUS_BAD_PARAM, "reduction: OPERATOR is required");
    if (reduce > CUDNN_REDUCE_TENSOR_NORM2 || reduce < 0)
      return fail(CUDNN_STATUS_NOT_SUPPORTED,
                  "reduction operator " + std::to_string(reduce) + " is not modelled");
    finalized = true;
    return CUDNN_STATUS_SUCCESS;
  }
};

struct OpReductionDesc : OpDesc {
  std::unique_ptr<TensorInfo> x, y;
  int reduce = -1;
  OpReductionDesc() : OpDesc(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR) {}
  cudnnStatus_t set(cudnnBackendAttributeName_t a, cudnnBackendAttributeType_t ty, int64_t n,
                    const void* p) override {
    switch (a) {
      case CUDNN_ATTR_OPERATION_REDUCTION_XDESC: return take_tensor(ty, n, p, &x);
      case CUDNN_ATTR_OPERATION_REDUCTION_YDESC: return take_tensor(ty, n, p, &y);
      case CUDNN_ATTR_OPERATION_REDUCTION_DESC: {
        Desc* d;
        if (cudnnStatus_t s = take_desc(ty, n, p, CUDNN_BACKEND_REDUCTION_DESCRIPTOR, &d)) return s;
        reduce = static_cast<ReductionDesc*>(d)->reduce;
        return CUDNN_STATUS_SUCCESS;
      }
      default: return unknown_attribute("reduction operation", a);
    }
  }
  cudnnStatus_t finalize() override {
    if (!x || !y || reduce < 0)
      return fail(CUDNN_STATUS_BAD_PARAM,
                  "reduction operation: XDESC, YDESC and DESC are required");
    if (x->dims.size() != y->dims.size())
      return fail(CUDNN_STATUS_BAD_PARAM, "reduction: X and Y need the same rank");
    for (size_t d = 0; d < x->dims.size(); ++d)
      if (x->dims[d] % y->dims[d] != 0)
        return fail(CUDNN_STATUS_BAD_PARAM, "reduction: Y " + shape(*y) + " is not X " + shape(*x) +
                                                " with dims reduced to 1 (or to a divisor)");
    op = {Kind::Reduction, reduce, -1, {*x}, *y};
    finalized = true;
    return CUDNN_STATUS_SUCCESS;
  }
};

struct OpReshapeDesc : OpDesc {
  std::unique_ptr<TensorInfo> x, y;
  OpReshapeDesc() : OpDesc(CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR) {}
  cudnnStatus_t set(cudnnBackendAttributeName_t a, cudnnBackendAttributeType_t ty, int64_t n,
                    const void* p) override {
    switch (a) {
      case CUDNN_ATTR_OPERATION_RESHAPE_XDESC: return take_tensor(ty, n, p, &x);
      case CUDNN_ATTR_OPERATION_RESHAPE_YDESC: return take_tensor(ty, n, p, &y);
      default: return unknown_attribute("reshape operation", a);
    }
  }
  cudnnStatus_t finalize() override {
    if (!x || !y)
      return fail(CUDNN_STATUS_BAD_PARAM, "reshape operation: XDESC and YDESC are required");
    if (x->count() != y->count() || x->span() != y->span())
      return fail(CUDNN_STATUS_BAD_PARAM,
                  "reshape: Y " + shape(*y) + " does not cover the elements of X " + shape(*x));
    op = {Kind::Reshape, 0, -1, {*x}, *y};
    finalized = true;
    return CUDNN_STATUS_SUCCESS;
  }
};

struct OpGraphDesc : Desc {
  std::vector<OpInfo> ops;
  std::shared_ptr<const Graph> graph;
  OpGraphDesc() : Desc(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR) {}
  cudnnStatus_t set(cudnnBackendAttributeName_t a, cudnnBackendAttributeType_t ty, int64_t n,
                    const void* p) override {
    switch (a) {
      case CUDNN_ATTR_OPERATIONGRAPH_HANDLE: {
        cudnnHandle_t h;
        return take(ty, CUDNN_TYPE_HANDLE, n, p, &h);
      }
      case CUDNN_ATTR_OPERATIONGRAPH_OPS: {
        std::vector<cudnnBackendDescriptor_t> ds;
        if (cudnnStatus_t s = take_array(ty, CUDNN_TYPE_BACKEND_DESCRIPTOR, n, p, &ds)) return s;
        ops.clear();
        for (cudnnBackendDescriptor_t d : ds) {
          Desc* desc = lookup(d);
          if (!desc) return fail(CUDNN_STATUS_BAD_PARAM, "OPS: not a live backend descriptor");
          if (desc->type != CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR &&
              desc->type != CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR &&
              desc->type != CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR &&
              desc->type != CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR)
            return fail(CUDNN_STATUS_NOT_SUPPORTED,
                        "OPS: operation type " + std::to_string(desc->type) + " is not modelled");
          if (!desc->finalized)
            return fail(CUDNN_STATUS_BAD_PARAM_NOT_FINALIZED, "OPS: an operation is not finalized");
          ops.push_back(static_cast<OpDesc*>(desc)->op);
        }
        return CUDNN_STATUS_SUCCESS;
      }
      case CUDNN_ATTR_OPERATIONGRAPH_IS_DYNAMIC_SHAPE_ENABLED: {
        bool v;
        cudnnStatus_t s = take(ty, CUDNN_TYPE_BOOLEAN, n, p, &v);
        return s || !v ? s : fail(CUDNN_STATUS_NOT_SUPPORTED, "dynamic shapes are not modelled");
      }
      default: return unknown_attribute("operation graph", a);
    }
  }
  cudnnStatus_t finalize() override;
  cudnnStatus_t get(cudnnBackendAttributeName_t a, cudnnBackendAttributeType_t ty, int64_t req,
                    int64_t* n, void* out) override {
    if (a == CUDNN_ATTR_OPERATIONGRAPH_ENGINE_GLOBAL_COUNT)
      return put(ty, CUDNN_TYPE_INT64, std::vector<int64_t>{no_engine() ? 0 : 1}, req, n, out);
    return Desc::get(a, ty, req, n, out);
  }
};

// Tensors once each by UNIQUE_ID (the same uid must describe the same tensor), every virtual
// tensor produced by exactly one op, and the ops sorted so that each runs after the producers
// of its inputs (Kahn's algorithm; a cycle is an error).
cudnnStatus_t OpGraphDesc::finalize() {
  if (ops.empty()) return fail(CUDNN_STATUS_BAD_PARAM, "operation graph: OPS is required");
  auto g = std::make_shared<Graph>();
  std::map<int64_t, int> index;
  auto intern = [&](const TensorInfo& t, int* out) {
    auto [it, fresh] = index.emplace(t.uid, int(g->tensors.size()));
    if (fresh)
      g->tensors.push_back(t);
    else if (!g->tensors[it->second].same_as(t))
      return fail(CUDNN_STATUS_BAD_PARAM,
                  "operation graph: two different tensors have UNIQUE_ID " + std::to_string(t.uid));
    *out = it->second;
    return CUDNN_STATUS_SUCCESS;
  };
  std::vector<Graph::Node> nodes;
  for (const OpInfo& op : ops) {
    Graph::Node nd{op.kind, op.mode, op.axis, {}, -1};
    for (const TensorInfo& t : op.in) {
      int i;
      if (cudnnStatus_t s = intern(t, &i)) return s;
      nd.in.push_back(i);
    }
    if (cudnnStatus_t s = intern(op.out, &nd.out)) return s;
    nodes.push_back(nd);
  }
  std::vector<int> producer(g->tensors.size(), -1);
  for (size_t o = 0; o < nodes.size(); ++o) {
    const TensorInfo& out = g->tensors[nodes[o].out];
    if (producer[nodes[o].out] >= 0)
      return fail(CUDNN_STATUS_BAD_PARAM,
                  "operation graph: tensor " + shape(out) + " is written by two ops");
    if (out.by_value)
      return fail(CUDNN_STATUS_BAD_PARAM,
                  "operation graph: by-value tensor " + shape(out) + " is an output");
    producer[nodes[o].out] = int(o);
  }
  for (size_t t = 0; t < g->tensors.size(); ++t) {
    if (g->tensors[t].is_virtual && producer[t] < 0)
      return fail(CUDNN_STATUS_BAD_PARAM, "operation graph: virtual tensor " +
                                              shape(g->tensors[t]) +
                                              " is read but no op writes it");
    if (g->tensors[t].is_virtual && !g->tensors[t].dense() &&
        nodes[size_t(producer[t])].kind != Kind::Reshape)
      return fail(CUDNN_STATUS_BAD_PARAM, "operation graph: virtual tensor " +
                                              shape(g->tensors[t]) +
                                              " has strides that overlap or leave gaps");
    if (flag("SIM_CUDNN_DENSE_ONLY") && !g->tensors[t].dense())
      return fail(CUDNN_STATUS_NOT_SUPPORTED, "operation graph: tensor " + shape(g->tensors[t]) +
                                                  " has strides with gaps (SIM_CUDNN_DENSE_ONLY)");
  }
  std::vector<int> waiting(nodes.size(), 0);
  std::vector<std::vector<int>> consumers(g->tensors.size());
  for (size_t o = 0; o < nodes.size(); ++o)
    for (int i : nodes[o].in)
      if (producer[i] >= 0) {
        ++waiting[o];
        consumers[i].push_back(int(o));
      }
  std::vector<int> ready;
  for (size_t o = 0; o < nodes.size(); ++o)
    if (!waiting[o]) ready.push_back(int(o));
  for (size_t r = 0; r < ready.size(); ++r) {
    g->nodes.push_back(nodes[ready[r]]);
    for (int c : consumers[nodes[ready[r]].out])
      if (--waiting[c] == 0) ready.push_back(c);
  }
  if (g->nodes.size() != nodes.size())
    return fail(CUDNN_STATUS_BAD_PARAM, "operation graph: the ops form a cycle");
  graph = g;
  finalized = true;
  return CUDNN_STATUS_SUCCESS;
}

struct EngineDesc : Desc {
  std::shared_ptr<const Graph> graph;
  int64_t index = -1;
  EngineDesc() : Desc(CUDNN_BACKEND_ENGINE_DESCRIPTOR) {}
  cudnnStatus_t set(cudnnBackendAttributeName_t a, cudnnBackendAttributeType_t ty, int64_t n,
                    const void* p) override {
    switch (a) {
      case CUDNN_ATTR_ENGINE_OPERATION_GRAPH: {
        Desc* d;
        if (cudnnStatus_t s = take_desc(ty, n, p, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, &d))
          return s;
        graph = static_cast<OpGraphDesc*>(d)->graph;
        return CUDNN_STATUS_SUCCESS;
      }
      case CUDNN_ATTR_ENGINE_GLOBAL_INDEX: return take(ty, CUDNN_TYPE_INT64, n, p, &index);
      case CUDNN_ATTR_ENGINE_SM_COUNT_TARGET: {
        int32_t v;
        return take(ty, CUDNN_TYPE_INT32, n, p, &v);
      }
      default: return unknown_attribute("engine", a);
    }
  }
  cudnnStatus_t finalize() override {
    if (!graph || index < 0)
      return fail(CUDNN_STATUS_BAD_PARAM, "engine: OPERATION_GRAPH and GLOBAL_INDEX are required");
    if (index != 0 || no_engine())
      return fail(CUDNN_STATUS_NOT_SUPPORTED,
                  "engine " + std::to_string(index) +
                      " does not support this graph (SIM_CUDNN_NO_ENGINE?)");
    finalized = true;
    return CUDNN_STATUS_SUCCESS;
  }
  cudnnStatus_t get(cudnnBackendAttributeName_t a, cudnnBackendAttributeType_t ty, int64_t req,
                    int64_t* n, void* out) override {
    if (a == CUDNN_ATTR_ENGINE_GLOBAL_INDEX)
      return put(ty, CUDNN_TYPE_INT64, std::vector{index}, req, n, out);
    return Desc::get(a, ty, req, n, out);
  }
};

struct EngineCfgDesc : Desc {
  std::shared_ptr<const Graph> graph;
  EngineCfgDesc() : Desc(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR) {}
  cudnnStatus_t set(cudnnBackendAttributeName_t a, cudnnBackendAttributeType_t ty, int64_t n,
                    const void* p) override {
    switch (a) {
      case CUDNN_ATTR_ENGINECFG_ENGINE: {
        Desc* d;
        if (cudnnStatus_t s = take_desc(ty, n, p, CUDNN_BACKEND_ENGINE_DESCRIPTOR, &d)) return s;
        graph = static_cast<EngineDesc*>(d)->graph;
        return CUDNN_STATUS_SUCCESS;
      }
      case CUDNN_ATTR_ENGINECFG_KNOB_CHOICES: {  // accepted; the one engine has no knobs
        std::vector<cudnnBackendDescriptor_t> ds;
        return take_array(ty, CUDNN_TYPE_BACKEND_DESCRIPTOR, n, p, &ds);
      }
      default: return unknown_attribute("engine config", a);
    }
  }
  cudnnStatus_t finalize() override {
    if (!graph) return fail(CUDNN_STATUS_BAD_PARAM, "engine config: ENGINE is required");
    finalized = true;
    return CUDNN_STATUS_SUCCESS;
  }
  cudnnStatus_t get(cudnnBackendAttributeName_t a, cudnnBackendAttributeType_t ty, int64_t req,
                    int64_t* n, void* out) override {
    if (a == CUDNN_ATTR_ENGINECFG_WORKSPACE_SIZE)
      return put(ty, CUDNN_TYPE_INT64, std::vector{kWorkspaceBytes}, req, n, out);
    return Desc::get(a, ty, req, n, out);
  }
};

struct EngineHeurDesc : Desc {
  std::shared_ptr<const Graph> graph;
  bool has_mode = false;
  EngineHeurDesc() : Desc(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR) {}
  cudnnStatus_t set(cudnnBackendAttributeName_t a, cudnnBackendAttributeType_t ty, int64_t n,
                    const void* p) override {
    switch (a) {
      case CUDNN_ATTR_ENGINEHEUR_MODE: {
        cudnnBackendHeurMode_t m;
        cudnnStatus_t s = take(ty, CUDNN_TYPE_HEUR_MODE, n, p, &m);
        if (!s) has_mode = true;
        return s;
      }
      case CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH: {
        Desc* d;
        if (cudnnStatus_t s = take_desc(ty, n, p, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, &d))
          return s;
        graph = static_cast<OpGraphDesc*>(d)->graph;
        return CUDNN_STATUS_SUCCESS;
      }
      case CUDNN_ATTR_ENGINEHEUR_SM_COUNT_TARGET: {
        int32_t v;
        return take(ty, CUDNN_TYPE_INT32, n, p, &v);
      }
      default: return unknown_attribute("engine heuristics", a);
    }
  }
  cudnnStatus_t finalize() override {
    if (!graph || !has_mode)
      return fail(CUDNN_STATUS_BAD_PARAM,
                  "engine heuristics: MODE and OPERATION_GRAPH are required");
    finalized = true;
    return CUDNN_STATUS_SUCCESS;
  }
  // RESULTS: the caller's ENGINECFG descriptors are filled in (and finalized), best first.
  cudnnStatus_t get(cudnnBackendAttributeName_t a, cudnnBackendAttributeType_t ty, int64_t req,
                    int64_t* n, void* out) override {
    if (a != CUDNN_ATTR_ENGINEHEUR_RESULTS) return Desc::get(a, ty, req, n, out);
    if (ty != CUDNN_TYPE_BACKEND_DESCRIPTOR)
      return fail(CUDNN_STATUS_BAD_PARAM_ATTRIBUTE_TYPE, "RESULTS are backend descriptors");
    if (req < 0 || (req > 0 && !out)) return fail(CUDNN_STATUS_BAD_PARAM, "bad RESULTS request");
    const int64_t available = no_engine() ? 0 : 1;
    for (int64_t i = 0; i < std::min(req, available); ++i) {
      Desc* d = lookup(static_cast<cudnnBackendDescriptor_t*>(out)[i]);
      if (!d || d->type != CUDNN_BACKEND_ENGINECFG_DESCRIPTOR)
        return fail(CUDNN_STATUS_BAD_PARAM, "RESULTS: pass ENGINECFG descriptors to fill");
      auto* cfg = static_cast<EngineCfgDesc*>(d);
      cfg->graph = graph;
      cfg->finalized = true;
    }
    if (n) *n = available;
    return CUDNN_STATUS_SUCCESS;
  }
};

struct PlanDesc : Desc {
  std::shared_ptr<const Graph> graph;
  PlanDesc() : Desc(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR) {}
  cudnnStatus_t set(cudnnBackendAttributeName_t a, cudnnBackendAttributeType_t ty, int64_t n,
                    const void* p) override {
    switch (a) {
      case CUDNN_ATTR_EXECUTION_PLAN_HANDLE: {
        cudnnHandle_t h;
        return take(ty, CUDNN_TYPE_HANDLE, n, p, &h);
      }
      case CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG: {
        Desc* d;
        if (cudnnStatus_t s = take_desc(ty, n, p, CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, &d)) return s;
        graph = static_cast<EngineCfgDesc*>(d)->graph;
        return CUDNN_STATUS_SUCCESS;
      }
      default: return unknown_attribute("execution plan", a);
    }
  }
  cudnnStatus_t finalize() override {
    if (!graph) return fail(CUDNN_STATUS_BAD_PARAM, "execution plan: ENGINE_CONFIG is required");
    if (no_engine()) return fail(CUDNN_STATUS_NOT_SUPPORTED, "no engine (SIM_CUDNN_NO_ENGINE)");
    finalized = true;
    return CUDNN_STATUS_SUCCESS;
  }
  cudnnStatus_t get(cudnnBackendAttributeName_t a, cudnnBackendAttributeType_t ty, int64_t req,
                    int64_t* n, void* out) override {
    if (a == CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE)
      return put(ty, CUDNN_TYPE_INT64, std::vector{kWorkspaceBytes}, req, n, out);
    return Desc::get(a, ty, req, n, out);
  }
};

struct VariantPackDesc : Desc {
  std::vector<int64_t> uids;
  std::vector<void*> ptrs;
  void* workspace = nullptr;
  VariantPackDesc() : Desc(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR) {}
  cudnnStatus_t set(cudnnBackendAttributeName_t a, cudnnBackendAttributeType_t ty, int64_t n,
                    const void* p) override {
    switch (a) {
      case CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS: return take_array(ty, CUDNN_TYPE_INT64, n, p, &uids);
      case CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS:
        return take_array(ty, CUDNN_TYPE_VOID_PTR, n, p, &ptrs);
      case CUDNN_ATTR_VARIANT_PACK_WORKSPACE:
        return take(ty, CUDNN_TYPE_VOID_PTR, n, p, &workspace);
      case CUDNN_ATTR_VARIANT_PACK_INTERMEDIATES: {
        std::vector<void*> v;
        if (cudnnStatus_t s = take_array(ty, CUDNN_TYPE_VOID_PTR, n, p, &v)) return s;
        return v.empty() ? CUDNN_STATUS_SUCCESS
                         : fail(CUDNN_STATUS_NOT_SUPPORTED,
                                "variant pack intermediates are not modelled");
      }
      default: return unknown_attribute("variant pack", a);
    }
  }
  cudnnStatus_t finalize() override {
    if (uids.size() != ptrs.size())
      return fail(CUDNN_STATUS_BAD_PARAM, "variant pack: as many UNIQUE_IDS as DATA_POINTERS");
    std::vector<int64_t> sorted = uids;
    std::sort(sorted.begin(), sorted.end());
    if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end())
      return fail(CUDNN_STATUS_BAD_PARAM, "variant pack: a UNIQUE_ID appears twice");
    finalized = true;
    return CUDNN_STATUS_SUCCESS;
  }
};

// ---- the interpreter ----------------------------------------------------------------------

// A tensor's storage during one execution: device memory at the tensor's strides, or (virtual
// and by-value tensors) a float buffer at the tensor's strides holding values already rounded
// to the type.
struct Storage {
  char* base = nullptr;
  std::vector<float> own;
  cudnnDataType_t type = CUDNN_DATA_FLOAT;
  std::vector<int64_t> strides;
  float load(int64_t off) const { return base ? load_elem(base, type, off) : own[size_t(off)]; }
  void store(int64_t off, float v) {
    v = round_to(type, v);
    if (base)
      store_elem(base, type, off, v);
    else
      own[size_t(off)] = v;
  }
};

std::vector<int64_t> dense_strides(const std::vector<int64_t>& dims) {
  std::vector<int64_t> s(dims.size(), 1);
  for (size_t d = dims.size(); d-- > 1;) s[d - 1] = s[d] * dims[d];
  return s;
}

// Steps idx through the dims (last fastest); false after the last element.
bool next(std::vector<int64_t>& idx, const std::vector<int64_t>& dims, size_t rank) {
  for (size_t d = rank; d-- > 0;) {
    if (++idx[d] < dims[d]) return true;
    idx[d] = 0;
  }
  return false;
}

// Offset of output index idx in an operand with `dims` / `strides`, broadcast along size-1
// dims and grouped along dims that divide the output's (index i → i / (out / in)).
int64_t offset_of(const std::vector<int64_t>& idx, const std::vector<int64_t>& out_dims,
                  const TensorInfo& t, const std::vector<int64_t>& strides, size_t rank) {
  int64_t off = 0;
  for (size_t d = 0; d < rank; ++d) off += idx[d] / (out_dims[d] / t.dims[d]) * strides[d];
  return off;
}

void run_pointwise(const Graph::Node& n, const Graph& g, std::vector<Storage>& st) {
  const TensorInfo& y = g.tensors[n.out];
  const size_t rank = y.dims.size();
  std::vector<int64_t> idx(rank, 0);
  Storage& out = st[n.out];
  const size_t k = n.in.size();
  do {
    float v[3] = {0, 0, 0};
    for (size_t i = 0; i < k; ++i) {
      const TensorInfo& t = g.tensors[n.in[i]];
      v[i] = st[n.in[i]].load(offset_of(idx, y.dims, t, st[n.in[i]].strides, rank));
    }
    const float r = n.mode == CUDNN_POINTWISE_GEN_INDEX ? float(idx[size_t(n.axis)])
                                                        : pointwise(n.mode, v[0], v[1], v[2]);
    out.store(offset_of(idx, y.dims, y, out.strides, rank), r);
  } while (next(idx, y.dims, rank));
}

// C[b, i, j] = Σ_p A[b, i, p] · B[b', p, j], b' the (broadcast or grouped) batch of B; each
// batch's panels are first copied to dense float (A row-major, B transposed).
void run_matmul(const Graph::Node& n, const Graph& g, std::vector<Storage>& st) {
  const TensorInfo &ta = g.tensors[n.in[0]], &tb = g.tensors[n.in[1]], &tc = g.tensors[n.out];
  const Storage &A = st[n.in[0]], &B = st[n.in[1]];
  Storage& C = st[n.out];
  const size_t r = tc.dims.size(), nb = r - 2;
  const int64_t m = tc.dims[r - 2], nn = tc.dims[r - 1], k = ta.dims[r - 1];
  std::vector<float> pa(size_t(m * k)), pb(size_t(nn * k));
  std::vector<int64_t> idx(r, 0);
  do {
    const int64_t a0 = offset_of(idx, tc.dims, ta, A.strides, nb);
    const int64_t b0 = offset_of(idx, tc.dims, tb, B.strides, nb);
    const int64_t c0 = offset_of(idx, tc.dims, tc, C.strides, nb);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t p = 0; p < k; ++p)
        pa[size_t(i * k + p)] = A.load(a0 + i * A.strides[r - 2] + p * A.strides[r - 1]);
    for (int64_t j = 0; j < nn; ++j)
      for (int64_t p = 0; p < k; ++p)
        pb[size_t(j * k + p)] = B.load(b0 + p * B.strides[r - 2] + j * B.strides[r - 1]);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < nn; ++j) {
        const float *x = &pa[size_t(i * k)], *w = &pb[size_t(j * k)];
        double s = 0;
        for (int64_t p = 0; p < k; ++p) s += double(x[p]) * double(w[p]);
        C.store(c0 + i * C.strides[r - 2] + j * C.strides[r - 1], float(s));
      }
  } while (nb > 0 && next(idx, tc.dims, nb));
}

// y[o] = reduce over the x[i] with i / (x / y) == o per dim (y's dim 1: all of x's).
void run_reduction(const Graph::Node& n, const Graph& g, std::vector<Storage>& st) {
  const TensorInfo &tx = g.tensors[n.in[0]], &ty = g.tensors[n.out];
  const Storage& X = st[n.in[0]];
  Storage& Y = st[n.out];
  const size_t rank = tx.dims.size();
  const int mode = n.mode;
  double init = 0;
  if (mode == CUDNN_REDUCE_TENSOR_MUL) init = 1;
  if (mode == CUDNN_REDUCE_TENSOR_MAX) init = -std::numeric_limits<double>::infinity();
  if (mode == CUDNN_REDUCE_TENSOR_MIN) init = std::numeric_limits<double>::infinity();
  std::vector<double> acc(size_t(ty.count()), init);
  const std::vector<int64_t> dense = dense_strides(ty.dims);
  std::vector<int64_t> idx(rank, 0);
  do {
    int64_t o = 0, xo = 0;
    for (size_t d = 0; d < rank; ++d) {
      o += idx[d] / (tx.dims[d] / ty.dims[d]) * dense[d];
      xo += idx[d] * X.strides[d];
    }
    const double v = X.load(xo);
    double& a = acc[size_t(o)];
    switch (mode) {
      case CUDNN_REDUCE_TENSOR_ADD:
      case CUDNN_REDUCE_TENSOR_AVG: a += v; break;
      case CUDNN_REDUCE_TENSOR_MUL: a *= v; break;
      case CUDNN_REDUCE_TENSOR_MAX:
        a = std::isnan(v) || std::isnan(a) ? a + v : std::max(a, v);
        break;
      case CUDNN_REDUCE_TENSOR_MIN:
        a = std::isnan(v) || std::isnan(a) ? a + v : std::min(a, v);
        break;
      case CUDNN_REDUCE_TENSOR_AMAX:
        a = std::isnan(v) || std::isnan(a) ? a + v : std::max(a, std::fabs(v));
        break;
      case CUDNN_REDUCE_TENSOR_NORM1: a += std::fabs(v); break;
      case CUDNN_REDUCE_TENSOR_NORM2: a += v * v; break;
    }
  } while (next(idx, tx.dims, rank));
  const double per_output = double(tx.count()) / double(ty.count());
  std::vector<int64_t> oi(rank, 0);
  do {
    double a = acc[size_t(offset_of(oi, ty.dims, ty, dense, rank))];
    if (mode == CUDNN_REDUCE_TENSOR_AVG) a /= per_output;
    if (mode == CUDNN_REDUCE_TENSOR_NORM2) a = std::sqrt(a);
    Y.store(offset_of(oi, ty.dims, ty, Y.strides, rank), float(a));
  } while (next(oi, ty.dims, rank));
}

// y at element offset o (of y's index) = x at offset o: the same memory seen through y.
void run_reshape(const Graph::Node& n, const Graph& g, std::vector<Storage>& st) {
  const TensorInfo& ty = g.tensors[n.out];
  const Storage& X = st[n.in[0]];
  Storage& Y = st[n.out];
  const size_t rank = ty.dims.size();
  std::vector<int64_t> idx(rank, 0);
  do {
    const int64_t o = offset_of(idx, ty.dims, ty, Y.strides, rank);
    Y.store(o, X.load(o));
  } while (next(idx, ty.dims, rank));
}

void run_graph(const Graph& g, std::vector<Storage>& st) {
  for (const Graph::Node& n : g.nodes) {
    if (n.kind == Kind::Pointwise)
      run_pointwise(n, g, st);
    else if (n.kind == Kind::Matmul)
      run_matmul(n, g, st);
    else if (n.kind == Kind::Reduction)
      run_reduction(n, g, st);
    else
      run_reshape(n, g, st);
  }
}

Desc* make(cudnnBackendDescriptorType_t t) {
  switch (t) {
    case CUDNN_BACKEND_TENSOR_DESCRIPTOR: return new TensorDesc;
    case CUDNN_BACKEND_POINTWISE_DESCRIPTOR: return new PointwiseDesc;
    case CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR: return new OpPointwiseDesc;
    case CUDNN_BACKEND_MATMUL_DESCRIPTOR: return new MatmulDesc;
    case CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR: return new OpMatmulDesc;
    case CUDNN_BACKEND_REDUCTION_DESCRIPTOR: return new ReductionDesc;
    case CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR: return new OpReductionDesc;
    case CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR: return new OpReshapeDesc;
    case CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR: return new OpGraphDesc;
    case CUDNN_BACKEND_ENGINE_DESCRIPTOR: return new EngineDesc;
    case CUDNN_BACKEND_ENGINECFG_DESCRIPTOR: return new EngineCfgDesc;
    case CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR: return new EngineHeurDesc;
    case CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR: return new PlanDesc;
    case CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR: return new VariantPackDesc;
    default: return nullptr;
  }
}

}  // namespace

extern "C" {

size_t cudnnGetVersion(void) { return CUDNN_VERSION; }

const char* cudnnGetErrorString(cudnnStatus_t s) {
  switch (s) {
    case CUDNN_STATUS_SUCCESS: return "CUDNN_STATUS_SUCCESS";
    case CUDNN_STATUS_NOT_INITIALIZED: return "CUDNN_STATUS_NOT_INITIALIZED";
    case CUDNN_STATUS_BAD_PARAM: return "CUDNN_STATUS_BAD_PARAM";
    case CUDNN_STATUS_BAD_PARAM_NULL_POINTER: return "CUDNN_STATUS_BAD_PARAM_NULL_POINTER";
    case CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER:
      return "CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER";
    case CUDNN_STATUS_BAD_PARAM_NOT_FINALIZED: return "CUDNN_STATUS_BAD_PARAM_NOT_FINALIZED";
    case CUDNN_STATUS_BAD_PARAM_ATTRIBUTE_TYPE: return "CUDNN_STATUS_BAD_PARAM_ATTRIBUTE_TYPE";
    case CUDNN_STATUS_BAD_PARAM_DESCRIPTOR_TYPE: return "CUDNN_STATUS_BAD_PARAM_DESCRIPTOR_TYPE";
    case CUDNN_STATUS_NOT_SUPPORTED: return "CUDNN_STATUS_NOT_SUPPORTED";
    case CUDNN_STATUS_NOT_SUPPORTED_DATA_TYPE: return "CUDNN_STATUS_NOT_SUPPORTED_DATA_TYPE";
    case CUDNN_STATUS_INTERNAL_ERROR: return "CUDNN_STATUS_INTERNAL_ERROR";
    case CUDNN_STATUS_EXECUTION_FAILED: return "CUDNN_STATUS_EXECUTION_FAILED";
    default: return "CUDNN_STATUS_(other)";
  }
}

void cudnnGetLastErrorString(char* message, size_t max_size) {
  if (!message || max_size == 0) return;
  std::snprintf(message, max_size, "%s", last_error.c_str());
  last_error.clear();
}

cudnnStatus_t cudnnCreate(cudnnHandle_t* handle) {
  if (!handle) return fail(CUDNN_STATUS_BAD_PARAM_NULL_POINTER, "cudnnCreate: null handle pointer");
  *handle = new cudnnContext;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroy(cudnnHandle_t handle) {
  delete handle;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetStream(cudnnHandle_t handle, cudaStream_t stream) {
  if (!handle) return fail(CUDNN_STATUS_BAD_PARAM_NULL_POINTER, "cudnnSetStream: null handle");
  handle->stream = stream;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetStream(cudnnHandle_t handle, cudaStream_t* stream) {
  if (!handle || !stream)
    return fail(CUDNN_STATUS_BAD_PARAM_NULL_POINTER, "cudnnGetStream: null argument");
  *stream = handle->stream;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnBackendCreateDescriptor(cudnnBackendDescriptorType_t t,
                                           cudnnBackendDescriptor_t* d) {
  if (!d)
    return fail(CUDNN_STATUS_BAD_PARAM_NULL_POINTER, "cudnnBackendCreateDescriptor: null output");
  Desc* desc = make(t);
  if (!desc)
    return fail(CUDNN_STATUS_NOT_SUPPORTED,
                "descriptor type " + std::to_string(t) + " is not modelled");
  std::lock_guard<std::mutex> lock(registry_mu);
  registry.insert(desc);
  *d = desc;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnBackendDestroyDescriptor(cudnnBackendDescriptor_t d) {
  Desc* desc = lookup(d);
  if (!desc) return fail(CUDNN_STATUS_BAD_PARAM, "destroy: not a live backend descriptor");
  {
    std::lock_guard<std::mutex> lock(registry_mu);
    registry.erase(desc);
  }
  delete desc;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnBackendInitialize(cudnnBackendDescriptor_t d) {
  return lookup(d) ? CUDNN_STATUS_SUCCESS
                   : fail(CUDNN_STATUS_BAD_PARAM, "not a live backend descriptor");
}
cudnnStatus_t cudnnBackendFinalize(cudnnBackendDescriptor_t d) {
  Desc* desc = lookup(d);
  if (!desc) return fail(CUDNN_STATUS_BAD_PARAM, "finalize: not a live backend descriptor");
  if (desc->finalized) return fail(CUDNN_STATUS_NOT_INITIALIZED, "finalize: already finalized");
  return desc->finalize();
}
cudnnStatus_t cudnnBackendSetAttribute(cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t a,
                                       cudnnBackendAttributeType_t t, int64_t n, const void* p) {
  Desc* desc = lookup(d);
  if (!desc) return fail(CUDNN_STATUS_BAD_PARAM, "set: not a live backend descriptor");
  if (desc->finalized)
    return fail(CUDNN_STATUS_NOT_INITIALIZED, "set: the descriptor is finalized");
  return desc->set(a, t, n, p);
}
cudnnStatus_t cudnnBackendGetAttribute(cudnnBackendDescriptor_t const d,
                                       cudnnBackendAttributeName_t a, cudnnBackendAttributeType_t t,
                                       int64_t requested, int64_t* count, void* out) {
  Desc* desc = lookup(d);
  if (!desc) return fail(CUDNN_STATUS_BAD_PARAM, "get: not a live backend descriptor");
  if (!desc->finalized)
    return fail(CUDNN_STATUS_BAD_PARAM_NOT_FINALIZED, "get: the descriptor is not finalized");
  return desc->get(a, t, requested, count, out);
}

// Binds the variant pack (checked now, on the host, as cuDNN does before launching) and
// queues the graph on the handle's stream.
cudnnStatus_t cudnnBackendExecute(cudnnHandle_t handle, cudnnBackendDescriptor_t plan_d,
                                  cudnnBackendDescriptor_t pack_d) {
  Desc *pd = lookup(plan_d), *vd = lookup(pack_d);
  if (!handle) return fail(CUDNN_STATUS_BAD_PARAM_NULL_POINTER, "execute: null handle");
  const char* env = std::getenv("SIM_CUDNN_SELECT_SWAPPED");
  const bool swapped = env && *env && std::strcmp(env, "0") != 0;
  if (!pd || pd->type != CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR || !vd ||
      vd->type != CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR)
    return fail(CUDNN_STATUS_BAD_PARAM, "execute: needs an execution plan and a variant pack");
  if (!pd->finalized || !vd->finalized)
    return fail(CUDNN_STATUS_BAD_PARAM_NOT_FINALIZED,
                "execute: plan or variant pack not finalized");
  const std::shared_ptr<const Graph> graph = static_cast<PlanDesc*>(pd)->graph;
  const auto* pack = static_cast<VariantPackDesc*>(vd);
  std::vector<Storage> st(graph->tensors.size());
  std::vector<sim::Span> operands;  // the pack's device tensors and the workspace
  for (size_t i = 0; i < graph->tensors.size(); ++i) {
    const TensorInfo& t = graph->tensors[i];
    Storage& s = st[i];
    s.type = t.type;
    if (t.is_virtual) {
      s.strides = t.strides;  // dense in some dim order, or a reshape's view (graph finalize)
      continue;               // allocated when the stream runs the graph
    }
    auto it = std::find(pack->uids.begin(), pack->uids.end(), t.uid);
    if (it == pack->uids.end())
      return fail(CUDNN_STATUS_BAD_PARAM,
                  "execute: tensor " + shape(t) + " is not in the variant pack");
    void* p = pack->ptrs[size_t(it - pack->uids.begin())];
    if (!p)
      return fail(CUDNN_STATUS_BAD_PARAM_NULL_POINTER,
                  "execute: tensor " + shape(t) + " bound to null");
    if (t.by_value) {  // a host scalar, read now
      if (sim::is_device_pointer(p))
        sim::fault("cudnnBackendExecute: a by-value tensor points to device memory");
      if (t.count() != 1)
        return fail(CUDNN_STATUS_NOT_SUPPORTED,
                    "execute: by-value tensor " + shape(t) + " is not a scalar");
      s.own = {load_elem(static_cast<const char*>(p), t.type, 0)};
      s.strides.assign(t.dims.size(), 0);
      continue;
    }
    if (!sim::is_device_pointer(p, t.span_bytes()))
      sim::fault("cudnnBackendExecute: a tensor of the variant pack is not (all) device memory");
    if (reinterpret_cast<uintptr_t>(p) % uint64_t(t.alignment) != 0)
      return fail(CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER,
                  "execute: tensor " + shape(t) + " is not aligned to its BYTE_ALIGNMENT");
    s.base = static_cast<char*>(p);
    s.strides = t.strides;
    operands.push_back({p, t.span_bytes()});
  }
  void* ws = pack->workspace;
  if (!ws) return fail(CUDNN_STATUS_BAD_PARAM_NULL_POINTER, "execute: the plan needs a workspace");
  if (!sim::is_device_pointer(ws, kWorkspaceBytes))
    sim::fault("cudnnBackendExecute: the workspace is not (all) device memory of the plan's size");
  operands.push_back({ws, size_t(kWorkspaceBytes)});
  sim::enqueue(handle->stream, [graph, st = std::move(st), ws, swapped, operands]() mutable {
    sim::require_still_allocated(operands, "cudnnBackendExecute");
    select_swapped = swapped;
    std::memset(ws, 0xFF, kWorkspaceBytes);
    for (size_t i = 0; i < graph->tensors.size(); ++i)
      if (graph->tensors[i].is_virtual) st[i].own.assign(size_t(graph->tensors[i].span()), 0.0f);
    run_graph(*graph, st);
  });
  return CUDNN_STATUS_SUCCESS;
}

}  // extern "C"

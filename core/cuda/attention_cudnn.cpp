// Causal attention through cuDNN's fused flash attention, built with cuDNN's backend graph API
// (cudnn_graph.h; cuDNN 9). The same math as core/cuda/attention.cu (see core/ops.h), with
// bf16 inputs and outputs and fp32 softmax statistics:
//   S = scale · Q Kᵀ, S_ij = −inf unless i − W < j ≤ i (W: the sliding window, T for none);
//   Stats = lse = max_j S + log Σ_j exp(S − max);  P = exp(S − Stats);  O = P V
//   backward: D = rowsum(dO ∘ O);  dP = dO Vᵀ;  dS = P ∘ (dP − D);
//             dQ = scale · dS K;  dK = scale · dSᵀ Q;  dV = Pᵀ dO
// cuDNN's single SDPA operation takes causal masks only from 9.21 (we link 9.19), so the graph
// spells the math out of matmul, pointwise, reduction and reshape operations in the form its
// fused flash-attention engine recognises (the form cudnn-frontend's SDPA node lowers to for
// cuDNN 9.19), and cuDNN fuses each graph into one kernel.
//
// Layout: our q, out [B, T, H, hd] and k, v [B, T, Hkv, hd] are cuDNN's "BSHD": tensors of
// dims [B, heads, T, hd] with strides [T·pitch, hd, pitch, 1], pitch = heads·hd, or for q, k, v
// and their gradients inside the packed q|k|v product (ops::Heads) the packed row's
// (H + 2·Hkv)·hd, read and written in place; lse [B, H, T] is Stats [B, H, T, 1].
// Grouped-query attention: K and V keep their Hkv heads (cuDNN maps head h to
// kv head h / (H/Hkv)). Every tensor but the statistics is bf16 (core/ops.cpp rounds fp32
// tensors into temporaries and widens bf16 results into fp32 tensors where the caller's are).
//
// Plans (heuristics + finalize) are built once per shape and cached; a shape cuDNN refuses
// is remembered with cuDNN's reason, and the caller falls back to the plain kernel. A plan's
// first outputs are compared with the plain kernel's (agrees_with_plain): a plan that does
// not compute attention as the plain kernel does is dropped the same way.
#include <cudnn.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "core/cuda/kernels.h"
#include "core/cuda/runtime.h"
#include "core/op_profile.h"

namespace retort::cuda {

namespace {

// cuDNN said no while building a plan: the shape is unsupported (the caller falls back).
struct Refused {
  std::string why;
};

void check(cudnnStatus_t st, const char* what) {
  if (st == CUDNN_STATUS_SUCCESS) return;
  char detail[512] = {};
  cudnnGetLastErrorString(detail, sizeof detail);
  throw Refused{str_cat(what, ": ", cudnnGetErrorString(st), detail[0] ? str_cat(" (", detail, ")") : "")};
}

// Errors while running a plan that was built are real errors, not a fallback.
void check_run(cudnnStatus_t st, const char* what) {
  if (st == CUDNN_STATUS_SUCCESS) return;
  char detail[512] = {};
  cudnnGetLastErrorString(detail, sizeof detail);
  throw Error(str_cat("cuDNN attention: ", what, ": ", cudnnGetErrorString(st), " ", detail));
}

// One backend descriptor (owned).
class Desc {
 public:
  explicit Desc(cudnnBackendDescriptorType_t type) {
    check(cudnnBackendCreateDescriptor(type, &d_), "cudnnBackendCreateDescriptor");
  }
  ~Desc() { cudnnBackendDestroyDescriptor(d_); }
  Desc(const Desc&) = delete;
  Desc& operator=(const Desc&) = delete;

  template <class T>
  Desc& set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type,
            const std::vector<T>& values) {
    check(cudnnBackendSetAttribute(d_, name, type, int64_t(values.size()), values.data()),
          "cudnnBackendSetAttribute");
    return *this;
  }
  template <class T>
  Desc& set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, const T& value) {
    check(cudnnBackendSetAttribute(d_, name, type, 1, &value), "cudnnBackendSetAttribute");
    return *this;
  }
  Desc& finalize(const char* what) {
    check(cudnnBackendFinalize(d_), what);
    return *this;
  }
  cudnnBackendDescriptor_t get() const { return d_; }

 private:
  cudnnBackendDescriptor_t d_ = nullptr;
};

using Dims = std::vector<int64_t>;

// A tensor of the graph: its uid and descriptor.
struct Node {
  int64_t uid;
  cudnnBackendDescriptor_t desc;
  Dims dims;
};

Dims packed_strides(const Dims& dims) {
  Dims s(dims.size(), 1);
  for (int i = int(dims.size()) - 2; i >= 0; --i) s[i] = s[i + 1] * dims[i + 1];
  return s;
}

// Builds one operation graph and its execution plan. Descriptors live as long as the plan.
class GraphBuilder {
 public:
  // A tensor the caller binds at execution (uid < kFirstVirtual) or passes by value.
  Node io(int64_t uid, const Dims& dims, const Dims& strides, cudnnDataType_t type,
          bool by_value = false) {
    return tensor(uid, dims, strides, type, false, by_value);
  }
  // An intermediate that lives inside the fused kernel.
  Node virt(const Dims& dims, cudnnDataType_t type = CUDNN_DATA_FLOAT) {
    return virt(dims, packed_strides(dims), type);
  }
  Node virt(const Dims& dims, const Dims& strides, cudnnDataType_t type) {
    return tensor(next_virtual_++, dims, strides, type, true, false);
  }

  // c = a @ b over the last two dims (batch dims broadcast).
  void matmul(const Node& a, const Node& b, const Node& c) {
    Desc& m = make(CUDNN_BACKEND_MATMUL_DESCRIPTOR);
    m.set(CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, CUDNN_DATA_FLOAT).finalize("matmul");
    Desc& op = make(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR);
    op.set(CUDNN_ATTR_OPERATION_MATMUL_ADESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, a.desc)
        .set(CUDNN_ATTR_OPERATION_MATMUL_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, b.desc)
        .set(CUDNN_ATTR_OPERATION_MATMUL_CDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, c.desc)
        .set(CUDNN_ATTR_OPERATION_MATMUL_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, m.get())
        .finalize("matmul operation");
    ops_.push_back(op.get());
  }

  // y = mode(x[, b[, t]]) computed in `prec`; GEN_INDEX takes `axis`.
  void pointwise(cudnnPointwiseMode_t mode, const Node& x, const Node* b, const Node* t,
                 const Node& y, int64_t axis = -1, cudnnDataType_t prec = CUDNN_DATA_FLOAT) {
    Desc& pw = make(CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
    pw.set(CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, mode)
        .set(CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, prec);
    if (axis >= 0) pw.set(CUDNN_ATTR_POINTWISE_AXIS, CUDNN_TYPE_INT64, axis);
    pw.finalize("pointwise");
    Desc& op = make(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
    op.set(CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, pw.get())
        .set(CUDNN_ATTR_OPERATION_POINTWISE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, x.desc);
    if (b) op.set(CUDNN_ATTR_OPERATION_POINTWISE_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, b->desc);
    if (t) op.set(CUDNN_ATTR_OPERATION_POINTWISE_TDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, t->desc);
    op.set(CUDNN_ATTR_OPERATION_POINTWISE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, y.desc)
        .finalize("pointwise operation");
    ops_.push_back(op.get());
  }

  // y = x seen through y's dims and strides (the same elements in memory): a transpose by
  // strides, and a cast to y's type.
  void reshape(const Node& x, const Node& y) {
    Desc& op = make(CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR);
    op.set(CUDNN_ATTR_OPERATION_RESHAPE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, x.desc)
        .set(CUDNN_ATTR_OPERATION_RESHAPE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, y.desc)
        .finalize("reshape operation");
    ops_.push_back(op.get());
  }

  // y = reduce(x) over the dims where y has size 1 (and over groups of heads where y's head
  // dim divides x's: grouped-query attention's dK, dV).
  void reduce(cudnnReduceTensorOp_t how, const Node& x, const Node& y) {
    Desc& r = make(CUDNN_BACKEND_REDUCTION_DESCRIPTOR);
    r.set(CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, how)
        .set(CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, CUDNN_DATA_FLOAT)
        .finalize("reduction");
    Desc& op = make(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR);
    op.set(CUDNN_ATTR_OPERATION_REDUCTION_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, x.desc)
        .set(CUDNN_ATTR_OPERATION_REDUCTION_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, y.desc)
        .set(CUDNN_ATTR_OPERATION_REDUCTION_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, r.get())
        .finalize("reduction operation");
    ops_.push_back(op.get());
  }

  // The operation graph, then cuDNN's engine configurations in the order its heuristics rank
  // them (mode A, then the fallback list) and the first that finalizes into an execution plan.
  // Refused when none does.
  struct Plan {
    std::vector<std::unique_ptr<Desc>> keep;  // everything the plan was built from
    cudnnBackendDescriptor_t plan = nullptr;
    int64_t workspace = 0;
  };
  Plan build(cudnnHandle_t handle) {
    Desc& graph = make(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
    graph.set(CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, handle)
        .set(CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, ops_)
        .finalize("operation graph");
    std::string why;
    for (const cudnnBackendHeurMode_t mode : {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK}) {
      std::vector<cudnnBackendDescriptor_t> configs;
      try {
        configs = engine_configs(graph, mode, &why);
      } catch (const Refused& r) {
        why = r.why;
        continue;
      }
      for (cudnnBackendDescriptor_t config : configs) {
        auto plan = std::make_unique<Desc>(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
        try {
          plan->set(CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, handle)
              .set(CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, config)
              .finalize("execution plan");
        } catch (const Refused& r) {
          why = r.why;
          continue;
        }
        Plan p;
        int64_t n = 0;
        check(cudnnBackendGetAttribute(plan->get(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                       CUDNN_TYPE_INT64, 1, &n, &p.workspace),
              "execution plan: workspace size");
        p.plan = plan->get();
        keep_.push_back(std::move(plan));
        p.keep = std::move(keep_);
        return p;
      }
    }
    throw Refused{why.empty() ? "no engine configuration" : why};
  }

 private:
  static constexpr int64_t kFirstVirtual = 1000;
  std::vector<std::unique_ptr<Desc>> keep_;
  std::vector<cudnnBackendDescriptor_t> ops_;
  int64_t next_virtual_ = kFirstVirtual;

  Desc& make(cudnnBackendDescriptorType_t type) {
    keep_.push_back(std::make_unique<Desc>(type));
    return *keep_.back();
  }

  // The engine configurations cuDNN's heuristics offer for `graph` in `mode`, best first;
  // none (and `why`) when it offers none.
  std::vector<cudnnBackendDescriptor_t> engine_configs(const Desc& graph,
                                                       cudnnBackendHeurMode_t mode,
                                                       std::string* why) {
    Desc& heur = make(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
    heur.set(CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, graph.get())
        .set(CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, mode)
        .finalize("engine heuristics");
    int64_t count = 0;
    check(cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                   CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, nullptr),
          "engine heuristics: count");
    std::vector<cudnnBackendDescriptor_t> configs;
    for (int64_t i = 0; i < count; ++i) configs.push_back(make(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR).get());
    if (count > 0)
      check(cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                     CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &count, configs.data()),
            "engine heuristics: results");
    else if (why->empty())
      *why = "the heuristics offer no engine for this graph";
    configs.resize(size_t(count));
    return configs;
  }

  Node tensor(int64_t uid, const Dims& dims, const Dims& strides, cudnnDataType_t type,
              bool is_virtual, bool by_value) {
    Desc& t = make(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
    t.set(CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, uid)
        .set(CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, type)
        .set(CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, dims)
        .set(CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, strides)
        .set(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, int64_t(16))
        .set(CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, is_virtual);
    if (by_value) t.set(CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, true);
    t.finalize("tensor");
    return {uid, t.get(), dims};
  }
};

// ---- the two graphs ------------------------------------------------------------------------

// Unique ids of the tensors bound at execution.
enum Uid : int64_t { kQ = 1, kK, kV, kO, kStats, kScale, kNegInf, kDO, kDQ, kDK, kDV, kOne, kRowDot, kWindow };

// The shape, each tensor's token pitch (p: q, k, v, and in the backward dq, dk, dv) and the
// sliding window W (1..T; T: none).
struct AttnShape {
  int64_t B, T, H, Hkv, hd;
  AttentionPitches p;
  int64_t W;
  bool windowed() const { return W < T; }
  auto key() const { return std::tie(B, T, H, Hkv, hd, p.q, p.k, p.v, p.dq, p.dk, p.dv, W); }
  bool operator<(const AttnShape& o) const { return key() < o.key(); }
};

// [B, heads, T, hd] over BSHD memory at a token pitch, and its transpose [B, heads, hd, T]
// (same memory).
Dims bshd_dims(const AttnShape& s, int64_t heads) { return {s.B, heads, s.T, s.hd}; }
Dims bshd_strides(const AttnShape& s, int64_t pitch) { return {s.T * pitch, s.hd, pitch, 1}; }
Dims bshd_t_dims(const AttnShape& s, int64_t heads) { return {s.B, heads, s.hd, s.T}; }
Dims bshd_t_strides(const AttnShape& s, int64_t pitch) { return {s.T * pitch, s.hd, 1, pitch}; }

Node scalar(GraphBuilder& g, int64_t uid) {
  return g.io(uid, {1, 1, 1, 1}, {1, 1, 1, 1}, CUDNN_DATA_FLOAT, true);
}

// Causal mask: s where key j <= query i, else −inf (GEN_INDEX rows and columns, CMP_GE,
// BINARY_SELECT), for scores [B, H, T, T]. With a sliding window (`window`: the by-value
// scalar W) a second select keeps only j + W > i (ADD, CMP_GT). Whether a real cuDNN's fused
// engine takes this form is unchecked (the simulator's does; a refusal falls back, a wrong
// result is caught by the first-use check).
Node causal_mask(GraphBuilder& g, const Node& s, const Node& neg_inf, const Node* window) {
  const Node row = g.virt(s.dims, CUDNN_DATA_INT32), col = g.virt(s.dims, CUDNN_DATA_INT32);
  g.pointwise(CUDNN_POINTWISE_GEN_INDEX, s, nullptr, nullptr, row, 2);
  g.pointwise(CUDNN_POINTWISE_GEN_INDEX, s, nullptr, nullptr, col, 3);
  const Node visible = g.virt(s.dims, CUDNN_DATA_BOOLEAN);
  g.pointwise(CUDNN_POINTWISE_CMP_GE, row, &col, nullptr, visible, -1, CUDNN_DATA_BOOLEAN);
  const Node masked = g.virt(s.dims);
  g.pointwise(CUDNN_POINTWISE_BINARY_SELECT, s, &neg_inf, &visible, masked);
  if (!window) return masked;
  const Node col_plus_w = g.virt(s.dims), inside = g.virt(s.dims, CUDNN_DATA_BOOLEAN);
  g.pointwise(CUDNN_POINTWISE_ADD, col, window, nullptr, col_plus_w);
  g.pointwise(CUDNN_POINTWISE_CMP_GT, col_plus_w, &row, nullptr, inside, -1, CUDNN_DATA_BOOLEAN);
  const Node windowed = g.virt(s.dims);
  g.pointwise(CUDNN_POINTWISE_BINARY_SELECT, masked, &neg_inf, &inside, windowed);
  return windowed;
}

// The window's scalar when the shape has one (bound by value at execution), else none.
std::optional<Node> window_scalar(GraphBuilder& g, const AttnShape& s) {
  if (!s.windowed()) return std::nullopt;
  return scalar(g, kWindow);
}

// Forward: S = scale · Q Kᵀ masked; Stats = max + log Σ exp(S − max); O = (exp(S − max) / Σ) V.
void forward_graph(GraphBuilder& g, const AttnShape& s) {
  const Node q = g.io(kQ, bshd_dims(s, s.H), bshd_strides(s, s.p.q), CUDNN_DATA_BFLOAT16);
  const Node kt = g.io(kK, bshd_t_dims(s, s.Hkv), bshd_t_strides(s, s.p.k), CUDNN_DATA_BFLOAT16);
  const Node v = g.io(kV, bshd_dims(s, s.Hkv), bshd_strides(s, s.p.v), CUDNN_DATA_BFLOAT16);
  const Node o = g.io(kO, bshd_dims(s, s.H), bshd_strides(s, s.H * s.hd), CUDNN_DATA_BFLOAT16);
  const Dims rows{s.B, s.H, s.T, 1};
  const Node stats = g.io(kStats, rows, packed_strides(rows), CUDNN_DATA_FLOAT);
  const Node scale = scalar(g, kScale), neg_inf = scalar(g, kNegInf);
  const Dims scores{s.B, s.H, s.T, s.T};

  const Node qk = g.virt(scores), scaled = g.virt(scores);
  g.matmul(q, kt, qk);
  g.pointwise(CUDNN_POINTWISE_MUL, qk, &scale, nullptr, scaled);
  const std::optional<Node> window = window_scalar(g, s);
  const Node masked = causal_mask(g, scaled, neg_inf, window ? &*window : nullptr);
  const Node max = g.virt(rows), shifted = g.virt(scores), e = g.virt(scores);
  const Node sum = g.virt(rows), log_sum = g.virt(rows);
  const Node p = g.virt(scores, CUDNN_DATA_BFLOAT16);  // the second matmul's operand
  g.reduce(CUDNN_REDUCE_TENSOR_MAX, masked, max);
  g.pointwise(CUDNN_POINTWISE_SUB, masked, &max, nullptr, shifted);
  g.pointwise(CUDNN_POINTWISE_EXP, shifted, nullptr, nullptr, e);
  g.reduce(CUDNN_REDUCE_TENSOR_ADD, e, sum);
  g.pointwise(CUDNN_POINTWISE_LOG, sum, nullptr, nullptr, log_sum);
  g.pointwise(CUDNN_POINTWISE_ADD, max, &log_sum, nullptr, stats);
  g.pointwise(CUDNN_POINTWISE_DIV, e, &sum, nullptr, p);
  g.matmul(p, v, o);
}

// Backward (FlashAttention-2 with P recomputed from Stats). The dQ product writes bf16 dQ
// directly (no fp32 accumulator): cuDNN's deterministic variant, so that runs repeat bitwise.
// With grouped-query attention dK and dV are formed per query head and summed over each
// group of H/Hkv heads by a reduction.
void backward_graph(GraphBuilder& g, const AttnShape& s) {
  const auto bf16 = CUDNN_DATA_BFLOAT16;
  const int64_t o_pitch = s.H * s.hd;
  const Node q = g.io(kQ, bshd_dims(s, s.H), bshd_strides(s, s.p.q), bf16);
  const Node kt = g.io(kK, bshd_t_dims(s, s.Hkv), bshd_t_strides(s, s.p.k), bf16);
  const Node vt = g.io(kV, bshd_t_dims(s, s.Hkv), bshd_t_strides(s, s.p.v), bf16);
  const Node o = g.io(kO, bshd_dims(s, s.H), bshd_strides(s, o_pitch), bf16);
  const Node dout = g.io(kDO, bshd_dims(s, s.H), bshd_strides(s, o_pitch), bf16);
  const Node dq = g.io(kDQ, bshd_dims(s, s.H), bshd_strides(s, s.p.dq), bf16);
  const Node dk = g.io(kDK, bshd_dims(s, s.Hkv), bshd_strides(s, s.p.dk), bf16);
  const Node dv = g.io(kDV, bshd_dims(s, s.Hkv), bshd_strides(s, s.p.dv), bf16);
  const Dims rows{s.B, s.H, s.T, 1}, scores{s.B, s.H, s.T, s.T}, per_head{s.B, s.H, s.T, s.hd};
  const Dims transposed{s.B, s.H, s.T, s.T}, transposed_strides{s.H * s.T * s.T, s.T * s.T, 1, s.T};
  const Node stats = g.io(kStats, rows, packed_strides(rows), CUDNN_DATA_FLOAT);
  const Node row_dot = g.io(kRowDot, rows, packed_strides(rows), CUDNN_DATA_FLOAT);
  const Node scale = scalar(g, kScale), neg_inf = scalar(g, kNegInf), one = scalar(g, kOne);

  // D = rowsum(dO ∘ O), into a buffer of ours (row_dot).
  const Node prod = g.virt(per_head), dot = g.virt(rows);
  g.pointwise(CUDNN_POINTWISE_MUL, dout, &o, nullptr, prod);
  g.reduce(CUDNN_REDUCE_TENSOR_ADD, prod, dot);
  g.pointwise(CUDNN_POINTWISE_MUL, dot, &one, nullptr, row_dot);
  // P = exp(scale · Q Kᵀ − Stats), masked.
  const Node qk = g.virt(scores), scaled = g.virt(scores), centred = g.virt(scores);
  g.matmul(q, kt, qk);
  g.pointwise(CUDNN_POINTWISE_MUL, qk, &scale, nullptr, scaled);
  g.pointwise(CUDNN_POINTWISE_SUB, scaled, &stats, nullptr, centred);
  const std::optional<Node> window = window_scalar(g, s);
  const Node masked = causal_mask(g, centred, neg_inf, window ? &*window : nullptr);
  const Node p = g.virt(scores);
  g.pointwise(CUDNN_POINTWISE_EXP, masked, nullptr, nullptr, p);
  // dK and dV are sums over the query heads of a group: per head first when grouped.
  const bool grouped = s.H != s.Hkv;
  auto into_kv = [&](const Node& a, const Node& b, const Node& out) {
    if (!grouped) return g.matmul(a, b, out);
    const Node full = g.virt(per_head, bf16);
    g.matmul(a, b, full);
    g.reduce(CUDNN_REDUCE_TENSOR_ADD, full, out);
  };
  // dV = Pᵀ dO
  const Node pt = g.virt(transposed, transposed_strides, bf16);
  g.reshape(p, pt);
  into_kv(pt, dout, dv);
  // dS = P ∘ (dO Vᵀ − D) · scale
  const Node dp = g.virt(scores), diff = g.virt(scores), pdiff = g.virt(scores), ds = g.virt(scores);
  g.matmul(dout, vt, dp);
  g.pointwise(CUDNN_POINTWISE_SUB, dp, &row_dot, nullptr, diff);
  g.pointwise(CUDNN_POINTWISE_MUL, diff, &p, nullptr, pdiff);
  g.pointwise(CUDNN_POINTWISE_MUL, pdiff, &scale, nullptr, ds);
  // dK = dSᵀ Q
  const Node dst = g.virt(transposed, transposed_strides, bf16);
  g.reshape(ds, dst);
  into_kv(dst, q, dk);
  // dQ = dS K (K seen untransposed: the same memory, at K's pitch)
  const Node k = g.virt(bshd_dims(s, s.Hkv), bshd_strides(s, s.p.k), CUDNN_DATA_FLOAT);
  g.reshape(kt, k);
  g.matmul(ds, k, dq);
}

// ---- plans and execution ---------------------------------------------------------------------

struct Cached {
  std::optional<GraphBuilder::Plan> plan;  // empty: refused
  std::string why;
  bool checked = false;  // its first outputs were compared with the plain kernel's
};

struct Context {
  cudnnHandle_t handle = nullptr;
  std::map<std::pair<bool, AttnShape>, Cached> plans;  // (backward?, shape)
};

// Never destroyed: at exit the CUDA context (and, in the simulator, its library state) may be
// gone before static destructors run, and destroying descriptors then can crash.
Context& context() {
  static Context* ctx = new Context;
  return *ctx;
}

// The plan of one direction and shape, built on first use; its `plan` is empty when refused.
Cached& plan_for(bool backward, const AttnShape& s) {
  Context& ctx = context();
  const auto key = std::make_pair(backward, s);
  auto it = ctx.plans.find(key);
  if (it == ctx.plans.end()) {
    Cached c;
    if (s.hd % 8 != 0 || s.hd > (backward ? 128 : 256)) {
      c.why = str_cat("head_dim ", s.hd, ": cuDNN's flash attention ", backward ? "backward" : "forward",
                      " takes multiples of 8 up to ", backward ? 128 : 256);
    } else {
      try {
        if (!ctx.handle) {  // a cuDNN that cannot start (library, driver) is a refusal too
          check(cudnnCreate(&ctx.handle), "cudnnCreate");
          check(cudnnSetStream(ctx.handle, compute_stream()), "cudnnSetStream");
        }
        GraphBuilder g;
        if (backward) backward_graph(g, s);
        else forward_graph(g, s);
        c.plan = g.build(ctx.handle);
      } catch (const Refused& r) {
        c.why = r.why;
      }
    }
    it = ctx.plans.emplace(key, std::move(c)).first;
  }
  return it->second;
}

// The usable plan of one direction and shape, or null with cuDNN's reason in *why.
Cached* usable_plan(bool backward, const AttnShape& s, std::string* why) {
  Cached& c = plan_for(backward, s);
  if (c.plan) return &c;
  *why = c.why;
  return nullptr;
}

// ‖a − b‖₂ / ‖b‖₂ over n device floats (NaN if either holds one).
double relative_difference(const float* a, const float* b, int64_t n) {
  float* d = static_cast<float*>(allocate(size_t(n) * sizeof(float)));
  copy_bytes(d, a, n * int64_t(sizeof(float)));
  add_inplace(d, b, n, -1.0f);
  const double num = sum_squares(d, n), den = sum_squares(b, n);
  release(d);
  return std::sqrt(num / (den > 0 ? den : 1.0));
}

// The first run of a plan on this GPU is checked against the plain kernel on the same inputs:
// `plain` writes its outputs into buffers shaped like `outputs` (fp32 copies of cuDNN's).
// Agreement within kMaxDifference (bf16 inputs give a few 1e-3; a misread of cuDNN's semantics
// gives order 1) says so on stderr once; otherwise the plan is dropped with the reason and the
// caller falls back, so a graph cuDNN accepts but computes differently never trains a model.
constexpr double kMaxDifference = 5e-2;

bool agrees_with_plain(Cached& c, const char* pass, const AttnShape& s,
                       const std::vector<std::pair<const float*, int64_t>>& outputs,
                       const std::function<void(const std::vector<float*>&)>& plain,
                       std::string* why) {
  std::vector<float*> ref;
  for (const auto& [p, n] : outputs) ref.push_back(static_cast<float*>(allocate(size_t(n) * sizeof(float))));
  plain(ref);
  double worst = 0;
  bool ok = true;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double e = relative_difference(outputs[i].first, ref[i], outputs[i].second);
    ok = ok && e <= kMaxDifference;  // false for NaN
    worst = std::isnan(e) || e > worst ? e : worst;
  }
  for (float* p : ref) release(p);
  c.checked = true;
  const std::string shape = str_cat("B=", s.B, " T=", s.T, " heads=", s.H, " kv_heads=", s.Hkv,
                                    " head_dim=", s.hd, s.windowed() ? str_cat(" window=", s.W) : "");
  if (ok) {
    std::fprintf(stderr, "retort: cuDNN fused attention (%s, %s) is within %.2g of the plain kernel\n",
                 pass, shape.c_str(), worst);
    return true;
  }
  c.plan.reset();
  c.why = str_cat("its ", pass, " differs from the plain kernel's by ", worst,
                  " (relative), more than ", kMaxDifference);
  *why = c.why;
  return false;
}

void execute(const GraphBuilder::Plan& plan, const std::vector<std::pair<int64_t, void*>>& bound) {
  Context& ctx = context();
  void* workspace = plan.workspace > 0 ? allocate(size_t(plan.workspace)) : nullptr;
  std::vector<int64_t> uids;
  std::vector<void*> pointers;
  for (auto& [uid, ptr] : bound) {
    uids.push_back(uid);
    pointers.push_back(ptr);
  }
  cudnnBackendDescriptor_t pack = nullptr;
  check_run(cudnnBackendCreateDescriptor(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &pack), "variant pack");
  auto set = [&](cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, int64_t n,
                 const void* values) {
    check_run(cudnnBackendSetAttribute(pack, name, type, n, values), "variant pack attribute");
  };
  set(CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, int64_t(uids.size()), uids.data());
  set(CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, int64_t(pointers.size()), pointers.data());
  set(CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &workspace);
  check_run(cudnnBackendFinalize(pack), "variant pack");
  const cudnnStatus_t st = cudnnBackendExecute(ctx.handle, plan.plan, pack);
  cudnnBackendDestroyDescriptor(pack);
  if (workspace) release(workspace);  // stream-ordered: after the kernel that uses it
  check_run(st, "cudnnBackendExecute");
}

// Stream-ordered contiguous fp32 copies of bf16 tensors (for the first-use check): `rows`
// tokens of `cols` elements, `pitch` apart in src; released when the scope ends.
class Fp32Copies {
 public:
  float* of(const uint16_t* src, int64_t rows, int64_t cols, int64_t pitch) {
    buffers_.push_back(static_cast<float*>(allocate(size_t(rows * cols) * sizeof(float))));
    copy_rows(buffers_.back(), cols, src, pitch, rows, cols);
    return buffers_.back();
  }
  ~Fp32Copies() {
    for (float* p : buffers_) release(p);
  }

 private:
  std::vector<float*> buffers_;
};

}  // namespace

bool attention_forward_cudnn(uint16_t* out, float* lse, const uint16_t* q, const uint16_t* k,
                             const uint16_t* v, const AttentionPitches& p, int64_t B, int64_t T,
                             int64_t H, int64_t Hkv, int64_t hd, int64_t W, std::string* why) {
  const AttnShape s{B, T, H, Hkv, hd, {p.q, p.k, p.v}, W};
  Cached* c = usable_plan(false, s, why);
  if (!c) return false;
  float scale = 1.0f / std::sqrt(float(hd)), neg_inf = -INFINITY, window = float(W);
  std::vector<std::pair<int64_t, void*>> bound = {
      {kQ, const_cast<uint16_t*>(q)}, {kK, const_cast<uint16_t*>(k)}, {kV, const_cast<uint16_t*>(v)},
      {kO, out}, {kStats, lse}, {kScale, &scale}, {kNegInf, &neg_inf}};
  if (s.windowed()) bound.push_back({kWindow, &window});
  const op_profile::Scope time("attention_cudnn forward graph", Device::CUDA);
  execute(*c->plan, bound);
  if (c->checked) return true;
  const int64_t R = B * T, nq = R * H * hd, cq = H * hd, ckv = Hkv * hd;
  Fp32Copies f;
  return agrees_with_plain(*c, "forward", s, {{f.of(out, R, cq, cq), nq}, {lse, B * H * T}},
                           [&](const std::vector<float*>& r) {
                             attention_forward(r[0], r[1], f.of(q, R, cq, p.q),
                                               f.of(k, R, ckv, p.k), f.of(v, R, ckv, p.v),
                                               AttentionPitches::contiguous(H, Hkv, hd), B, T,
                                               H, Hkv, hd, W);
                           }, why);
}

bool attention_backward_cudnn(uint16_t* dq, uint16_t* dk, uint16_t* dv, const uint16_t* dout,
                              const uint16_t* q, const uint16_t* k, const uint16_t* v,
                              const uint16_t* out, const float* lse, const AttentionPitches& p,
                              int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t hd, int64_t W,
                              std::string* why) {
  const AttnShape s{B, T, H, Hkv, hd, p, W};
  Cached* c = usable_plan(true, s, why);
  if (!c) return false;
  float* row_dot = static_cast<float*>(allocate(size_t(B * H * T) * sizeof(float)));
  float scale = 1.0f / std::sqrt(float(hd)), neg_inf = -INFINITY, one = 1.0f, window = float(W);
  auto in = [](const uint16_t* p) { return static_cast<void*>(const_cast<uint16_t*>(p)); };
  std::vector<std::pair<int64_t, void*>> bound = {
      {kQ, in(q)}, {kK, in(k)}, {kV, in(v)}, {kO, in(out)}, {kDO, in(dout)},
      {kStats, const_cast<float*>(lse)}, {kDQ, dq}, {kDK, dk}, {kDV, dv},
      {kRowDot, row_dot}, {kScale, &scale}, {kNegInf, &neg_inf}, {kOne, &one}};
  if (s.windowed()) bound.push_back({kWindow, &window});
  const op_profile::Scope time("attention_cudnn backward graph", Device::CUDA);
  execute(*c->plan, bound);
  release(row_dot);  // stream-ordered: after the graph
  if (c->checked) return true;
  const int64_t R = B * T, nq = R * H * hd, nkv = R * Hkv * hd, cq = H * hd, ckv = Hkv * hd;
  Fp32Copies f;
  return agrees_with_plain(
      *c, "backward", s,
      {{f.of(dq, R, cq, p.dq), nq}, {f.of(dk, R, ckv, p.dk), nkv}, {f.of(dv, R, ckv, p.dv), nkv}},
      [&](const std::vector<float*>& r) {
        attention_backward(r[0], r[1], r[2], f.of(dout, R, cq, cq), f.of(q, R, cq, p.q),
                           f.of(k, R, ckv, p.k), f.of(v, R, ckv, p.v), f.of(out, R, cq, cq), lse,
                           AttentionPitches::contiguous(H, Hkv, hd), B, T, H, Hkv, hd, W);
      }, why);
}

}  // namespace retort::cuda

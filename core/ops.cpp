// The op set: check shapes, dtypes and devices, then dispatch to the kernels of the device the
// tensors live on (core/op_dispatch.h).
#include "core/ops.h"

#include <array>
#include <cmath>
#include <cstdio>
#include <limits>
#include <set>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "core/device.h"
#include "core/op_dispatch.h"

namespace retort::ops {

namespace {

// The bytes of the tensors (and windows of heads) a kernel reads or writes once each, for the op
// profile's bandwidth (RETORT_KERNEL_MOVING).
double bytes_of(std::initializer_list<const Tensor*> tensors) {
  double b = 0;
  for (const Tensor* t : tensors)
    if (t->defined()) b += double(t->nbytes());
  return b;
}
double bytes_of(const Heads& h) {
  return double(shape_numel(h.shape())) * double(dtype_size(h.x.dtype()));
}

// Every tensor an op touches must be defined (and all on one device: common_device).
void check_defined(const char* op, const char* name, const Tensor& t) {
  RETORT_CHECK(t.defined(), op, ": tensor `", name, "` is undefined");
}

void check_f32(const char* op, const char* name, const Tensor& t) {
  check_defined(op, name, t);
  RETORT_CHECK(t.dtype() == DType::F32, op, ": tensor `", name, "` must be float32, got ",
               dtype_name(t.dtype()), " ", shape_str(t.shape()));
}

// float32, or bfloat16 for an output rounded where it is produced (or an input read as bf16).
void check_float(const char* op, const char* name, const Tensor& t) {
  check_defined(op, name, t);
  RETORT_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::BF16, op, ": tensor `", name,
               "` must be float32 or bfloat16, got ", dtype_name(t.dtype()), " ",
               shape_str(t.shape()));
}

void check_i32(const char* op, const char* name, const Tensor& t) {
  check_defined(op, name, t);
  RETORT_CHECK(t.dtype() == DType::I32, op, ": tensor `", name, "` must be int32, got ",
               dtype_name(t.dtype()), " ", shape_str(t.shape()));
}

void check_same_shape(const char* op, const char* na, const Tensor& a, const char* nb,
                      const Tensor& b) {
  RETORT_CHECK(a.shape() == b.shape(), op, ": shape mismatch: ", na, " ", shape_str(a.shape()),
               " vs ", nb, " ", shape_str(b.shape()));
}

void check_numel(const char* op, const char* na, const Tensor& a, const char* nb,
                 const Tensor& b) {
  RETORT_CHECK(a.numel() == b.numel(), op, ": size mismatch: ", na, " ", shape_str(a.shape()),
               " vs ", nb, " ", shape_str(b.shape()));
}

// Last dim ("features") and the product of the others ("rows"); a 0-D tensor is [1, 1].
int64_t last_dim(const Tensor& t) { return t.ndim() == 0 ? 1 : t.dim(-1); }
int64_t rows_of(const Tensor& t) {
  const int64_t c = last_dim(t);
  return c == 0 ? 0 : t.numel() / c;
}

// True when the byte ranges of a and b overlap.
bool overlaps(const Tensor& a, const Tensor& b) {
  if (!a.same_storage(b) || a.numel() == 0 || b.numel() == 0) return false;
  const char* a0 = static_cast<const char*>(a.raw());
  const char* b0 = static_cast<const char*>(b.raw());
  return a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes();
}

// x in float32 / bfloat16: x itself, or a converted copy (for a kernel that reads that type).
Tensor as_dtype(const Tensor& x, DType dtype) {
  if (x.dtype() == dtype) return x;
  Tensor r = Tensor::empty(x.shape(), dtype, x.device());
  convert(r, x);
  return r;
}

// Where a kernel that writes `dtype` puts the output `out`: out itself when it has that dtype,
// else a temporary that finish_output converts into out.
Tensor output_in(const Tensor& out, DType dtype) {
  return out.dtype() == dtype ? out : Tensor::empty(out.shape(), dtype, out.device());
}
void finish_output(Tensor& out, const Tensor& written) {
  if (!written.same_storage(out)) convert(out, written);
}

// Calls kernel(in) with the typed pointer of in (F32 or BF16).
template <class Kernel>
void with_type(const Tensor& in, Kernel&& kernel) {
  if (in.dtype() == DType::BF16) kernel(in.data<uint16_t>());
  else kernel(in.data<float>());
}

// Calls kernel(out, in) with the typed pointers of out and in (each F32 or BF16).
template <class Kernel>
void with_types(const Tensor& out, const Tensor& in, Kernel&& kernel) {
  const bool o16 = out.dtype() == DType::BF16, i16 = in.dtype() == DType::BF16;
  if (o16 && i16) kernel(out.data<uint16_t>(), in.data<uint16_t>());
  else if (o16) kernel(out.data<uint16_t>(), in.data<float>());
  else if (i16) kernel(out.data<float>(), in.data<uint16_t>());
  else kernel(out.data<float>(), in.data<float>());
}

// ---- windows of heads (Heads) ----
void check_heads(const char* op, const char* name, const Heads& h) {
  check_float(op, name, h.x);
  RETORT_CHECK(h.x.ndim() == 4, op, ": ", name, " must be [B, T, heads, head_dim], got ",
               shape_str(h.x.shape()));
  RETORT_CHECK(h.first >= 0 && h.count >= 0 && h.first + h.count <= h.x.dim(2), op, ": ", name,
               " heads [", h.first, ", ", h.first + h.count, ") lie outside ",
               shape_str(h.x.shape()));
}
// True when a and b may share an element: windows of one tensor overlap when their heads do.
bool overlaps(const Heads& a, const Heads& b) {
  if (a.x.same_storage(b.x) && a.x.raw() == b.x.raw() && a.x.shape() == b.x.shape())
    return a.first < b.first + b.count && b.first < a.first + a.count;
  return overlaps(a.x, b.x);
}
// For a kernel that reads whole tensors of `dtype`: h's tensor itself when it is all of it in
// that type, else a contiguous copy of the window.
Tensor contiguous_as(const Heads& h, DType dtype) {
  if (h.whole() && h.x.dtype() == dtype) return h.x;
  Tensor r = Tensor::empty(h.shape(), dtype, h.x.device());
  copy_heads(r, h);
  return r;
}
// Where such a kernel writes the window `out`: out's tensor, or a temporary that
// finish_heads copies into the window.
Tensor output_in(const Heads& out, DType dtype) {
  return out.whole() && out.x.dtype() == dtype ? out.x
                                               : Tensor::empty(out.shape(), dtype, out.x.device());
}
void finish_heads(const Heads& out, const Tensor& written) {
  if (!written.same_storage(out.x)) copy_heads(out, written);
}
// For a kernel that reads and writes windows in one dtype: h itself when it has that dtype,
// else a contiguous copy in it (input) or a temporary that finish_heads copies back (output).
Heads window_as(const Heads& h, DType dtype) {
  return h.x.dtype() == dtype ? h : Heads(contiguous_as(h, dtype));
}
Heads output_window_as(const Heads& h, DType dtype) {
  return h.x.dtype() == dtype ? h : Heads(output_in(h, dtype));
}

// check_f32 for element i of a list argument of a multi-tensor op: names it `list[i].name`.
void check_f32_at(const char* op, const char* list, size_t i, const char* name, const Tensor& t) {
  RETORT_CHECK(t.defined(), op, ": tensor `", list, "[", i, "]", name, "` is undefined");
  RETORT_CHECK(t.dtype() == DType::F32, op, ": tensor `", list, "[", i, "]", name,
               "` must be float32, got ", dtype_name(t.dtype()), " ", shape_str(t.shape()));
}

// Ids in [0, n), or -1 ("on another vocabulary shard", see ops.h); reports the first offender.
void check_ids(const char* op, const char* name, const Tensor& ids, int64_t n) {
  const int64_t i = first_id_out_of_range(ids, -1, static_cast<int32_t>(n));
  if (i < 0) return;
  int32_t bad = 0;
  device::copy_bytes(&bad, Device::CPU, ids.data<int32_t>() + i, ids.device(), sizeof bad);
  RETORT_CHECK(false, op, ": ", name, "[", i, "] = ", bad, " is out of range [0, ", n,
               ") (or -1 for another vocabulary shard)");
}

}  // namespace

// ---- dense linear algebra ----------------------------------------------------------------

namespace {
MatmulPrecision g_matmul_precision = MatmulPrecision::F32;
}

void set_matmul_precision(MatmulPrecision p) { g_matmul_precision = p; }
MatmulPrecision matmul_precision() { return g_matmul_precision; }

namespace {
MatmulTuning g_matmul_tuning = MatmulTuning::Heuristic;
}

void set_matmul_tuning(MatmulTuning t) {
  g_matmul_tuning = t;
#if RETORT_HAVE_CUDA
  cuda::set_matmul_timed(t == MatmulTuning::Timed);
#endif
}
MatmulTuning matmul_tuning() { return g_matmul_tuning; }

std::vector<TunedProduct> matmul_tuned_products() {
#if RETORT_HAVE_CUDA
  return cuda::matmul_tuned_products();
#else
  return {};
#endif
}

void preset_matmul_choices(const std::vector<TunedProduct>& choices) {
#if RETORT_HAVE_CUDA
  cuda::preset_matmul_choices(choices);
#else
  (void)choices;
#endif
}

std::string matmul_tuning_identity() {
#if RETORT_HAVE_CUDA
  if (device::cuda_device_count() > 0) return cuda::matmul_tuning_identity();
#endif
  return "";
}

namespace {
// The op profile's name for a product of this shape (op_profile::product_name); "" when
// profiling is off.
std::string product_label(int64_t M, int64_t N, int64_t K, bool ta, bool tb) {
  return op_profile::enabled() ? op_profile::product_name(M, N, K, ta, tb) : std::string();
}

// [M, N, K] of op(a) @ op(b) for a stored [ar, ac] and b stored [br, bc]; an error naming both
// when the inner dims differ.
std::array<int64_t, 3> inner_dims(const char* op, const Tensor& a, int64_t ar, int64_t ac,
                                  bool transpose_a, const Tensor& b, int64_t br, int64_t bc,
                                  bool transpose_b) {
  const int64_t M = transpose_a ? ac : ar, K = transpose_a ? ar : ac;
  const int64_t Kb = transpose_b ? bc : br, N = transpose_b ? br : bc;
  RETORT_CHECK(K == Kb, op, ": inner dims differ: op(a) is [", M, ", ", K, "] (a ",
               shape_str(a.shape()), transpose_a ? " transposed" : "", "), op(b) is [", Kb, ", ",
               N, "] (b ", shape_str(b.shape()), transpose_b ? " transposed" : "", ")");
  return {M, N, K};
}

// A product on bf16 operands (fp32 ones rounded first): one of them or y is bf16, or
// matmul_precision() is BF16.
bool bf16_product(const Tensor& y, const Tensor& a, const Tensor& b) {
  return a.dtype() == DType::BF16 || b.dtype() == DType::BF16 || y.dtype() == DType::BF16 ||
         g_matmul_precision == MatmulPrecision::BF16;
}

// [M, N, K] of y = op(a) @ op(b) (each viewed 2-D: rows, last dim), after checking the operands
// are float, the shapes agree and y aliases neither.
std::array<int64_t, 3> product_dims(const char* op, const Tensor& y, const Tensor& a,
                                    bool transpose_a, const Tensor& b, bool transpose_b) {
  check_float(op, "y", y);
  check_float(op, "a", a);
  check_float(op, "b", b);
  RETORT_CHECK(a.ndim() >= 1 && b.ndim() >= 1 && y.ndim() >= 1, op,
               ": tensors need at least 1 dim: a ", shape_str(a.shape()), ", b ",
               shape_str(b.shape()), ", y ", shape_str(y.shape()));
  const auto [M, N, K] = inner_dims(op, a, rows_of(a), last_dim(a), transpose_a, b, rows_of(b),
                                    last_dim(b), transpose_b);
  RETORT_CHECK(rows_of(y) == M && last_dim(y) == N, op, ": y ", shape_str(y.shape()),
               " must be [", M, ", ", N, "] for op(a) [", M, ", ", K, "] @ op(b) [", K, ", ", N,
               "]");
  RETORT_CHECK(!overlaps(y, a) && !overlaps(y, b), op, ": y must not alias a or b");
  return {M, N, K};
}
}  // namespace

void matmul(Tensor& y, const Tensor& a, bool transpose_a, const Tensor& b, bool transpose_b,
            float alpha, float beta) {
  const char* op = "matmul";
  const auto [M, N, K] = product_dims(op, y, a, transpose_a, b, transpose_b);
  RETORT_CHECK(y.dtype() == DType::F32 || beta == 0.0f, op,
               ": a bfloat16 y needs beta = 0 (it is overwritten), got beta ", beta);
  const Device dev = common_device("matmul", {&y, &a, &b});
  const bool a16 = a.dtype() == DType::BF16, b16 = b.dtype() == DType::BF16;
  const op_profile::Scope flops(product_label(M, N, K, transpose_a, transpose_b), dev,
                                2.0 * M * N * K);
  if (a16 || b16 || y.dtype() == DType::BF16) {  // a bf16 product; fp32 operands rounded first
    const Tensor ra = as_dtype(a, DType::BF16), rb = as_dtype(b, DType::BF16);
    if (y.dtype() == DType::BF16)  // its fp32 result rounded once into y
      RETORT_KERNEL(dev, matmul_bf16_rounded, y.data<uint16_t>(), ra.data<uint16_t>(), transpose_a,
                    rb.data<uint16_t>(), transpose_b, M, N, K, alpha);
    else
      RETORT_KERNEL(dev, matmul_bf16_rounded, y.data<float>(), ra.data<uint16_t>(), transpose_a,
                    rb.data<uint16_t>(), transpose_b, M, N, K, alpha, beta);
  } else if (g_matmul_precision == MatmulPrecision::BF16) {
    RETORT_KERNEL(dev, matmul_bf16, y.data<float>(), a.data<float>(), transpose_a, b.data<float>(),
                  transpose_b, M, N, K, alpha, beta);
  } else {
    RETORT_KERNEL(dev, matmul, y.data<float>(), a.data<float>(), transpose_a, b.data<float>(), transpose_b, M, N,
              K, alpha, beta);
  }
}

void matmul_add(Tensor& y, const Tensor& c, const Tensor& a, bool transpose_a, const Tensor& b,
                bool transpose_b) {
  const char* op = "matmul_add";
  const auto [M, N, K] = product_dims(op, y, a, transpose_a, b, transpose_b);
  check_f32(op, "y", y);
  check_f32(op, "c", c);
  check_same_shape(op, "c", c, "y", y);
  RETORT_CHECK(c.raw() == y.raw() || !overlaps(y, c), op, ": c must be y or not overlap it");
  const Device dev = common_device(op, {&y, &c, &a, &b});
  const op_profile::Scope flops(product_label(M, N, K, transpose_a, transpose_b), dev,
                                2.0 * M * N * K);
  if (bf16_product(y, a, b)) {
    const Tensor ra = as_dtype(a, DType::BF16), rb = as_dtype(b, DType::BF16);
    RETORT_KERNEL(dev, matmul_add, y.data<float>(), c.data<float>(), ra.data<uint16_t>(),
                  transpose_a, rb.data<uint16_t>(), transpose_b, M, N, K);
  } else {
    RETORT_KERNEL(dev, matmul_add, y.data<float>(), c.data<float>(), a.data<float>(), transpose_a,
                  b.data<float>(), transpose_b, M, N, K);
  }
}

// ---- elementwise / reductions ------------------------------------------------------------

void fill(Tensor& x, float value) {
  check_f32("fill", "x", x);
  const Device dev = common_device("fill", {&x});
  RETORT_KERNEL(dev, fill, x.data<float>(), x.numel(), value);
}

void copy(Tensor& dst, const Tensor& src) {
  check_defined("copy", "dst", dst);
  check_defined("copy", "src", src);
  check_numel("copy", "dst", dst, "src", src);
  RETORT_CHECK(dst.dtype() == src.dtype(), "copy: dtype mismatch: dst ", dtype_name(dst.dtype()),
               " vs src ", dtype_name(src.dtype()));
  // Between devices (host <-> GPU) this is a transfer.
  if (dst.device() == src.device())
    RETORT_KERNEL_MOVING(dst.device(), bytes_of({&dst, &src}), copy_bytes, dst.raw(), src.raw(),
                         int64_t(src.nbytes()));
  else
    device::copy_bytes(dst.raw(), dst.device(), src.raw(), src.device(), src.nbytes());
}

void add_inplace(Tensor& y, const Tensor& x, float alpha) {
  check_f32("add_inplace", "y", y);
  check_f32("add_inplace", "x", x);
  check_numel("add_inplace", "y", y, "x", x);
  const Device dev = common_device("add_inplace", {&y, &x});
  RETORT_KERNEL(dev, add_inplace, y.data<float>(), x.data<float>(), y.numel(), alpha);
}

void scale_inplace(Tensor& y, float alpha) {
  check_f32("scale_inplace", "y", y);
  const Device dev = common_device("scale_inplace", {&y});
  RETORT_KERNEL(dev, scale_inplace, y.data<float>(), y.numel(), alpha);
}

double sum_squares(const Tensor& x) {
  check_f32("sum_squares", "x", x);
  const Device dev = common_device("sum_squares", {&x});
  return RETORT_KERNEL(dev, sum_squares, x.data<float>(), x.numel());
}

double sum_squares_multi(const std::vector<Tensor>& xs) {
  if (xs.empty()) return 0.0;
  std::vector<const float*> ptrs(xs.size());
  std::vector<int64_t> ns(xs.size());
  for (size_t t = 0; t < xs.size(); ++t) {
    check_f32_at("sum_squares_multi", "xs", t, "", xs[t]);
    RETORT_CHECK(xs[t].device() == xs[0].device(), "sum_squares_multi: tensors on different "
                 "devices (xs[0] and xs[", t, "]); move them with Tensor::to()");
    ptrs[t] = xs[t].data<float>();
    ns[t] = xs[t].numel();
  }
  return RETORT_KERNEL(xs[0].device(), sum_squares_multi, ptrs.data(), ns.data(),
                       static_cast<int64_t>(xs.size()));
}

void convert(Tensor& dst, const Tensor& src) {
  check_defined("convert", "dst", dst);
  check_defined("convert", "src", src);
  check_numel("convert", "dst", dst, "src", src);
  if (dst.dtype() == src.dtype()) {
    const Device dev = common_device("copy_bytes", {&dst, &src});
    RETORT_KERNEL_MOVING(dev, bytes_of({&dst, &src}), copy_bytes, dst.raw(), src.raw(),
                         static_cast<int64_t>(src.nbytes()));
  } else if (dst.dtype() == DType::BF16 && src.dtype() == DType::F32) {
    const Device dev = common_device("f32_to_bf16", {&dst, &src});
    RETORT_KERNEL_MOVING(dev, bytes_of({&dst, &src}), f32_to_bf16, dst.data<uint16_t>(),
                         src.data<float>(), src.numel());
  } else if (dst.dtype() == DType::F32 && src.dtype() == DType::BF16) {
    const Device dev = common_device("bf16_to_f32", {&dst, &src});
    RETORT_KERNEL_MOVING(dev, bytes_of({&dst, &src}), bf16_to_f32, dst.data<float>(),
                         src.data<uint16_t>(), src.numel());
  } else {
    RETORT_CHECK(false, "convert: unsupported conversion ", dtype_name(src.dtype()), " -> ",
                 dtype_name(dst.dtype()), " (only float32 <-> bfloat16)");
  }
}

// ---- RMSNorm -----------------------------------------------------------------------------

void rmsnorm_forward(Tensor& y, Tensor& rstd, const Tensor& x, const Tensor& g, float eps) {
  const char* op = "rmsnorm_forward";
  check_float(op, "y", y);
  check_f32(op, "rstd", rstd);
  check_f32(op, "x", x);
  check_f32(op, "g", g);
  check_same_shape(op, "y", y, "x", x);
  const int64_t C = last_dim(x), rows = rows_of(x);
  RETORT_CHECK(g.numel() == C, op, ": g ", shape_str(g.shape()), " must have ", C,
               " elements (last dim of x ", shape_str(x.shape()), ")");
  RETORT_CHECK(rstd.numel() == rows, op, ": rstd ", shape_str(rstd.shape()), " must have ", rows,
               " elements (rows of x ", shape_str(x.shape()), ")");
  RETORT_CHECK(eps >= 0.0f, op, ": eps must be >= 0, got ", eps);
  const Device dev = common_device("rmsnorm_forward", {&y, &rstd, &x, &g});
  const double bytes = bytes_of({&y, &rstd, &x});
  if (y.dtype() == DType::BF16)
    RETORT_KERNEL_MOVING(dev, bytes, rmsnorm_forward, y.data<uint16_t>(), rstd.data<float>(),
                         x.data<float>(), g.data<float>(), rows, C, eps);
  else
    RETORT_KERNEL_MOVING(dev, bytes, rmsnorm_forward, y.data<float>(), rstd.data<float>(),
                         x.data<float>(), g.data<float>(), rows, C, eps);
}

void rmsnorm_backward(Tensor& dx, Tensor& dg, const Tensor& dy, const Tensor& x, const Tensor& g,
                      const Tensor& rstd, bool accumulate_dx, const Tensor& dx_rounded) {
  const char* op = "rmsnorm_backward";
  check_float(op, "dx", dx);
  RETORT_CHECK(dx.dtype() == DType::F32 || (!accumulate_dx && !dx_rounded.defined()), op,
               ": accumulate_dx and dx_rounded need a float32 dx, got bfloat16");
  if (dx_rounded.defined()) {
    RETORT_CHECK(dx_rounded.dtype() == DType::BF16, op, ": dx_rounded must be bfloat16, got ",
                 dtype_name(dx_rounded.dtype()));
    check_same_shape(op, "dx_rounded", dx_rounded, "dx", dx);
  }
  check_f32(op, "dg", dg);
  check_f32(op, "dy", dy);
  check_f32(op, "x", x);
  check_f32(op, "g", g);
  check_f32(op, "rstd", rstd);
  check_same_shape(op, "dy", dy, "x", x);
  check_same_shape(op, "dx", dx, "x", x);
  const int64_t C = last_dim(x), rows = rows_of(x);
  RETORT_CHECK(g.numel() == C && dg.numel() == C, op, ": g ", shape_str(g.shape()), " and dg ",
               shape_str(dg.shape()), " must have ", C, " elements (last dim of x ",
               shape_str(x.shape()), ")");
  RETORT_CHECK(rstd.numel() == rows, op, ": rstd ", shape_str(rstd.shape()), " must have ", rows,
               " elements (rows of x ", shape_str(x.shape()), ")");
  RETORT_CHECK(!overlaps(dx, x) && !overlaps(dx, g) && !overlaps(dg, dy), op,
               ": outputs must not alias inputs");
  const Device dev = common_device("rmsnorm_backward", {&dx, &dg, &dy, &x, &g, &rstd});
  if (dx_rounded.defined()) {
    common_device("rmsnorm_backward", {&dx, &dx_rounded});
    for (const Tensor* t : {&dy, &x, &g, &rstd, static_cast<const Tensor*>(&dx)})
      RETORT_CHECK(!overlaps(dx_rounded, *t), op, ": dx_rounded must not alias the other tensors");
  }
  // dx read too when accumulating
  const double bytes = bytes_of({&dx, &dy, &x, &rstd, &dx_rounded}) +
                       (accumulate_dx ? double(dx.nbytes()) : 0.0);
  if (dx.dtype() == DType::BF16)
    RETORT_KERNEL_MOVING(dev, bytes, rmsnorm_backward, dx.data<uint16_t>(), dg.data<float>(),
                         dy.data<float>(), x.data<float>(), g.data<float>(), rstd.data<float>(),
                         rows, C);
  else
    RETORT_KERNEL_MOVING(dev, bytes, rmsnorm_backward, dx.data<float>(), dg.data<float>(),
                         dy.data<float>(), x.data<float>(), g.data<float>(), rstd.data<float>(),
                         rows, C, accumulate_dx,
                         dx_rounded.defined() ? dx_rounded.data<uint16_t>() : nullptr);
}

// ---- RoPE --------------------------------------------------------------------------------

Heads::Heads(const Tensor& all) : x(all), count(all.ndim() == 4 ? all.dim(2) : 0) {}
Heads::Heads(const Tensor& packed, int64_t first, int64_t count)
    : x(packed), first(first), count(count) {}

void copy_heads(const Heads& dst, const Heads& src) {
  const char* op = "copy_heads";
  check_heads(op, "dst", dst);
  check_heads(op, "src", src);
  RETORT_CHECK(dst.shape() == src.shape(), op, ": dst ", shape_str(dst.shape()), " and src ",
               shape_str(src.shape()), " differ");
  RETORT_CHECK(!overlaps(dst, src), op, ": dst and src overlap");
  const Device dev = common_device("copy_rows", {&dst.x, &src.x});
  const int64_t hd = src.x.dim(3), rows = src.x.dim(0) * src.x.dim(1), cols = src.count * hd;
  with_types(dst.x, src.x, [&](auto* yp, const auto* xp) {
    RETORT_KERNEL_MOVING(dev, bytes_of(dst) + bytes_of(src), copy_rows, yp + dst.first * hd,
                         dst.pitch(), xp + src.first * hd, src.pitch(), rows, cols);
  });
}

Tensor rope_table(int64_t T, int64_t head_dim, double theta) {
  RETORT_CHECK(T >= 0, "rope_table: T must be >= 0, got ", T);
  RETORT_CHECK(head_dim > 0 && head_dim % 2 == 0, "rope_table: head_dim must be even and > 0, got ",
               head_dim);
  RETORT_CHECK(theta > 0.0, "rope_table: theta must be > 0, got ", theta);
  Tensor t = Tensor::empty({T, head_dim});
  cpu::rope_table(t.data<float>(), T, head_dim, theta);  // on the host; callers move it
  return t;
}

Tensor rope_table(int64_t T, const std::vector<double>& inv_freq) {
  RETORT_CHECK(T >= 0, "rope_table: T must be >= 0, got ", T);
  RETORT_CHECK(!inv_freq.empty(), "rope_table: no frequencies");
  const int64_t hd = 2 * int64_t(inv_freq.size());
  Tensor t = Tensor::empty({T, hd});
  cpu::rope_table(t.data<float>(), T, hd, inv_freq.data());
  return t;
}

namespace {
// y = x rotated (y may be x; each F32 or BF16, either a window).
void rope_apply(const char* op, const Heads& y, const Heads& x, const Tensor& table, float sign) {
  check_heads(op, "y", y);
  check_heads(op, "x", x);
  check_f32(op, "table", table);
  RETORT_CHECK(y.shape() == x.shape(), op, ": y ", shape_str(y.shape()), " and x ",
               shape_str(x.shape()), " differ");
  const auto [B, T, nh, hd] = std::array<int64_t, 4>{x.x.dim(0), x.x.dim(1), x.count, x.x.dim(3)};
  RETORT_CHECK(hd % 2 == 0, op, ": head_dim must be even, x is ", shape_str(x.shape()));
  RETORT_CHECK(table.ndim() == 2 && table.dim(1) == hd && table.dim(0) >= T, op, ": table ",
               shape_str(table.shape()), " must be [>= ", T, ", ", hd, "] for x ",
               shape_str(x.shape()));
  const bool in_place = y.x.raw() == x.x.raw() && y.first == x.first && y.pitch() == x.pitch();
  RETORT_CHECK(in_place || !overlaps(y, x), op, ": y must be x itself or not overlap it");
  const Device dev = common_device("rope_apply", {&y.x, &x.x, &table});
  with_types(y.x, x.x, [&](auto* yp, const auto* xp) {
    RETORT_KERNEL(dev, rope_apply, yp + y.first * hd, y.pitch(), xp + x.first * hd, x.pitch(),
                  table.data<float>(), B, T, nh, hd, sign);
  });
}
}  // namespace

void rope_forward(const Heads& x, const Tensor& table) {
  rope_apply("rope_forward", x, x, table, 1.0f);
}
void rope_forward(const Heads& y, const Heads& x, const Tensor& table) {
  rope_apply("rope_forward", y, x, table, 1.0f);
}
void rope_backward(const Heads& dx, const Tensor& table) {
  rope_apply("rope_backward", dx, dx, table, -1.0f);
}
void rope_backward(const Heads& y, const Heads& dx, const Tensor& table) {
  rope_apply("rope_backward", y, dx, table, -1.0f);
}

// ---- qk-norm with RoPE --------------------------------------------------------------------

namespace {
// Checks the arguments of rmsnorm_rope_*: x [B, T, nh, hd] (a window; F32 or BF16), g [hd],
// rstd [B·T·nh], table [>= T, hd], hd even and <= 1024; returns {B, T, nh, hd}.
std::array<int64_t, 4> rmsnorm_rope_dims(const char* op, const Heads& x, const Tensor& g,
                                         const Tensor& rstd, const Tensor& table) {
  check_heads(op, "x", x);
  check_f32(op, "g", g);
  check_f32(op, "rstd", rstd);
  check_f32(op, "table", table);
  const int64_t B = x.x.dim(0), T = x.x.dim(1), nh = x.count, hd = x.x.dim(3);
  RETORT_CHECK(hd % 2 == 0 && hd <= 1024, op, ": head_dim must be even and at most 1024, x is ",
               shape_str(x.shape()));
  RETORT_CHECK(g.numel() == hd, op, ": g ", shape_str(g.shape()), " must have ", hd, " elements");
  RETORT_CHECK(rstd.numel() == B * T * nh, op, ": rstd ", shape_str(rstd.shape()), " must have ",
               B * T * nh, " elements (rows of x ", shape_str(x.shape()), ")");
  RETORT_CHECK(table.ndim() == 2 && table.dim(1) == hd && table.dim(0) >= T, op, ": table ",
               shape_str(table.shape()), " must be [>= ", T, ", ", hd, "] for x ",
               shape_str(x.shape()));
  return {B, T, nh, hd};
}

}  // namespace

void rmsnorm_rope_forward(Tensor& y, Tensor& rstd, const Heads& x, const Tensor& g,
                          const Tensor& table, float eps) {
  const char* op = "rmsnorm_rope_forward";
  const auto [B, T, nh, hd] = rmsnorm_rope_dims(op, x, g, rstd, table);
  check_float(op, "y", y);
  RETORT_CHECK(y.shape() == x.shape(), op, ": y ", shape_str(y.shape()), " must be x's shape ",
               shape_str(x.shape()));
  RETORT_CHECK(eps >= 0.0f, op, ": eps must be >= 0, got ", eps);
  RETORT_CHECK(!overlaps(y, x.x) && !overlaps(rstd, x.x) && !overlaps(rstd, y), op,
               ": outputs must not alias inputs");
  const Device dev = common_device(op, {&y, &rstd, &x.x, &g, &table});
  with_types(y, x.x, [&](auto* yp, const auto* xp) {
    RETORT_KERNEL_MOVING(dev, bytes_of({&y, &rstd}) + bytes_of(x), rmsnorm_rope_forward, yp,
                         rstd.data<float>(), xp + x.first * hd, x.pitch(), g.data<float>(),
                         table.data<float>(), B, T, nh, hd, eps);
  });
}

void rmsnorm_rope_backward(const Heads& dx, Tensor& dg, const Tensor& dy, const Heads& x,
                           const Tensor& g, const Tensor& rstd, const Tensor& table) {
  const char* op = "rmsnorm_rope_backward";
  const auto [B, T, nh, hd] = rmsnorm_rope_dims(op, x, g, rstd, table);
  check_heads(op, "dx", dx);
  check_float(op, "dy", dy);
  check_f32(op, "dg", dg);
  RETORT_CHECK(dy.dtype() == x.x.dtype(), op, ": dy (", dtype_name(dy.dtype()), ") and x (",
               dtype_name(x.x.dtype()), ") must have one dtype");
  RETORT_CHECK(dy.shape() == x.shape() && dx.shape() == x.shape(), op, ": dy ",
               shape_str(dy.shape()), " and dx ", shape_str(dx.shape()), " must be x's shape ",
               shape_str(x.shape()));
  RETORT_CHECK(dg.numel() == hd, op, ": dg ", shape_str(dg.shape()), " must have ", hd,
               " elements");
  RETORT_CHECK(!overlaps(dx, x) && !overlaps(dx.x, dy) && !overlaps(dx.x, g) &&
                   !overlaps(dg, dy) && !overlaps(dg, x.x),
               op, ": outputs must not alias inputs");
  const Device dev = common_device(op, {&dx.x, &dg, &dy, &x.x, &g, &rstd, &table});
  with_types(dx.x, x.x, [&](auto* dxp, const auto* xp) {
    using In = std::remove_const_t<std::remove_pointer_t<decltype(xp)>>;
    RETORT_KERNEL_MOVING(dev, bytes_of({&dy, &rstd}) + bytes_of(dx) + bytes_of(x),
                         rmsnorm_rope_backward, dxp + dx.first * hd, dx.pitch(), dg.data<float>(),
                         dy.data<In>(), xp + x.first * hd, x.pitch(), g.data<float>(),
                         rstd.data<float>(), table.data<float>(), B, T, nh, hd);
  });
}

// ---- SwiGLU ------------------------------------------------------------------------------

namespace {
// h [rows, F] and gate_up [rows, 2F] (gate's F columns, then up's); returns F.
int64_t check_swiglu(const char* op, const Tensor& h, const char* h_name, const Tensor& gate_up) {
  check_float(op, h_name, h);
  check_float(op, "gate_up", gate_up);
  const int64_t F = last_dim(h);
  Shape packed = h.shape();
  if (!packed.empty()) packed.back() = 2 * F;
  RETORT_CHECK(gate_up.shape() == packed, op, ": gate_up ", shape_str(gate_up.shape()),
               " must be ", h_name, " ", shape_str(h.shape()), " with twice its columns (",
               shape_str(packed), ": gate, then up)");
  return F;
}

// y or dy [rows, n] against the bias b or its gradient db [n] F32; returns n.
int64_t check_bias(const char* op, const char* yname, const Tensor& y, const char* bname,
                   const Tensor& b) {
  check_float(op, yname, y);
  check_f32(op, bname, b);
  RETORT_CHECK(b.ndim() == 1 && y.ndim() >= 1 && last_dim(y) == b.dim(0), op, ": ", bname, " ",
               shape_str(b.shape()), " must be [n] for ", yname, " ", shape_str(y.shape()),
               " = [rows, n]");
  RETORT_CHECK(!overlaps(y, b), op, ": ", yname, " and ", bname, " must not overlap");
  return b.dim(0);
}
}  // namespace

void bias_add(Tensor& y, const Tensor& b) {
  const char* op = "bias_add";
  const int64_t n = check_bias(op, "y", y, "b", b);
  const Device dev = common_device(op, {&y, &b});
  with_type(y, [&](auto* yp) {
    RETORT_KERNEL_MOVING(dev, 2 * bytes_of({&y}), bias_add, yp, b.data<float>(), rows_of(y), n);
  });
}

void bias_backward(Tensor& db, const Tensor& dy) {
  const char* op = "bias_backward";
  const int64_t n = check_bias(op, "dy", dy, "db", db);
  const Device dev = common_device(op, {&db, &dy});
  with_type(dy, [&](const auto* dp) {
    RETORT_KERNEL_MOVING(dev, bytes_of({&dy}), bias_backward, db.data<float>(), dp, rows_of(dy), n);
  });
}

void swiglu_forward(Tensor& h, const Tensor& gate_up) {
  const char* op = "swiglu_forward";
  const int64_t F = check_swiglu(op, h, "h", gate_up);
  const Device dev = common_device(op, {&h, &gate_up});
  with_types(h, gate_up, [&](auto* hp, const auto* gp) {
    RETORT_KERNEL_MOVING(dev, bytes_of({&h, &gate_up}), swiglu_forward, hp, gp, rows_of(h), F);
  });
}

void swiglu_backward(Tensor& dgate_up, const Tensor& dh, const Tensor& gate_up) {
  const char* op = "swiglu_backward";
  const int64_t F = check_swiglu(op, dh, "dh", gate_up);
  check_float(op, "dgate_up", dgate_up);
  check_same_shape(op, "dgate_up", dgate_up, "gate_up", gate_up);
  RETORT_CHECK(dh.dtype() == gate_up.dtype(), op, ": dh (", dtype_name(dh.dtype()),
               ") must have the dtype of gate_up (", dtype_name(gate_up.dtype()), ")");
  RETORT_CHECK(!overlaps(dgate_up, gate_up) && !overlaps(dgate_up, dh), op,
               ": dgate_up must not alias gate_up or dh");
  const Device dev = common_device(op, {&dgate_up, &dh, &gate_up});
  with_types(dgate_up, gate_up, [&](auto* dp, const auto* gp) {
    using In = std::remove_const_t<std::remove_pointer_t<decltype(gp)>>;
    RETORT_KERNEL_MOVING(dev, bytes_of({&dgate_up, &dh, &gate_up}), swiglu_backward, dp,
                         dh.data<In>(), gp, rows_of(dh), F);
  });
}

// ---- cross-entropy -----------------------------------------------------------------------

namespace {

// The checks the cross-entropy ops share: F32 per-row lse and ce (ce null: backward has none),
// logits [rows, V] F32 or BF16 and I32 targets in [0, V) or -1.
void check_cross_entropy(const char* op, const Tensor* ce, const Tensor& lse, const Tensor& logits,
                         const Tensor& targets) {
  if (ce) check_f32(op, "ce", *ce);
  check_f32(op, "lse", lse);
  check_float(op, "logits", logits);
  check_i32(op, "targets", targets);
  const int64_t V = last_dim(logits), rows = rows_of(logits);
  RETORT_CHECK(V > 0, op, ": logits ", shape_str(logits.shape()), " has an empty vocab dim");
  RETORT_CHECK(targets.numel() == rows && (!ce || ce->numel() == rows) && lse.numel() == rows, op,
               ": targets ", shape_str(targets.shape()), ce ? ", ce " : "",
               ce ? shape_str(ce->shape()) : "", " and lse ", shape_str(lse.shape()),
               " must have ", rows, " elements (rows of logits ", shape_str(logits.shape()), ")");
  check_ids(op, "targets", targets, V);
}

// dlogits: logits' shape, BF16 (from F32 or BF16 logits) or F32 (from F32 logits); logits
// itself or apart from it.
void check_dlogits(const char* op, const Tensor& dlogits, const Tensor& logits) {
  check_float(op, "dlogits", dlogits);
  check_same_shape(op, "dlogits", dlogits, "logits", logits);
  RETORT_CHECK(dlogits.dtype() == DType::BF16 || logits.dtype() == DType::F32, op,
               ": bf16 logits need bf16 dlogits");
  RETORT_CHECK(!overlaps(dlogits, logits) ||
                   (dlogits.raw() == logits.raw() && dlogits.dtype() == logits.dtype()),
               op, ": dlogits must be logits itself or not overlap it");
}

// Calls kernel(dlogits, logits) with the typed pointers of a pair check_dlogits accepted.
template <class Kernel>
void with_dlogits_types(Tensor& dlogits, const Tensor& logits, Kernel&& kernel) {
  with_types(dlogits, logits, [&](auto* dp, const auto* lp) {
    using Out = std::remove_pointer_t<decltype(dp)>;
    using In = std::remove_const_t<std::remove_pointer_t<decltype(lp)>>;
    if constexpr (!std::is_same_v<Out, float> || std::is_same_v<In, float>) kernel(dp, lp);
  });
}

}  // namespace

void cross_entropy_forward(Tensor& ce, Tensor& lse, const Tensor& logits, const Tensor& targets) {
  const char* op = "cross_entropy_forward";
  check_cross_entropy(op, &ce, lse, logits, targets);
  const Device dev = common_device(op, {&ce, &lse, &logits, &targets});
  with_type(logits, [&](const auto* lp) {
    RETORT_KERNEL_MOVING(dev, bytes_of({&logits}), cross_entropy_forward, ce.data<float>(),
                         lse.data<float>(), lp, targets.data<int32_t>(), rows_of(logits),
                         last_dim(logits));
  });
}

void cross_entropy_backward(Tensor& dlogits, const Tensor& logits, const Tensor& lse,
                            const Tensor& targets, float ce_scale, float z_scale) {
  const char* op = "cross_entropy_backward";
  check_cross_entropy(op, nullptr, lse, logits, targets);
  check_dlogits(op, dlogits, logits);
  const Device dev = common_device(op, {&dlogits, &logits, &lse, &targets});
  with_dlogits_types(dlogits, logits, [&](auto* dp, const auto* lp) {
    RETORT_KERNEL_MOVING(dev, bytes_of({&dlogits, &logits}), cross_entropy_backward, dp, lp,
                         lse.data<float>(), targets.data<int32_t>(), rows_of(logits),
                         last_dim(logits), ce_scale, z_scale);
  });
}

void cross_entropy_forward_backward(Tensor& ce, Tensor& lse, Tensor& dlogits, const Tensor& logits,
                                    const Tensor& targets, float ce_scale, float z_scale) {
  const char* op = "cross_entropy_forward_backward";
  check_cross_entropy(op, &ce, lse, logits, targets);
  check_dlogits(op, dlogits, logits);
  const Device dev = common_device(op, {&ce, &lse, &dlogits, &logits, &targets});
  with_dlogits_types(dlogits, logits, [&](auto* dp, const auto* lp) {
    RETORT_KERNEL_MOVING(dev, bytes_of({&dlogits, &logits}), cross_entropy_forward_backward,
                         ce.data<float>(), lse.data<float>(), dp, lp, targets.data<int32_t>(),
                         rows_of(logits), last_dim(logits), ce_scale, z_scale);
  });
}

void target_logits(Tensor& out, const Tensor& logits, const Tensor& targets) {
  const char* op = "target_logits";
  check_f32(op, "out", out);
  check_float(op, "logits", logits);
  check_i32(op, "targets", targets);
  const int64_t V = last_dim(logits), rows = rows_of(logits);
  RETORT_CHECK(targets.numel() == rows && out.numel() == rows, op, ": targets ",
               shape_str(targets.shape()), " and out ", shape_str(out.shape()), " must have ", rows,
               " elements (rows of logits ", shape_str(logits.shape()), ")");
  check_ids(op, "targets", targets, V);
  const Device dev = common_device("target_logits", {&out, &logits, &targets});
  with_type(logits, [&](const auto* lp) {
    RETORT_KERNEL(dev, target_logits, out.data<float>(), lp, targets.data<int32_t>(), rows, V);
  });
}

void logsumexp_merge(Tensor& lse, const Tensor& parts) {
  const char* op = "logsumexp_merge";
  check_f32(op, "lse", lse);
  check_f32(op, "parts", parts);
  RETORT_CHECK(parts.ndim() == 2 && parts.dim(1) == lse.numel(), op, ": parts must be [n, ",
               lse.numel(), "], got ", shape_str(parts.shape()));
  const Device dev = common_device("logsumexp_merge", {&lse, &parts});
  RETORT_KERNEL(dev, logsumexp_merge, lse.data<float>(), parts.data<float>(), parts.dim(0), lse.numel());
}

void vocab_shard_ids(Tensor& out, const Tensor& ids, int64_t begin, int64_t shard_vocab, int64_t vocab) {
  const char* op = "vocab_shard_ids";
  check_i32(op, "out", out);
  check_i32(op, "ids", ids);
  RETORT_CHECK(out.numel() == ids.numel(), op, ": out ", shape_str(out.shape()), " and ids ",
               shape_str(ids.shape()), " differ in size");
  RETORT_CHECK(begin >= 0 && shard_vocab > 0 && begin + shard_vocab <= vocab &&
                   vocab <= std::numeric_limits<int32_t>::max(),
               op, ": shard [", begin, ", ", begin + shard_vocab, ") is not inside [0, ", vocab, ")");
  const int64_t i = first_id_out_of_range(ids, 0, static_cast<int32_t>(vocab));
  if (i >= 0) {
    int32_t bad = 0;
    device::copy_bytes(&bad, Device::CPU, ids.data<int32_t>() + i, ids.device(), sizeof bad);
    throw Error(str_cat(op, ": top-k id ", bad, " (element ", i, ") is out of range [0, ", vocab, ")"));
  }
  const Device dev = common_device(op, {&out, &ids});
  RETORT_KERNEL(dev, vocab_shard_ids, out.data<int32_t>(), ids.data<int32_t>(), ids.numel(),
                static_cast<int32_t>(begin), static_cast<int32_t>(shard_vocab));
}

// ---- attention ---------------------------------------------------------------------------

namespace {
struct AttnDims {
  int64_t B, T, H, Hkv, hd;
  int64_t W = 0;  // the sliding window as the kernels take it, 1..T (window_within)
};

AttnDims check_attention(const char* op, const Heads& q, const Heads& k, const Heads& v) {
  check_heads(op, "q", q);
  check_heads(op, "k", k);
  check_heads(op, "v", v);
  RETORT_CHECK(k.shape() == v.shape(), op, ": k ", shape_str(k.shape()), " and v ",
               shape_str(v.shape()), " differ");
  const Shape qs = q.shape(), ks = k.shape();
  AttnDims d{qs[0], qs[1], qs[2], ks[2], qs[3]};
  RETORT_CHECK(ks[0] == d.B && ks[1] == d.T && ks[3] == d.hd, op, ": q ", shape_str(qs),
               " and k ", shape_str(ks), " differ in batch, time or head_dim");
  RETORT_CHECK(d.Hkv > 0 && d.H % d.Hkv == 0, op, ": query heads (", d.H,
               ") must be a multiple of kv heads (", d.Hkv, "): q ", shape_str(qs), ", k ",
               shape_str(ks));
  RETORT_CHECK(d.hd > 0, op, ": head_dim must be > 0");
  return d;
}

// The keys a query sees at most, as the kernels take it: 1..T (a window of 0 or beyond T: T).
int64_t window_within(const char* op, int64_t window, int64_t T) {
  RETORT_CHECK(window >= 0, op, ": window must be >= 0 (0: none), got ", window);
  return window > 0 && window < T ? window : T;
}

AttentionKernel g_attention_kernel = AttentionKernel::Auto;
const char* g_attention_used = "";

bool wants_cudnn() {
  return g_attention_kernel == AttentionKernel::Cudnn ||
         (g_attention_kernel == AttentionKernel::Auto && matmul_precision() == MatmulPrecision::BF16);
}

// cuDNN has no engine for this shape: an error when it was asked for by name; under Auto one
// line per shape and op, then the plain kernel.
std::string shape_text(const AttnDims& d) {
  return str_cat("B=", d.B, " T=", d.T, " heads=", d.H, " kv_heads=", d.Hkv, " head_dim=", d.hd,
                 d.W > 0 && d.W < d.T ? str_cat(" window=", d.W) : "");
}

void cudnn_unavailable(const char* op, const AttnDims& d, const std::string& why) {
  const std::string shape = shape_text(d);
  if (g_attention_kernel == AttentionKernel::Cudnn)
    throw Error(str_cat(op, ": train.attention is cudnn but cuDNN has no fused attention engine for ",
                        shape, ": ", why));
  static std::set<std::string> told;
  if (told.insert(str_cat(op, shape)).second)
    std::fprintf(stderr, "retort: %s: cuDNN has no fused attention engine for %s (%s); using the plain kernel\n",
                 op, shape.c_str(), why.c_str());
}
// cuDNN refused the head windows' pitches but took contiguous copies: one line per op and
// shape (the copies cost a pass over q, k, v, or over dq, dk, dv too).
void cudnn_took_copies(const char* op, const AttnDims& d, const std::string& why) {
  static std::set<std::string> told;
  const std::string shape = shape_text(d);
  if (told.insert(str_cat(op, shape)).second)
    std::fprintf(stderr, "retort: %s: cuDNN refused the head windows for %s (%s); using contiguous copies\n",
                 op, shape.c_str(), why.c_str());
}
}  // namespace

void set_attention_kernel(AttentionKernel k) { g_attention_kernel = k; }
AttentionKernel attention_kernel() { return g_attention_kernel; }
const char* attention_kernel_used() { return g_attention_used; }

void attention_forward(Tensor& out, Tensor& lse, const Heads& q, const Heads& k, const Heads& v,
                       int64_t window) {
  const char* op = "attention_forward";
  AttnDims d = check_attention(op, q, k, v);
  const int64_t W = d.W = window_within(op, window, d.T);
  check_float(op, "out", out);
  check_f32(op, "lse", lse);
  RETORT_CHECK(out.shape() == q.shape(), op, ": out ", shape_str(out.shape()), " must be q's shape ",
               shape_str(q.shape()));
  RETORT_CHECK(lse.numel() == d.B * d.H * d.T, op, ": lse ", shape_str(lse.shape()),
               " must be [B, H, T] = [", d.B, ", ", d.H, ", ", d.T, "]");
  RETORT_CHECK(!overlaps(out, q.x) && !overlaps(out, k.x) && !overlaps(out, v.x), op,
               ": out must not alias q, k or v");
  if (out.numel() == 0) return;
  const Device dev = common_device("attention_forward", {&out, &lse, &q.x, &k.x, &v.x});
#if RETORT_HAVE_CUDA
  if (dev == Device::CUDA && wants_cudnn()) {
    // bf16 in and out: bf16 windows read in place; should cuDNN refuse their pitches, through
    // contiguous copies (and failing that, the plain kernel).
    const DType b16 = DType::BF16;
    const Tensor o16 = output_in(out, b16);
    std::string why;
    for (const bool copies : {false, true}) {
      if (copies && q.whole() && k.whole() && v.whole()) break;  // nothing else to try
      const auto in = [&](const Heads& h) {
        return copies ? Heads(contiguous_as(h, b16)) : window_as(h, b16);
      };
      const Heads q16 = in(q), k16 = in(k), v16 = in(v);
      if (cuda::attention_forward_cudnn(
              o16.data<uint16_t>(), lse.data<float>(), q16.data<uint16_t>(), k16.data<uint16_t>(),
              v16.data<uint16_t>(), {q16.pitch(), k16.pitch(), v16.pitch()}, d.B, d.T, d.H, d.Hkv,
              d.hd, W, &why)) {
        finish_output(out, o16);
        g_attention_used = "cudnn";
        if (copies) cudnn_took_copies(op, d, why);
        return;
      }
    }
    cudnn_unavailable(op, d, why);
  }
#endif
  g_attention_used = dev == Device::CPU ? "cpu" : "plain";
  const DType f32 = DType::F32;
  const Heads qf = window_as(q, f32), kf = window_as(k, f32), vf = window_as(v, f32);
  const Tensor of = output_in(out, f32);
  RETORT_KERNEL(dev, attention_forward, of.data<float>(), lse.data<float>(), qf.data<float>(),
                kf.data<float>(), vf.data<float>(), {qf.pitch(), kf.pitch(), vf.pitch()}, d.B,
                d.T, d.H, d.Hkv, d.hd, W);
  finish_output(out, of);
}

void attention_decode(Tensor& out, const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                      int64_t n_keys, int64_t window) {
  const char* op = "attention_decode";
  check_float(op, "out", out);
  check_f32(op, "q", q);
  check_float(op, "k_cache", k_cache);
  check_float(op, "v_cache", v_cache);
  RETORT_CHECK(v_cache.dtype() == k_cache.dtype(), op, ": k_cache is ", dtype_name(k_cache.dtype()),
               ", v_cache ", dtype_name(v_cache.dtype()));
  RETORT_CHECK(q.ndim() == 3 && k_cache.ndim() == 4, op, ": q ", shape_str(q.shape()),
               " must be [B, H, hd] and k_cache ", shape_str(k_cache.shape()),
               " [B, T_max, Hkv, hd]");
  check_same_shape(op, "k_cache", k_cache, "v_cache", v_cache);
  check_same_shape(op, "out", out, "q", q);
  const int64_t B = q.dim(0), H = q.dim(1), hd = q.dim(2), T_max = k_cache.dim(1),
                Hkv = k_cache.dim(2);
  RETORT_CHECK(k_cache.dim(0) == B && k_cache.dim(3) == hd, op, ": q ", shape_str(q.shape()),
               " and k_cache ", shape_str(k_cache.shape()), " differ in batch or head_dim");
  RETORT_CHECK(Hkv > 0 && H % Hkv == 0, op, ": query heads (", H,
               ") must be a multiple of kv heads (", Hkv, ")");
  RETORT_CHECK(n_keys >= 1 && n_keys <= T_max, op, ": n_keys ", n_keys, " outside [1, ", T_max, "]");
  RETORT_CHECK(!overlaps(out, q) && !overlaps(out, k_cache) && !overlaps(out, v_cache), op,
               ": out must not alias q or the caches");
  if (q.numel() == 0) return;
  const Device dev = common_device("attention_decode", {&out, &q, &k_cache, &v_cache});
  // The keys seen: [j0, n_keys), the kernels reading the caches from key j0 on (each sequence
  // still T_max keys from the next).
  const int64_t n = window_within(op, window, n_keys), j0 = n_keys - n;
  with_types(out, k_cache, [&](auto* o, const auto* k) {
    using KV = std::remove_cv_t<std::remove_pointer_t<decltype(k)>>;
    // the n cached keys and values seen, of every sequence and kv head
    const double cached = 2.0 * double(B * n * Hkv * hd) * double(sizeof(KV));
    RETORT_KERNEL_MOVING(dev, cached + bytes_of({&out, &q}), attention_decode, o, q.data<float>(),
                         k + j0 * Hkv * hd, v_cache.data<KV>() + j0 * Hkv * hd, B, T_max, n, H,
                         Hkv, hd);
  });
}

void attention_backward(const Heads& dq, const Heads& dk, const Heads& dv, const Tensor& dout,
                        const Heads& q, const Heads& k, const Heads& v, const Tensor& out,
                        const Tensor& lse, int64_t window) {
  const char* op = "attention_backward";
  AttnDims d = check_attention(op, q, k, v);
  const int64_t W = d.W = window_within(op, window, d.T);
  check_heads(op, "dq", dq);
  check_heads(op, "dk", dk);
  check_heads(op, "dv", dv);
  check_float(op, "dout", dout);
  check_float(op, "out", out);
  check_f32(op, "lse", lse);
  for (const auto& [name, g, x] : {std::tuple{"dq", &dq, &q}, std::tuple{"dk", &dk, &k},
                                   std::tuple{"dv", &dv, &v}})
    RETORT_CHECK(g->shape() == x->shape(), op, ": ", name, " ", shape_str(g->shape()),
                 " must have the shape of its input ", shape_str(x->shape()));
  for (const auto& [name, t] : {std::pair{"dout", &dout}, std::pair{"out", &out}})
    RETORT_CHECK(t->shape() == q.shape(), op, ": ", name, " ", shape_str(t->shape()),
                 " must be q's shape ", shape_str(q.shape()));
  RETORT_CHECK(lse.numel() == d.B * d.H * d.T, op, ": lse ", shape_str(lse.shape()),
               " must be [B, H, T] = [", d.B, ", ", d.H, ", ", d.T, "]");
  for (const Heads* g : {&dq, &dk, &dv}) {
    for (const Heads* in : {&q, &k, &v})
      RETORT_CHECK(!overlaps(*g, *in), op, ": gradients must not alias inputs");
    for (const Tensor* in : {&dout, &out, &lse})
      RETORT_CHECK(!overlaps(g->x, *in), op, ": gradients must not alias inputs");
  }
  RETORT_CHECK(!overlaps(dq, dk) && !overlaps(dq, dv) && !overlaps(dk, dv), op,
               ": dq, dk, dv must not alias each other");
  if (out.numel() == 0) return;
  const Device dev = common_device("attention_backward",
                                   {&dq.x, &dk.x, &dv.x, &dout, &q.x, &k.x, &v.x, &out, &lse});
#if RETORT_HAVE_CUDA
  if (dev == Device::CUDA && wants_cudnn()) {
    // bf16 throughout: bf16 windows read and written in place, else (or should cuDNN refuse
    // their pitches) through contiguous copies; failing that, the plain kernel.
    const DType b16 = DType::BF16;
    const Tensor do16 = as_dtype(dout, b16), o16 = as_dtype(out, b16);
    std::string why;
    for (const bool copies : {false, true}) {
      if (copies && q.whole() && k.whole() && v.whole() && dq.whole() && dk.whole() && dv.whole())
        break;  // nothing else to try
      const auto in = [&](const Heads& h) {
        return copies ? Heads(contiguous_as(h, b16)) : window_as(h, b16);
      };
      const auto to = [&](const Heads& h) {
        return copies ? Heads(output_in(h, b16)) : output_window_as(h, b16);
      };
      const Heads q16 = in(q), k16 = in(k), v16 = in(v), dq16 = to(dq), dk16 = to(dk), dv16 = to(dv);
      if (cuda::attention_backward_cudnn(
              dq16.data<uint16_t>(), dk16.data<uint16_t>(), dv16.data<uint16_t>(),
              do16.data<uint16_t>(), q16.data<uint16_t>(), k16.data<uint16_t>(),
              v16.data<uint16_t>(), o16.data<uint16_t>(), lse.data<float>(),
              {q16.pitch(), k16.pitch(), v16.pitch(), dq16.pitch(), dk16.pitch(), dv16.pitch()},
              d.B, d.T, d.H, d.Hkv, d.hd, W, &why)) {
        finish_heads(dq, dq16.x);
        finish_heads(dk, dk16.x);
        finish_heads(dv, dv16.x);
        if (copies) cudnn_took_copies(op, d, why);
        return;
      }
    }
    cudnn_unavailable(op, d, why);
  }
#endif
  // The plain kernels read and write fp32 windows in place (bf16 ones through fp32 copies).
  const DType f32 = DType::F32;
  const Tensor di = as_dtype(dout, f32), oi = as_dtype(out, f32);
  const Heads qi = window_as(q, f32), ki = window_as(k, f32), vi = window_as(v, f32);
  const Heads dqo = output_window_as(dq, f32), dko = output_window_as(dk, f32),
              dvo = output_window_as(dv, f32);
  RETORT_KERNEL(dev, attention_backward, dqo.data<float>(), dko.data<float>(), dvo.data<float>(),
                di.data<float>(), qi.data<float>(), ki.data<float>(), vi.data<float>(),
                oi.data<float>(), lse.data<float>(),
                {qi.pitch(), ki.pitch(), vi.pitch(), dqo.pitch(), dko.pitch(), dvo.pitch()}, d.B,
                d.T, d.H, d.Hkv, d.hd, W);
  finish_heads(dq, dqo.x);
  finish_heads(dk, dko.x);
  finish_heads(dv, dvo.x);
}

// ---- embedding ---------------------------------------------------------------------------

void embedding_forward(Tensor& out, const Tensor& ids, const Tensor& table) {
  const char* op = "embedding_forward";
  check_f32(op, "out", out);
  check_i32(op, "ids", ids);
  check_float(op, "table", table);
  RETORT_CHECK(table.ndim() == 2, op, ": table must be [V, d], got ", shape_str(table.shape()));
  const int64_t V = table.dim(0), d = table.dim(1), rows = ids.numel();
  RETORT_CHECK(out.numel() == rows * d && last_dim(out) == d, op, ": out ",
               shape_str(out.shape()), " must be [", rows, ", ", d, "] for ids ",
               shape_str(ids.shape()), " and table ", shape_str(table.shape()));
  check_ids(op, "ids", ids, V);
  const Device dev = common_device("embedding_forward", {&out, &ids, &table});
  if (table.dtype() == DType::BF16)
    RETORT_KERNEL(dev, embedding_forward, out.data<float>(), ids.data<int32_t>(), table.data<uint16_t>(), rows, d);
  else
    RETORT_KERNEL(dev, embedding_forward, out.data<float>(), ids.data<int32_t>(), table.data<float>(), rows, d);
}

void embedding_backward(Tensor& dtable, const Tensor& dout, const Tensor& ids) {
  const char* op = "embedding_backward";
  check_f32(op, "dtable", dtable);
  check_f32(op, "dout", dout);
  check_i32(op, "ids", ids);
  RETORT_CHECK(dtable.ndim() == 2, op, ": dtable must be [V, d], got ",
               shape_str(dtable.shape()));
  const int64_t V = dtable.dim(0), d = dtable.dim(1), rows = ids.numel();
  RETORT_CHECK(dout.numel() == rows * d && last_dim(dout) == d, op, ": dout ",
               shape_str(dout.shape()), " must be [", rows, ", ", d, "] for ids ",
               shape_str(ids.shape()), " and dtable ", shape_str(dtable.shape()));
  check_ids(op, "ids", ids, V);
  const Device dev = common_device("embedding_backward", {&dtable, &dout, &ids});
  RETORT_KERNEL(dev, embedding_backward, dtable.data<float>(), dout.data<float>(), ids.data<int32_t>(), rows, d);
}

// ---- AdamW -------------------------------------------------------------------------------

void adamw_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, float lr, float beta1,
                float beta2, float eps, float weight_decay, int64_t step) {
  const char* op = "adamw_step";
  check_f32(op, "param", param);
  check_f32(op, "grad", grad);
  check_f32(op, "m", m);
  check_f32(op, "v", v);
  check_numel(op, "param", param, "grad", grad);
  check_numel(op, "param", param, "m", m);
  check_numel(op, "param", param, "v", v);
  RETORT_CHECK(step >= 1, op, ": step counts from 1, got ", step);
  RETORT_CHECK(beta1 >= 0.0f && beta1 < 1.0f && beta2 >= 0.0f && beta2 < 1.0f, op,
               ": betas must be in [0, 1), got ", beta1, ", ", beta2);
  const Device dev = common_device("adamw_step", {&param, &grad, &m, &v});
  RETORT_KERNEL(dev, adamw_step, param.data<float>(), grad.data<float>(), m.data<float>(), v.data<float>(),
                  param.numel(), lr, beta1, beta2, eps, weight_decay, step);
}

void adamw_step_multi(const std::vector<AdamWTensors>& tensors, float lr, float beta1,
                      float beta2, float eps, float weight_decay, int64_t step, float grad_scale) {
  const char* op = "adamw_step_multi";
  RETORT_CHECK(step >= 1, op, ": step counts from 1, got ", step);
  RETORT_CHECK(beta1 >= 0.0f && beta1 < 1.0f && beta2 >= 0.0f && beta2 < 1.0f, op,
               ": betas must be in [0, 1), got ", beta1, ", ", beta2);
  if (tensors.empty()) return;
  const Device dev = tensors[0].param->device();
  std::vector<AdamWTensor> args(tensors.size());
  for (size_t t = 0; t < tensors.size(); ++t) {
    const AdamWTensors& x = tensors[t];
    check_f32_at(op, "tensors", t, ".param", *x.param);
    check_f32_at(op, "tensors", t, ".grad", *x.grad);
    check_f32_at(op, "tensors", t, ".m", *x.m);
    check_f32_at(op, "tensors", t, ".v", *x.v);
    const int64_t n = x.param->numel();
    RETORT_CHECK(x.grad->numel() == n && x.m->numel() == n && x.v->numel() == n, op,
                 ": size mismatch in tensors[", t, "]: param ", shape_str(x.param->shape()),
                 ", grad ", shape_str(x.grad->shape()), ", m ", shape_str(x.m->shape()), ", v ",
                 shape_str(x.v->shape()));
    RETORT_CHECK(common_device(op, {x.param, x.grad, x.m, x.v}) == dev, op,
                 ": tensors on different devices (tensors[0] and tensors[", t,
                 "]); move them with Tensor::to()");
    args[t] = {x.param->data<float>(), x.grad->data<float>(), x.m->data<float>(),
               x.v->data<float>(), x.param->numel(), x.decay, x.lr_scale};
  }
  double elements = 0;  // each read (p, g, m, v) and written (p, m, v) once: 28 bytes
  for (const AdamWTensor& a : args) elements += double(a.n);
  RETORT_KERNEL_MOVING(dev, 28.0 * elements, adamw_step_multi, args.data(),
                       static_cast<int64_t>(args.size()), lr, beta1, beta2, eps, weight_decay,
                       step, grad_scale);
}

}  // namespace retort::ops

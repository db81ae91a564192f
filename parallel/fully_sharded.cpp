#include "parallel/fully_sharded.h"

#include <algorithm>
#include <cmath>

#include "core/ops.h"

namespace retort {

FullyShardedDP::FullyShardedDP(Transformer& model, std::shared_ptr<Communicator> fsdp,
                               std::shared_ptr<Communicator> dp, bool keep_params,
                               GradReduce precision, ParamGather gather)
    : model_(model), fsdp_(std::move(fsdp)), dp_(std::move(dp)), keep_params_(keep_params),
      precision_(precision), gather_(gather), F_(fsdp_->size()), k_(fsdp_->rank()) {
  RETORT_CHECK(model.flat_params().defined(), "FullyShardedDP needs a model that holds its full parameters");
  device_ = model.flat_params().device();
  const int U = model.num_units();
  for (int u = 0; u < U; ++u) {
    const auto [b, e] = model.unit_range(u);
    const int64_t n = e - b, c = (n + F_ - 1) / F_;
    units_.push_back(Unit{b, n, c, shard_elems_});
    shard_elems_ += c;
    max_padded_ = std::max(max_padded_, c * F_);
    max_chunk_ = std::max(max_chunk_, c);
    max_gains_ = std::max(max_gains_, model.unit_gain_elems(u));
  }
  // Pieces: this rank owns unit-relative [k·c, (k+1)·c) of each unit; cut it at parameter edges.
  const auto& ps = model.parameters();
  for (size_t i = 0; i < ps.size(); ++i) {
    const int64_t off = ps[i].offset, m = shape_numel(ps[i].shape);
    const Unit* unit = nullptr;
    for (const Unit& un : units_)
      if (off >= un.begin && off < un.begin + un.n) unit = &un;
    RETORT_CHECK(unit && off + m <= unit->begin + unit->n, "parameter ", ps[i].name, " spans two units");
    const int64_t lo = unit->begin + k_ * unit->chunk, hi = lo + unit->chunk;  // owned flat range
    const int64_t a = std::max(off, lo), b = std::min(off + m, hi);
    if (b > a) pieces_.push_back(Piece{i, a - off, unit->shard_off + (a - lo), b - a});
  }
  params_ = Tensor::zeros({shard_elems_}, DType::F32, device_);
  grads_ = Tensor::zeros({shard_elems_}, DType::F32, device_);
  scatter_full(params_, model.flat_params());
  model.release_flat();
  model.set_unit_hooks(this);

  // The order in which the model uses units (transformer.h), for prefetching the next one.
  const int L = U - 2;
  const bool tied = model.config().tie_embeddings;
  for (int u = 0; u <= L + 1; ++u) fwd_order_.push_back(u);
  if (tied) fwd_order_.push_back(0);
  bwd_order_.push_back(L + 1);
  if (tied) bwd_order_.push_back(0);
  for (int u = L; u >= 0; --u) bwd_order_.push_back(u);
  fwd_pos_ = fwd_order_.size();
  bwd_pos_ = bwd_order_.size();
}

FullyShardedDP::~FullyShardedDP() {
  model_.set_unit_hooks(nullptr);
  try {
    release_all();
  } catch (...) {  // MPI already failing: nothing left to save
  }
}

// ---- buffers -------------------------------------------------------------------------------

Tensor FullyShardedDP::take(std::vector<Tensor>& pool, int64_t& allocated, int64_t n,
                            DType dtype) {
  if (!pool.empty()) {
    Tensor t = pool.back();
    pool.pop_back();
    return t;
  }
  ++allocated;
  return Tensor::empty({n}, dtype, device_);
}

int64_t FullyShardedDP::gather_buffer_bytes() const {
  return (full_allocated_ * max_padded_ + chunk_allocated_ * max_chunk_ +
          gains_allocated_ * max_gains_) * int64_t(sizeof(float)) +
         (full16_allocated_ * max_padded_ + chunk16_allocated_ * max_chunk_) * 2;
}

void FullyShardedDP::prefetch(int u) {
  if (resident_.count(u)) return;
  Gathered g;
  const int64_t c = units_[u].chunk;
  if (gather_ == ParamGather::F32) {
    g.buf = take(free_full_, full_allocated_, max_padded_);
    Tensor out = g.buf.flat(0, c * F_);
    g.req = fsdp_->all_gather_async(out, chunk_of(params_, u));  // full_u ← concat_k chunk_k
  } else {  // this rank's chunk rounded to bf16, gathered in bf16; gains widened by gathered()
    g.buf = take(free_gains_, gains_allocated_, max_gains_);
    g.chunk16 = take(free_chunk16_, chunk16_allocated_, max_chunk_, DType::BF16);
    g.buf16 = take(free_full16_, full16_allocated_, max_padded_, DType::BF16);
    Tensor in = g.chunk16.flat(0, c), out = g.buf16.flat(0, c * F_);
    ops::convert(in, chunk_of(params_, u));
    g.req = fsdp_->all_gather_async(out, in);
  }
  resident_.emplace(u, std::move(g));
}

void FullyShardedDP::recycle(Gathered& g) {
  (gather_ == ParamGather::F32 ? free_full_ : free_gains_).push_back(g.buf);
  if (g.buf16.defined()) free_full16_.push_back(g.buf16);
  if (g.chunk16.defined()) free_chunk16_.push_back(g.chunk16);
  g = Gathered();
}

Tensor& FullyShardedDP::gathered(int u) {
  prefetch(u);
  Gathered& g = resident_.at(u);
  if (g.req) {
    g.req->wait();
    g.req.reset();
    if (g.buf16.defined()) {  // the norm gains (and biases) widened from the bf16 gather, packed
      int64_t packed = 0;
      for (const auto& [b, e] : model_.unit_gain_runs(u)) {
        Tensor gains = g.buf.flat(packed, e - b);
        ops::convert(gains, g.buf16.flat(b, e - b));
        packed += e - b;
      }
      free_chunk16_.push_back(g.chunk16);  // the gather's input is done with
      g.chunk16 = Tensor();
    }
  }
  return g.buf;
}

void FullyShardedDP::bind(int u, const Tensor& grads) {
  const Tensor& full = gathered(u);
  model_.bind_unit(u, full, grads, resident_.at(u).buf16);
}

void FullyShardedDP::release(int u) {
  auto it = resident_.find(u);
  if (it == resident_.end()) return;
  if (it->second.req) it->second.req->wait();
  recycle(it->second);
  resident_.erase(it);
  model_.bind_unit(u, Tensor(), Tensor());
}

void FullyShardedDP::complete_oldest_scatter() {
  Scatter& s = scatters_.front();
  s.req->wait();
  Tensor dst = chunk_of(grads_, s.unit);
  ops::add_inplace(dst, s.chunk.flat(0, units_[s.unit].chunk));  // gshard_u += Σ_ranks chunk
  free_full_.push_back(s.full);
  free_chunk_.push_back(s.chunk);
  scatters_.pop_front();
}

void FullyShardedDP::release_all() {
  while (!scatters_.empty()) complete_oldest_scatter();
  while (!resident_.empty()) release(resident_.begin()->first);
  for (auto& [u, g] : grad_bound_) free_full_.push_back(g);
  grad_bound_.clear();
}

void FullyShardedDP::progress() {  // MPI advances non-blocking collectives inside MPI calls
  for (auto& [u, g] : resident_)
    if (g.req) g.req->test();
  for (auto& s : scatters_) s.req->test();
}

// ---- pass order ----------------------------------------------------------------------------

// Advance `pos` past unit u's use; the unit expected next, or -1. A pass starts at order[0].
int FullyShardedDP::next_in(const std::vector<int>& order, size_t& pos, int u) const {
  if (pos < order.size() && order[pos] == u) {
    ++pos;
  } else if (u == order[0]) {
    pos = 1;
  } else {
    pos = order.size();  // unexpected order: no prefetch until the next pass starts
    return -1;
  }
  return pos < order.size() ? order[pos] : -1;
}

bool FullyShardedDP::needed_later(const std::vector<int>& order, size_t pos, int u) const {
  for (size_t i = pos; i < order.size(); ++i)
    if (order[i] == u) return true;
  return false;
}

// ---- unit hooks ----------------------------------------------------------------------------

void FullyShardedDP::before_forward(int u) {
  progress();
  bind(u, Tensor());
  const int next = next_in(fwd_order_, fwd_pos_, u);
  if (next >= 0) prefetch(next);
}

void FullyShardedDP::after_forward(int u) {
  if (keep_params_ && training_) return;  // kept until its backward
  release(u);
}

void FullyShardedDP::before_backward(int u) {
  progress();
  Tensor g = take(free_full_, full_allocated_, max_padded_);
  Tensor gp = g.flat(0, units_[u].chunk * F_);
  ops::fill(gp, 0.0f);  // the padding stays 0 through the reduce-scatter
  grad_bound_[u] = g;
  bind(u, g);
  const int next = next_in(bwd_order_, bwd_pos_, u);
  if (next >= 0) prefetch(next);
}

void FullyShardedDP::after_backward(int u) {
  Scatter s;
  s.unit = u;
  s.full = grad_bound_.at(u);
  grad_bound_.erase(u);
  s.chunk = take(free_chunk_, chunk_allocated_, max_chunk_);
  Tensor in = s.full.flat(0, units_[u].chunk * F_), out = s.chunk.flat(0, units_[u].chunk);
  // chunk_k = Σ_ranks dfull_u[k·c, (k+1)·c), in grad_reduce precision (bf16: written by wait())
  s.req = reduce_scatter_grads_async(*fsdp_, out, in, precision_);
  scatters_.push_back(std::move(s));
  if (keep_params_ && training_ && needed_later(bwd_order_, bwd_pos_, u))
    bind(u, Tensor());
  else
    release(u);
  while (scatters_.size() > 1) complete_oldest_scatter();  // one in flight while the next unit runs
}

// ---- step ----------------------------------------------------------------------------------

void FullyShardedDP::zero_grad() {
  release_all();
  ops::fill(grads_, 0.0f);
}

void FullyShardedDP::set_training(bool on) { training_ = on; }

void FullyShardedDP::finish_backward() { release_all(); }

void FullyShardedDP::reduce_over_dp() {
  if (dp_ && dp_->size() > 1) all_reduce_grads(*dp_, grads_, precision_);
}

double FullyShardedDP::grad_sq(const std::function<bool(const Parameter&)>& counted) const {
  const auto& ps = model_.parameters();
  std::vector<Tensor> grads;
  for (const Piece& p : pieces_)
    if (counted(ps[p.param])) grads.push_back(grads_.flat(p.shard_off, p.n));
  return sum_over_ranks(*fsdp_, ops::sum_squares_multi(grads));
}

std::vector<OptimizedTensor> FullyShardedDP::optimizer_pieces() const {
  std::vector<OptimizedTensor> out;
  const auto& ps = model_.parameters();
  for (const Piece& p : pieces_)
    out.push_back({ps[p.param].name, params_.flat(p.shard_off, p.n), grads_.flat(p.shard_off, p.n),
                   ps[p.param].decay, ps[p.param].lr_scale});
  return out;
}

std::vector<std::pair<size_t, int64_t>> FullyShardedDP::piece_positions() const {
  std::vector<std::pair<size_t, int64_t>> out;
  for (const Piece& p : pieces_) out.emplace_back(p.param, p.begin);
  return out;
}

// ---- shard ↔ full --------------------------------------------------------------------------

Tensor FullyShardedDP::gather_full(const Tensor& shard) {
  release_all();
  // On the host (the checkpoint writers' side): a GPU rank never holds all N parameters.
  Tensor full = k_ == 0 ? Tensor::empty({model_.num_params()}) : Tensor();
  Tensor buf = take(free_full_, full_allocated_, max_padded_);
  for (size_t u = 0; u < units_.size(); ++u) {
    const Unit& un = units_[u];
    Tensor out = buf.flat(0, un.chunk * F_);
    fsdp_->all_gather(out, chunk_of(shard, int(u)));
    if (k_ != 0) continue;
    Tensor dst = full.flat(un.begin, un.n);
    ops::copy(dst, buf.flat(0, un.n));  // device → host when the shards are on a GPU
  }
  free_full_.push_back(buf);
  return full;
}

void FullyShardedDP::scatter_full(Tensor& shard, const Tensor& full) const {
  RETORT_CHECK(shard.numel() == shard_elems_ && full.numel() == model_.num_params(), "scatter_full: sizes");
  ops::fill(shard, 0.0f);
  for (const Unit& un : units_) {
    const int64_t len = std::clamp<int64_t>(un.n - k_ * un.chunk, 0, un.chunk);
    if (len == 0) continue;
    Tensor dst = shard.flat(un.shard_off, len);
    ops::copy(dst, full.flat(un.begin + k_ * un.chunk, len));
  }
}

Tensor FullyShardedDP::pack_pieces(const std::vector<NamedTensor>& pieces) const {
  RETORT_CHECK(pieces.size() == pieces_.size(), "pack_pieces: ", pieces.size(), " tensors for ",
               pieces_.size(), " pieces");
  Tensor shard = Tensor::zeros({shard_elems_}, DType::F32, device_);
  for (size_t i = 0; i < pieces_.size(); ++i) {
    Tensor dst = shard.flat(pieces_[i].shard_off, pieces_[i].n);
    ops::copy(dst, pieces[i].tensor);
  }
  return shard;
}

void FullyShardedDP::unpack_pieces(std::vector<NamedTensor>& pieces, const Tensor& shard) const {
  RETORT_CHECK(pieces.size() == pieces_.size(), "unpack_pieces: ", pieces.size(), " tensors for ",
               pieces_.size(), " pieces");
  for (size_t i = 0; i < pieces_.size(); ++i)
    ops::copy(pieces[i].tensor, shard.flat(pieces_[i].shard_off, pieces_[i].n));
}

std::vector<NamedTensor> FullyShardedDP::named_views(const Tensor& full) const {
  std::vector<NamedTensor> out;
  for (const Parameter& p : model_.parameters())
    out.push_back({p.name, full.flat(p.offset, shape_numel(p.shape)).view(p.shape)});
  return out;
}

}  // namespace retort

// Fully sharded data parallelism, run under mpirun (4 ranks, fsdp over the world): against a
// replicated model on the same seeded data, every rank can compute the expected shards.
//   - shard → all_gather round trip is exact; each unit gathered by the hooks is exact;
//   - the reduce-scattered gradient shard equals this rank's chunk of the all-reduced full
//     gradient (tied and untied, parameters re-gathered or kept, with recompute);
//   - the clipping norm over shards equals the full buffer's norm, and clipping scales alike;
//   - AdamW pieces tile the shard at parameter edges; moments pack/unpack round trip;
//   - parallel.grad_reduce bf16 on a dp2 × fsdp2 mesh: the shard is the fp32 one within bf16
//     rounding, differs from it, and comes out of a bf16 sum.
//   - parallel.param_gather bf16: each gathered unit is bitwise the parameters rounded to bf16,
//     and a bf16 step's loss and gradient shard are those of a replicated model holding the
//     rounded parameters.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <cstring>

#include "core/ops.h"
#include "core/random.h"
#include "parallel/fully_sharded.h"
#include "parallel/mpi_communicator.h"

using namespace retort;

namespace {

std::shared_ptr<Communicator> world() { return std::make_shared<MpiCommunicator>(MPI_COMM_WORLD); }

ModelConfig tiny(bool tied) {
  ModelConfig m;
  m.vocab_size = 67;  // odd sizes: units do not divide by 4, so chunks are padded
  m.d_model = 32;
  m.n_layers = 3;
  m.n_heads = 4;
  m.n_kv_heads = 2;
  m.seq_len = 8;
  m.tie_embeddings = tied;
  m.init_std = 0.1;
  m.resolve();
  return m;
}

// A batch that differs per rank: pure function of (rank, i).
void random_batch(int rank, int64_t V, Tensor& tokens, Tensor& targets) {
  for (int64_t i = 0; i < tokens.numel(); ++i) {
    tokens.host<int32_t>()[i] = int32_t(rng::uniform(11, rank, i) * V);
    targets.host<int32_t>()[i] = int32_t(rng::uniform(12, rank, i) * V);
  }
}

std::vector<float> to_vec(const Tensor& t) {
  return std::vector<float>(t.host<float>(), t.host<float>() + t.numel());
}

double rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0, n = 0;
  for (size_t i = 0; i < a.size(); ++i) d += double(a[i] - b[i]) * (a[i] - b[i]), n += double(b[i]) * b[i];
  return std::sqrt(d / n);
}

}  // namespace

TEST(FullySharded, ShardGatherRoundTripAndUnitGathers) {
  auto comm = world();
  for (bool tied : {true, false}) {
    Transformer model(tiny(tied));
    model.init(3);
    std::vector<float> full = to_vec(model.flat_params());
    FullyShardedDP fsdp(model, comm, nullptr, false);
    EXPECT_FALSE(model.flat_params().defined());  // the full buffers are gone
    EXPECT_LE(fsdp.shard_elems(), model.num_params() / comm->size() + model.num_units());
    Tensor back = fsdp.gather_full(fsdp.param_shard());
    if (comm->rank() == 0) EXPECT_EQ(to_vec(back), full);
    else EXPECT_FALSE(back.defined());
    // The hooks bind each unit to its gathered values.
    for (int u = 0; u < model.num_units(); ++u) {
      fsdp.before_forward(u);
      const auto [b, e] = model.unit_range(u);
      for (const Parameter& p : model.parameters()) {
        if (p.offset < b || p.offset >= e) continue;
        ASSERT_TRUE(p.value.defined()) << p.name;
        std::vector<float> want(full.begin() + p.offset, full.begin() + p.offset + p.value.numel());
        ASSERT_EQ(to_vec(p.value), want) << p.name;
      }
      fsdp.after_forward(u);
    }
  }
}

TEST(FullySharded, ReduceScatteredGradsAndClipMatchFullGradient) {
  auto comm = world();
  for (bool tied : {true, false})
    for (bool keep : {false, true})
      for (bool recompute : {false, true}) {
        SCOPED_TRACE(testing::Message() << "tied " << tied << " keep " << keep << " recompute " << recompute);
        const ModelConfig mc = tiny(tied);
        Tensor tokens = Tensor::empty({2, 8}, DType::I32), targets = Tensor::empty({2, 8}, DType::I32);

        // Replicated reference: Σ over ranks of each rank's full gradient (two micro-batches).
        Transformer ref(mc);
        ref.init(5);
        ref.set_recompute(recompute);
        ref.zero_grad();
        for (int m = 0; m < 2; ++m) {
          random_batch(comm->rank() * 2 + m, mc.vocab_size, tokens, targets);
          ref.forward(tokens, targets, 1e-3f);
          ref.backward(0.5f);
        }
        Tensor sum = ref.flat_grads();
        comm->all_reduce(sum);

        Transformer model(mc);
        model.init(5);
        model.set_recompute(recompute);
        FullyShardedDP fsdp(model, comm, nullptr, keep);
        fsdp.zero_grad();
        for (int m = 0; m < 2; ++m) {
          random_batch(comm->rank() * 2 + m, mc.vocab_size, tokens, targets);
          fsdp.set_training(true);
          model.forward(tokens, targets, 1e-3f);
          model.backward(0.5f);
          fsdp.finish_backward();
          fsdp.set_training(false);
        }
        Tensor expect = Tensor::empty({fsdp.shard_elems()});
        fsdp.scatter_full(expect, sum);
        EXPECT_LT(rel_diff(to_vec(fsdp.grad_shard()), to_vec(expect)), 1e-5);

        // Clipping: Σ g² over the shards is the full buffer's.
        const double full_sq = ops::sum_squares(sum);
        const double sq = fsdp.grad_sq([](const Parameter&) { return true; });
        EXPECT_NEAR(sq, full_sq, 1e-6 * full_sq);
      }
}

TEST(FullySharded, OptimizerPiecesTileTheShard) {
  auto comm = world();
  Transformer model(tiny(false));
  model.init(7);
  FullyShardedDP fsdp(model, comm, nullptr, false);
  std::vector<OptimizedTensor> pieces = fsdp.optimizer_pieces();
  int64_t owned = 0;
  std::vector<NamedTensor> moments;
  for (const OptimizedTensor& p : pieces) {
    owned += p.value.numel();
    EXPECT_EQ(p.decay, model.parameter(p.name).shape.size() == 2) << p.name;
    Tensor t = Tensor::empty({p.value.numel()});
    for (int64_t i = 0; i < t.numel(); ++i) t.host<float>()[i] = float(rng::normal(9, owned, i));
    moments.push_back({p.name, t});
  }
  // Σ over ranks of owned elements = N (the padding belongs to no parameter).
  Tensor n = Tensor::empty({1}, DType::I32);
  n.host<int32_t>()[0] = int32_t(owned);
  comm->all_reduce(n);
  EXPECT_EQ(n.host<int32_t>()[0], model.num_params());
  Tensor packed = fsdp.pack_pieces(moments);
  std::vector<NamedTensor> copy;
  for (const auto& m : moments) copy.push_back({m.name, Tensor::zeros({m.tensor.numel()})});
  fsdp.unpack_pieces(copy, packed);
  for (size_t i = 0; i < copy.size(); ++i) EXPECT_EQ(to_vec(copy[i].tensor), to_vec(moments[i].tensor));
}

// bf16 gradient sums (parallel.grad_reduce) on dp2 × fsdp2: the reduce-scatters over fsdp and the
// all-reduce over dp both run in bf16. Against the fp32 full-gradient sum over all 4 ranks: each
// element's error is at most (p − 1 + 1)·2^-8 of Σ|contributions| (every rank's contribution and
// every partial sum rounded once to 8 significant bits, p = 4); over the whole shard that is
// well under 4·2^-8 ≈ 1.6e-2 in relative norm, while the fp32 path agrees to 1e-5.
TEST(FullySharded, Bf16GradReduceOnDpTimesFsdp) {
  auto all = world();
  if (all->size() != 4) GTEST_SKIP() << "needs 4 ranks";
  const int r = all->rank();
  const ModelConfig mc = tiny(true);
  Tensor tokens = Tensor::empty({2, 8}, DType::I32), targets = Tensor::empty({2, 8}, DType::I32);
  Transformer ref(mc);
  ref.init(5);
  ref.zero_grad();
  for (int m = 0; m < 2; ++m) {
    random_batch(r * 2 + m, mc.vocab_size, tokens, targets);
    ref.forward(tokens, targets, 1e-3f);
    ref.backward(0.5f);
  }
  Tensor sum = ref.flat_grads();
  all->all_reduce(sum);

  MPI_Comm fs = MPI_COMM_NULL, dpc = MPI_COMM_NULL;  // rank = dp_index · 2 + fsdp_index
  MPI_Comm_split(MPI_COMM_WORLD, r / 2, r, &fs);
  MPI_Comm_split(MPI_COMM_WORLD, r % 2, r, &dpc);
  auto fsdp_comm = std::make_shared<MpiCommunicator>(fs, "fsdp");
  auto dp_comm = std::make_shared<MpiCommunicator>(dpc, "dp");
  std::vector<float> shard[2];
  Tensor expect;
  for (GradReduce precision : {GradReduce::F32, GradReduce::BF16}) {
    Transformer model(mc);
    model.init(5);
    FullyShardedDP fsdp(model, fsdp_comm, dp_comm, false, precision);
    fsdp.zero_grad();
    for (int m = 0; m < 2; ++m) {
      random_batch(r * 2 + m, mc.vocab_size, tokens, targets);
      fsdp.set_training(true);
      model.forward(tokens, targets, 1e-3f);
      model.backward(0.5f);
      fsdp.finish_backward();
      fsdp.set_training(false);
    }
    fsdp.reduce_over_dp();
    expect = Tensor::empty({fsdp.shard_elems()});
    fsdp.scatter_full(expect, sum);
    shard[precision == GradReduce::BF16] = to_vec(fsdp.grad_shard());
  }
  const std::vector<float> want = to_vec(expect);
  const double err32 = rel_diff(shard[0], want), err16 = rel_diff(shard[1], want);
  EXPECT_LT(err32, 1e-5);
  EXPECT_LT(err16, 4 * std::ldexp(1.0, -8));
  EXPECT_GT(err16, 100 * err32) << "the bf16 shard is the fp32 one: bf16 was not used";
  // The last sum (over dp) was bf16: every element has 8 significant bits.
  for (float v : shard[1]) {
    uint32_t u;
    std::memcpy(&u, &v, 4);
    ASSERT_EQ(u & 0xffffu, 0u) << v;
  }
  if (r == 0) std::printf("shard relative error: fp32 %.2e, bf16 %.2e\n", err32, err16);
}

// bf16 parameter all-gathers (parallel.param_gather): the model sees every parameter rounded to
// bf16 (bitwise; the random init is not bf16-representable, so a fp32 gather would fail this),
// and under bf16 products a step is the replicated model's with its parameters rounded: the
// same loss bitwise on each rank, the gradient shard within fp32 summation order (1e-5).
TEST(FullySharded, Bf16ParamGatherSeesTheRoundedParameters) {
  auto comm = world();
  ops::set_matmul_precision(ops::MatmulPrecision::BF16);
  for (bool tied : {true, false}) {
    SCOPED_TRACE(testing::Message() << "tied " << tied);
    const ModelConfig mc = tiny(tied);
    Transformer ref(mc);
    ref.init(5);
    Tensor rounded = Tensor::empty({ref.num_params()}, DType::BF16);
    ops::convert(rounded, ref.flat_params());
    ops::convert(ref.flat_params(), rounded);  // ref holds the parameters rounded to bf16
    const std::vector<float> want = to_vec(ref.flat_params());

    Transformer model(mc);
    model.init(5);
    FullyShardedDP fsdp(model, comm, nullptr, false, GradReduce::F32, ParamGather::BF16);
    for (int u = 0; u < model.num_units(); ++u) {
      fsdp.before_forward(u);
      const auto [b, e] = model.unit_range(u);
      for (const Parameter& p : model.parameters()) {
        if (p.offset < b || p.offset >= e) continue;
        if (p.shape.size() != 1) {  // matrices: read from the bf16 gather only
          EXPECT_FALSE(p.value.defined()) << p.name;
          continue;
        }
        ASSERT_EQ(to_vec(p.value), std::vector<float>(want.begin() + p.offset,
                                                      want.begin() + p.offset + p.value.numel()))
            << p.name;
      }
      fsdp.after_forward(u);
    }

    Tensor tokens = Tensor::empty({2, 8}, DType::I32), targets = Tensor::empty({2, 8}, DType::I32);
    random_batch(comm->rank(), mc.vocab_size, tokens, targets);
    ref.zero_grad();
    const double want_loss = ref.forward(tokens, targets, 1e-3f).loss;
    ref.backward(1.0f);
    Tensor sum = ref.flat_grads();
    comm->all_reduce(sum);
    fsdp.zero_grad();
    fsdp.set_training(true);
    const double loss = model.forward(tokens, targets, 1e-3f).loss;
    model.backward(1.0f);
    fsdp.finish_backward();
    fsdp.set_training(false);
    EXPECT_EQ(loss, want_loss);
    Tensor expect = Tensor::empty({fsdp.shard_elems()});
    fsdp.scatter_full(expect, sum);
    EXPECT_LT(rel_diff(to_vec(fsdp.grad_shard()), to_vec(expect)), 1e-5);
  }
  ops::set_matmul_precision(ops::MatmulPrecision::F32);
}

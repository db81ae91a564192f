// Vocabulary-parallel knowledge distillation (models/distill_loss.h under tp): a [R, V] problem
// split into two vocabulary shards, one thread per shard with a regions object that sums and
// gathers across the two threads, gives the KL and the gradient of the unsharded DistillLoss
// for renormalize, bucket and dense (online) teachers; a row whose top-k lies on one shard
// only is included.
#include <gtest/gtest.h>

#include <algorithm>
#include <barrier>
#include <cmath>
#include <numeric>
#include <thread>
#include <vector>

#include "core/ops.h"
#include "core/random.h"
#include "models/distill_loss.h"
#include "tests/unit/test_support.h"

using namespace retort;

namespace {

constexpr uint64_t kSeed = 777;
constexpr int64_t R = 9, V = 60, K = 7, kShards = 2, Vl = V / kShards;

// Two "ranks" as two threads: all_reduce_sum and all_gather over both; the region marks of
// the model are not used by the KD loss.
struct Group {
  std::barrier<> sync{kShards};
  const Tensor* slot[kShards] = {};
};

class ThreadRegions : public TensorParallelRegions {
 public:
  ThreadRegions(Group& g, int rank) : g_(g), rank_(rank) {}
  void enter_forward(Tensor&, const Tensor&) override { FAIL() << "not used by the KD loss"; }
  void enter_backward(Tensor&, Tensor&) override { FAIL() << "not used by the KD loss"; }
  void leave_forward(Tensor&, Tensor&) override { FAIL() << "not used by the KD loss"; }
  void leave_backward(Tensor&, const Tensor&) override { FAIL() << "not used by the KD loss"; }
  void all_reduce_sum(Tensor& x) override {
    g_.slot[rank_] = &x;
    g_.sync.arrive_and_wait();
    std::vector<float> sum(x.numel(), 0.0f);
    for (int s = 0; s < kShards; ++s)
      for (int64_t i = 0; i < x.numel(); ++i) sum[i] += g_.slot[s]->host<float>()[i];
    g_.sync.arrive_and_wait();  // every rank has read every slot
    std::copy(sum.begin(), sum.end(), x.host<float>());
    ++collectives;
  }
  void all_gather(Tensor& out, const Tensor& in) override {
    ASSERT_EQ(out.numel(), kShards * in.numel());
    g_.slot[rank_] = &in;
    g_.sync.arrive_and_wait();
    for (int s = 0; s < kShards; ++s)
      std::copy_n(g_.slot[s]->host<float>(), in.numel(), out.host<float>() + s * in.numel());
    g_.sync.arrive_and_wait();
    ++collectives;
  }
  int collectives = 0;

 private:
  Group& g_;
  int rank_;
};

Tensor randn(const Shape& s, uint64_t stream, double scale) {
  Tensor t = Tensor::empty(s);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = float(scale * rng::normal(kSeed, stream, i));
  return t;
}

// Columns [shard·Vl, (shard+1)·Vl) of x [R, V].
Tensor columns(const Tensor& x, int shard) {
  Tensor out = Tensor::empty({R, Vl});
  for (int64_t r = 0; r < R; ++r)
    std::copy_n(x.data<float>() + r * V + shard * Vl, Vl, out.data<float>() + r * Vl);
  return out;
}

enum class Mode { Renormalize, Bucket, Dense };

class KdTensorParallel : public ::testing::TestWithParam<std::tuple<Mode, double>> {};

TEST_P(KdTensorParallel, TwoShardsEqualOneProcess) {
  const auto [mode, tau] = GetParam();
  const double lambda = 0.8;
  const ops::KdTail tail = mode == Mode::Bucket ? ops::KdTail::Bucket : ops::KdTail::Renormalize;
  Tensor z = randn({R, V}, 1, 2.0), teacher = randn({R, V}, 2, 2.5);
  for (int64_t v = Vl; v < V; ++v) teacher.data<float>()[v] -= 20.0f;  // row 0: top-k on shard 0 only
  const auto [ids, logp] = test::teacher_topk(teacher, tau, K);
  for (int64_t i = 0; i < K; ++i) ASSERT_LT(ids.data<int32_t>()[i], Vl);
  const float row_scale = 0.3f;

  // One process: the whole vocabulary.
  DistillLoss one(lambda, tau, tail);
  if (mode == Mode::Dense) one.set_teacher_logits(teacher);
  else one.set_topk(ids, logp);
  const double loss = one.forward(z);
  ASSERT_GT(one.last_kl(), 1e-2);
  Tensor d = Tensor::zeros({R, V});
  one.backward(d, z, row_scale);

  // Two vocabulary shards, one thread each.
  Group group;
  double shard_loss[kShards], shard_kl[kShards];
  Tensor shard_d[kShards];
  int collectives[kShards];
  auto run = [&](int rank) {
    ThreadRegions regions(group, rank);
    DistillLoss kd(lambda, tau, tail);
    kd.set_tensor_parallel(&regions, TpLayout{kShards, rank, false});
    Tensor zs = columns(z, rank), ts = columns(teacher, rank);
    if (mode == Mode::Dense) kd.set_teacher_logits(ts);
    else kd.set_topk(ids, logp);
    shard_loss[rank] = kd.forward(zs);
    shard_kl[rank] = kd.last_kl();
    shard_d[rank] = Tensor::zeros({R, Vl});
    kd.backward(shard_d[rank], zs, row_scale);
    collectives[rank] = regions.collectives;
  };
  std::thread t0(run, 0), t1(run, 1);
  t0.join();
  t1.join();

  for (int s = 0; s < kShards; ++s) {
    EXPECT_NEAR(shard_loss[s], loss, 1e-6 * loss) << "shard " << s;
    EXPECT_NEAR(shard_kl[s], one.last_kl(), 1e-6 * one.last_kl()) << "shard " << s;
    // lse gather (student; dense: teacher too) and one all-reduce of the KL (and tail mass)
    EXPECT_EQ(collectives[s], mode == Mode::Dense ? 3 : 2);
  }
  double gmax = 0, err = 0;
  for (int64_t r = 0; r < R; ++r)
    for (int64_t v = 0; v < V; ++v) {
      const double want = d.data<float>()[r * V + v];
      const double got = shard_d[v / Vl].data<float>()[r * Vl + v % Vl];
      gmax = std::max(gmax, std::abs(want));
      err = std::max(err, std::abs(got - want));
    }
  ASSERT_GT(gmax, 1e-3);
  EXPECT_LT(err, 1e-6 * gmax) << "max |grad(2 shards) − grad(1)| (max |grad| " << gmax << ")";
}

INSTANTIATE_TEST_SUITE_P(Modes, KdTensorParallel,
                         ::testing::Values(std::make_tuple(Mode::Renormalize, 1.0),
                                           std::make_tuple(Mode::Renormalize, 2.0),
                                           std::make_tuple(Mode::Bucket, 1.0),
                                           std::make_tuple(Mode::Bucket, 0.7),
                                           std::make_tuple(Mode::Dense, 1.0),
                                           std::make_tuple(Mode::Dense, 2.0)));

// The shard steps with a single shard are the whole-vocabulary ops, bitwise.
TEST(KdShardOps, OneShardIsTheWholeVocabularyOp) {
  Tensor z = randn({R, V}, 3, 2.0), teacher = randn({R, V}, 4, 2.0);
  auto [ids, logp] = test::teacher_topk(teacher, 1.3, K);
  for (ops::KdTail tail : {ops::KdTail::Renormalize, ops::KdTail::Bucket}) {
    Tensor kl = Tensor::empty({R}), lse = Tensor::empty({R}), q = Tensor::empty({R});
    ops::kd_topk_forward(kl, lse, q, z, ids, logp, 1.3f, tail);
    Tensor kl2 = Tensor::empty({R}), lse2 = Tensor::empty({R}), q2 = Tensor::empty({R});
    ops::kd_logsumexp(lse2, z, 1.3f);
    ops::kd_topk_shard_forward(kl2, q2, z, lse2, ids, logp, 1.3f, tail);
    if (tail == ops::KdTail::Bucket) ops::kd_bucket_finish(kl2, q2, logp);
    for (int64_t r = 0; r < R; ++r) {
      EXPECT_EQ(kl.data<float>()[r], kl2.data<float>()[r]);
      EXPECT_EQ(lse.data<float>()[r], lse2.data<float>()[r]);
      EXPECT_EQ(q.data<float>()[r], q2.data<float>()[r]);
    }
  }
}

TEST(KdShardOps, IdsOfOtherShardsAreMinusOneAndOthersAreRejected) {
  Tensor z = randn({R, Vl}, 5, 1.0), lse = Tensor::zeros({R}), kl = Tensor::empty({R}), q = Tensor::empty({R});
  Tensor ids = Tensor::empty({R, K}, DType::I32), logp = Tensor::empty({R, K});
  for (int64_t i = 0; i < R * K; ++i) {
    ids.data<int32_t>()[i] = i % 2 ? -1 : int32_t(i % Vl);
    logp.data<float>()[i] = -3.0f;
  }
  ops::kd_topk_shard_forward(kl, q, z, lse, ids, logp, 1.0f, ops::KdTail::Bucket);
  ids.data<int32_t>()[3] = -2;
  EXPECT_THROW(ops::kd_topk_shard_forward(kl, q, z, lse, ids, logp, 1.0f, ops::KdTail::Bucket), Error);
  ids.data<int32_t>()[3] = int32_t(Vl);
  EXPECT_THROW(ops::kd_topk_shard_forward(kl, q, z, lse, ids, logp, 1.0f, ops::KdTail::Bucket), Error);
  // The whole-vocabulary forward takes no -1.
  ids.data<int32_t>()[3] = -1;
  Tensor l2 = Tensor::empty({R});
  EXPECT_THROW(ops::kd_topk_forward(kl, l2, q, z, ids, logp, 1.0f, ops::KdTail::Bucket), Error);
}

}  // namespace

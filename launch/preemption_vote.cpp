#include "launch/preemption_vote.h"

#include "core/preemption.h"

namespace retort {

bool any_rank_preempted(const Mesh& mesh) {
  Tensor flag = Tensor::empty({1}, DType::I32);
  flag.host<int32_t>()[0] = preemption_signal() ? 1 : 0;
  if (mesh.world_size > 1) mesh.world->all_reduce(flag, ReduceOp::Max);
  return flag.host<int32_t>()[0] != 0;
}

}  // namespace retort

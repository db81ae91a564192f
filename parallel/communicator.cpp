#include "parallel/communicator.h"

namespace retort {

double sum_over_ranks(Communicator& comm, double x) {
  if (comm.size() == 1) return x;
  Tensor mine = Tensor::empty({2}), all = Tensor::empty({2 * int64_t(comm.size())});
  mine.host<float>()[0] = static_cast<float>(x);
  mine.host<float>()[1] = static_cast<float>(x - double(mine.host<float>()[0]));
  comm.all_gather(all, mine);
  double total = 0;
  for (int r = 0; r < comm.size(); ++r)
    total += double(all.host<float>()[2 * r]) + double(all.host<float>()[2 * r + 1]);
  return total;
}

}  // namespace retort

#include "parallel/data_parallel.h"

#include <algorithm>

namespace retort {

DataParallel::DataParallel(std::shared_ptr<Communicator> comm, Tensor grads, int64_t bucket_elems,
                           GradReduce precision)
    : comm_(std::move(comm)),
      grads_(std::move(grads)),
      bucket_elems_(std::max<int64_t>(1, bucket_elems)),
      precision_(precision) {}

void DataParallel::begin_final_backward() {
  armed_ = true;
  pending_begin_ = pending_end_ = 0;
  reduced_.clear();
}

void DataParallel::launch(int64_t begin, int64_t end) {
  if (end <= begin) return;
  Tensor view = grads_.flat(begin, end - begin);
  in_flight_.push_back(all_reduce_grads_async(*comm_, view, precision_));  // bf16: a temporary copy
  reduced_.emplace_back(begin, end);
  ++launched_;
}

void DataParallel::grads_ready(int64_t begin, int64_t end) {
  if (!armed_ || comm_->size() == 1) return;
  if (pending_end_ == pending_begin_) {
    pending_begin_ = begin;
    pending_end_ = end;
  } else if (end == pending_begin_) {
    pending_begin_ = begin;  // backward walks the layers downwards: ranges arrive below
  } else if (begin == pending_end_) {
    pending_end_ = end;
  } else {
    launch(pending_begin_, pending_end_);
    pending_begin_ = begin;
    pending_end_ = end;
  }
  if (pending_end_ - pending_begin_ >= bucket_elems_) {
    launch(pending_begin_, pending_end_);
    pending_begin_ = pending_end_ = 0;
  }
  for (auto& r : in_flight_) r->test();  // MPI progresses non-blocking collectives in calls
}

void DataParallel::finish() {
  if (comm_->size() == 1) return;
  launch(pending_begin_, pending_end_);
  pending_begin_ = pending_end_ = 0;
  // Anything never reported (a model without hooks) is reduced here, in one piece per gap.
  std::sort(reduced_.begin(), reduced_.end());
  int64_t cursor = 0;
  std::vector<std::pair<int64_t, int64_t>> gaps;
  for (auto [b, e] : reduced_) {
    if (b > cursor) gaps.emplace_back(cursor, b);
    cursor = std::max(cursor, e);
  }
  if (cursor < grads_.numel()) gaps.emplace_back(cursor, grads_.numel());
  for (auto [b, e] : gaps) launch(b, e);
  for (auto& r : in_flight_) r->wait();
  in_flight_.clear();
  armed_ = false;
}

}  // namespace retort

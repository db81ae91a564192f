// Communicator: collectives over one group of ranks (one per mesh axis). parallel/ code is
// written once against this interface; MpiCommunicator (host buffers) implements it now, an
// NCCL implementation (device buffers) slots in with the GPU backend.
//
// Shapes: tensors are contiguous; "chunk r" of a tensor with size()·n elements is elements
// [r·n, (r+1)·n). All ranks of the group must call each collective in the same order.
#pragma once
#include <cstdint>
#include <memory>

#include "core/tensor.h"

namespace retort {

enum class ReduceOp { Sum, Max };

// A non-blocking collective in flight. wait() completes it; test() polls (drives progress).
class Request {
 public:
  virtual ~Request() = default;
  virtual void wait() = 0;
  virtual bool test() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;

  // x ← op over ranks of x (in place). F32, I32, or BF16 (Sum only: the sum is computed in
  // bfloat16, every partial sum rounded to nearest even; the association is the backend's).
  virtual void all_reduce(Tensor& x, ReduceOp op = ReduceOp::Sum) = 0;
  // out (size()·n elements) ← concat over ranks r of in_r (n elements), rank order.
  virtual void all_gather(Tensor& out, const Tensor& in) = 0;
  // out (n elements) ← Σ_r chunk[rank()] of in_r (size()·n elements); F32, I32 or BF16 as above.
  virtual void reduce_scatter(Tensor& out, const Tensor& in) = 0;
  // x ← x of `root`.
  virtual void broadcast(Tensor& x, int root) = 0;
  virtual void barrier() = 0;

  // Non-blocking variants; buffers must stay alive and untouched until the request completes.
  virtual std::unique_ptr<Request> all_reduce_async(Tensor& x) = 0;
  virtual std::unique_ptr<Request> all_gather_async(Tensor& out, const Tensor& in) = 0;
  virtual std::unique_ptr<Request> reduce_scatter_async(Tensor& out, const Tensor& in) = 0;

  // Bytes this rank has handed to collectives as payload, and the bytes it sends under the
  // bandwidth-optimal (ring) algorithms, for the communication report (retort bench):
  //   all_reduce of n bytes 2·n·(p−1)/p; all_gather of n bytes in (p−1)·n;
  //   reduce_scatter of n bytes in n·(p−1)/p; broadcast n.
  int64_t payload_bytes() const { return payload_bytes_; }
  int64_t wire_bytes() const { return wire_bytes_; }

 protected:
  enum class Kind { AllReduce, AllGather, ReduceScatter, Broadcast };
  void count(Kind kind, int64_t bytes) {
    const int64_t p = size();
    payload_bytes_ += bytes;
    switch (kind) {
      case Kind::AllReduce: wire_bytes_ += 2 * bytes * (p - 1) / p; break;
      case Kind::AllGather: wire_bytes_ += bytes * (p - 1); break;
      case Kind::ReduceScatter: wire_bytes_ += bytes * (p - 1) / p; break;
      case Kind::Broadcast: wire_bytes_ += p > 1 ? bytes : 0; break;
    }
  }

 private:
  int64_t payload_bytes_ = 0, wire_bytes_ = 0;
};

// The precision gradients are summed in over data-parallel ranks (parallel.grad_reduce).
//   F32:  the fp32 gradients are reduced in place.
//   BF16: each rank rounds its fp32 contribution to bfloat16 (nearest even) into a temporary
//         buffer, the collective sums those in bfloat16 (half the bytes on the wire; every
//         partial sum rounded to bf16, in the backend's order), and the sum is converted back
//         to fp32 into the destination when the request completes. Only the wire is bf16:
//         everything before and after (accumulation, clipping, AdamW) stays fp32.
enum class GradReduce { F32, BF16 };

// Σ over ranks of the fp32 gradients `grads`, in place, in `precision`.
void all_reduce_grads(Communicator& comm, Tensor& grads, GradReduce precision);
// The same, non-blocking: grads must stay alive and untouched until wait() (which, for BF16,
// writes the converted sum).
std::unique_ptr<Request> all_reduce_grads_async(Communicator& comm, Tensor& grads, GradReduce precision);
// Non-blocking out (fp32, n) ← Σ_r chunk[rank()] of in_r (fp32, size()·n), in `precision`; out
// is written by wait(). For BF16, `in` may be reused as soon as this returns.
std::unique_ptr<Request> reduce_scatter_grads_async(Communicator& comm, Tensor& out, const Tensor& in,
                                                    GradReduce precision);

// Σ over the ranks of a double, exactly enough for norms: each rank sends (hi, lo) floats
// with hi + lo = x, and every rank adds them in rank order (identical result everywhere).
double sum_over_ranks(Communicator& comm, double x);

}  // namespace retort

// ThreadSanitizer's view of the simulated GPU's streams (RETORT_SIM_SANITIZE=thread; every
// function here is a no-op in other builds). A stream's work runs on a thread of its own, but
// the simulator's own locks (its queues, its memory map, the one-kernel-at-a-time lock) and
// MPI's inside a simulated NCCL collective would order the streams for ThreadSanitizer far
// beyond what CUDA promises, and hide the races a GPU would have. So the simulator hides its
// bookkeeping (RaceHidden) and states CUDA's orders itself (race_release / race_acquire):
//   - the host's calls before a launch, copy or library call  →  that work on its stream;
//   - a stream's work in queue order (its thread's own order);
//   - the work before an event's record  →  the work after a cudaStreamWaitEvent on it, and
//     the host after cudaEventQuery says it is done;
//   - a stream's finished work  →  the host after cudaStreamSynchronize (and the calls that
//     imply it: cudaDeviceSynchronize, cudaFree, a copy to host memory, the null stream).
// cuBLASLt's and cuDNN's simulators are instrumented in this build; a simulated NCCL
// collective runs MPI hidden, so race_access states its buffer reads and writes instead.
#include <cuda_runtime.h>

#if RETORT_SIM_RACECHECK
#include <sanitizer/tsan_interface.h>
// The runtime's entry points that tsan_interface.h does not declare.
extern "C" {
void AnnotateIgnoreSyncBegin(const char* file, int line);
void AnnotateIgnoreSyncEnd(const char* file, int line);
void __tsan_ignore_thread_begin();
void __tsan_ignore_thread_end();
void __tsan_read_range(void* addr, unsigned long size);
void __tsan_write_range(void* addr, unsigned long size);
}
#endif

namespace sim {

#if RETORT_SIM_RACECHECK
void race_release(const void* sync) { __tsan_release(const_cast<void*>(sync)); }
void race_acquire(const void* sync) { __tsan_acquire(const_cast<void*>(sync)); }
RaceHidden::RaceHidden() {
  __tsan_ignore_thread_begin();
  AnnotateIgnoreSyncBegin(__FILE__, __LINE__);
}
RaceHidden::~RaceHidden() {
  AnnotateIgnoreSyncEnd(__FILE__, __LINE__);
  __tsan_ignore_thread_end();
}
void race_access(const std::vector<Span>& operands) {
  for (const Span& o : operands) {
    void* p = const_cast<void*>(o.p);
    if (o.written) __tsan_write_range(p, o.bytes);
    else __tsan_read_range(p, o.bytes);
  }
}
#else
void race_release(const void*) {}
void race_acquire(const void*) {}
RaceHidden::RaceHidden() {}
RaceHidden::~RaceHidden() {}
void race_access(const std::vector<Span>&) {}
#endif

}  // namespace sim

// The CUDA runtime API of include/cuda_runtime.h on the host (simulator build). Memory is
// malloc'ed and tracked in a map so that misuse a GPU would fault on is reported here too;
// the default pool's statistics (reserved, peak in use) are kept like the real pool's.
// Streams: a queue and a worker thread each (never destroyed, so nothing is torn down under a
// waiting thread at exit); an event is "stream s has completed its first n items". At exit the
// queues are drained before static objects their work uses (the block simulator's fibers) are
// destroyed, and later work (static destructors freeing memory) runs at once. Under
// RETORT_SIM_SANITIZE=thread, ThreadSanitizer sees only the orders CUDA promises (race.cpp): the
// queues' and the memory map's locks are hidden from it.
#include <cuda_runtime.h>
#include <sanitizer/asan_interface.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

// AddressSanitizer's settings for every simulator executable (RETORT_SIM_SANITIZE): no leak
// report at exit (the streams' threads and MPI's state are left to the OS on purpose).
extern "C" const char* __asan_default_options() { return "detect_leaks=0"; }
// ThreadSanitizer's (RETORT_SIM_SANITIZE=thread): the first race ends the process; no
// lock-order check (Open MPI's TCP transport takes its own locks in both orders).
extern "C" const char* __tsan_default_options() { return "halt_on_error=1 detect_deadlocks=0"; }
// and no report of a race inside Open MPI: it orders its threads with atomics that are not
// instrumented (a collective's own buffers are stated by the NCCL simulator, race.cpp).
extern "C" const char* __tsan_default_suppressions() {
  return "race:libmpi.so\nrace:libopen-pal.so\nrace:libopen-rte.so\nrace:mca_\n";
}

struct CUstream_st {
  struct Work {
    std::function<void()> run;
    std::unique_ptr<char> queued;  // sync object: what the host did before queueing it
  };
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Work> work;
  uint64_t submitted = 0, completed = 0;
  char done = 0;  // sync object: the stream's finished work, for the host's synchronize
};
struct CUevent_st {
  CUstream_st* stream = nullptr;
  uint64_t target = 0;
  // When the worker reached the event (seconds; < 0 until then): shared with the queued
  // stamp, which may run after the event is destroyed.
  std::shared_ptr<std::atomic<double>> reached = std::make_shared<std::atomic<double>>(-1.0);
};

namespace sim {
namespace {

struct Memory {
  std::mutex mu;
  std::map<const char*, size_t> live;  // start → bytes
  size_t in_use = 0, peak = 0;
  std::map<const void*, int> smem_optin;  // kernel → opted-in dynamic shared memory bytes
};
Memory& memory() {
  static Memory* m = new Memory;  // never destroyed: queued frees may run during exit
  return *m;
}

int device_count() {
  const char* v = std::getenv("SIM_GPUS");
  return v ? std::atoi(v) : 1;
}
thread_local int current = 0;  // as CUDA: each host thread its own, device 0 at first
thread_local cudaError_t last_error = cudaSuccess;  // per host thread, as CUDA's

cudaError_t fail(cudaError_t e) {
  last_error = e;
  return e;
}

bool eager() {
  static const bool e = [] {
    const char* v = std::getenv("SIM_STREAMS");
    return v && std::string(v) == "eager";
  }();
  return e;
}
std::atomic<bool> exiting{false};  // set by drain_at_exit: enqueue then runs work at once

struct Streams {
  std::mutex mu;
  std::vector<CUstream_st*> all;
};
Streams& streams() {
  static Streams* s = new Streams;  // never destroyed: workers may still wait at exit
  return *s;
}

// SIM_STREAM_JITTER_US=n: before each queued item a stream's worker sleeps, one time in four,
// a random 0..n µs, so streams run ahead of and behind each other in ever new orders (a
// missing event wait in either direction then shows as stale or early data).
void jitter(std::mt19937_64& rng) {
  static const int max_us = [] {
    const char* v = std::getenv("SIM_STREAM_JITTER_US");
    return v ? std::atoi(v) : 0;
  }();
  if (max_us <= 0 || rng() % 4 != 0) return;
  std::this_thread::sleep_for(std::chrono::microseconds(rng() % uint64_t(max_us + 1)));
}

void worker(CUstream_st* s) {
  std::mt19937_64 rng(std::random_device{}());
  CUstream_st::Work w;
  for (;;) {
    {
      RaceHidden hidden;
      std::unique_lock<std::mutex> lock(s->mu);
      s->cv.wait(lock, [&] { return !s->work.empty(); });
      w = std::move(s->work.front());
    }
    race_acquire(w.queued.get());
    jitter(rng);
    w.run();
    race_release(&s->done);
    {
      // The work's captures die hidden too: a shared_ptr's count, touched by two threads,
      // would order them for ThreadSanitizer as nothing on a GPU does.
      RaceHidden hidden;
      w = {};
      {
        std::lock_guard<std::mutex> lock(s->mu);
        s->work.pop_front();
        ++s->completed;
      }
      s->cv.notify_all();
    }
  }
}

// Waits for the stream's first `target` items; orders nothing (the caller states what it may
// take in).
void wait_until(CUstream_st* s, uint64_t target) {
  RaceHidden hidden;
  std::unique_lock<std::mutex> lock(s->mu);
  s->cv.wait(lock, [&] { return s->completed >= target; });
}

uint64_t submitted(CUstream_st* s) {
  RaceHidden hidden;
  std::lock_guard<std::mutex> lock(s->mu);
  return s->submitted;
}

void stream_synchronize(CUstream_st* s) {
  wait_until(s, submitted(s));
  race_acquire(&s->done);
}

std::vector<CUstream_st*> all_streams() {
  RaceHidden hidden;
  std::lock_guard<std::mutex> lock(streams().mu);
  return streams().all;
}

void device_synchronize() {
  for (CUstream_st* s : all_streams()) stream_synchronize(s);
}

// atexit handler (registered with the first stream, so it runs before the destructors of
// statics constructed earlier): waits up to 30 s for every queue to empty, then makes later
// work synchronous.
void drain_at_exit() {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (CUstream_st* s : all_streams()) {
    {
      RaceHidden hidden;
      std::unique_lock<std::mutex> lock(s->mu);
      s->cv.wait_until(lock, deadline, [&] { return s->completed == s->submitted; });
    }
    race_acquire(&s->done);
  }
  exiting = true;
}

}  // namespace

bool eager_streams() { return eager(); }

void enqueue(cudaStream_t s, std::function<void()> work) {
  if (eager() || exiting) return work();
  if (!s) {
    device_synchronize();
    return work();
  }
  CUstream_st::Work w{std::move(work), std::make_unique<char>()};
  race_release(w.queued.get());
  RaceHidden hidden;
  {
    std::lock_guard<std::mutex> lock(s->mu);
    s->work.push_back(std::move(w));
    ++s->submitted;
  }
  s->cv.notify_all();
}

void fault(const char* what) {
  std::fprintf(stderr, "sim: %s\n", what);
  std::fflush(stderr);
  std::abort();
}

bool is_device_pointer(const void* p, size_t bytes) {
  Memory& m = memory();
  RaceHidden hidden;
  std::lock_guard<std::mutex> lock(m.mu);
  const char* c = static_cast<const char*>(p);
  auto it = m.live.upper_bound(c);
  if (it == m.live.begin()) return false;
  --it;
  return c >= it->first && c + bytes <= it->first + it->second;
}

void require_still_allocated(const std::vector<Span>& operands, const char* who) {
  for (const Span& o : operands)
    if (o.bytes && !is_device_pointer(o.p, o.bytes))
      fault((std::string(who) + ": an operand was freed before the call ran on its stream (a "
             "cudaFreeAsync on another stream, not ordered after this one)").c_str());
}

void check_dynamic_smem(const void* kernel, size_t bytes) {
  if (bytes <= 48 * 1024) return;
  Memory& m = memory();
  RaceHidden hidden;
  std::lock_guard<std::mutex> lock(m.mu);
  auto it = m.smem_optin.find(kernel);
  if (it == m.smem_optin.end() || size_t(it->second) < bytes)
    fault("kernel launch with more than 48 KiB of dynamic shared memory and no "
          "cudaFuncAttributeMaxDynamicSharedMemorySize opt-in for that much");
}

}  // namespace sim

using sim::fail;

cudaError_t cudaGetDeviceCount(int* n) {
  *n = sim::device_count();
  return *n > 0 ? cudaSuccess : fail(cudaErrorNoDevice);
}
cudaError_t cudaSetDevice(int d) {
  if (d < 0 || d >= sim::device_count()) return fail(cudaErrorInvalidDevice);
  sim::current = d;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* d) {
  *d = sim::current;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr, int) {
  *v = 232448;  // H100's opt-in shared memory per block (227 KiB)
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int device) {
  if (device < 0 || device >= sim::device_count()) return fail(cudaErrorInvalidDevice);
  std::snprintf(p->name, sizeof p->name, "retort simulated GPU");
  return cudaSuccess;
}
cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* a, const void*) {
  a->sharedSizeBytes = 0;  // static shared memory is not known to the simulator
  return cudaSuccess;
}
cudaError_t cudaFuncSetAttribute(const void* f, cudaFuncAttribute, int v) {
  if (v < 0 || v > 232448) return fail(cudaErrorInvalidValue);
  sim::Memory& m = sim::memory();
  sim::RaceHidden hidden;
  std::lock_guard<std::mutex> lock(m.mu);
  m.smem_optin[f] = v;
  return cudaSuccess;
}
cudaError_t cudaGetLastError() {
  const cudaError_t e = sim::last_error;
  sim::last_error = cudaSuccess;
  return e;
}
const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorNotReady: return "cudaErrorNotReady";
  }
  return "cudaErrorUnknown";
}
const char* cudaGetErrorString(cudaError_t e) {
  return e == cudaSuccess ? "no error" : "error in the CUDA simulator";
}

// Aligned to 256 bytes, as cudaMalloc's allocations are (cuBLASLt's default assumption).
// Under AddressSanitizer (README.md) the padding up to the next 256 bytes is poisoned, so a
// kernel reading or writing past the n bytes asked for is reported where it does. A device
// holds SIM_GPU_MEMORY_MB (default 81920, an H100's 80 GiB); beyond that, as beyond a GPU's
// memory, cudaErrorMemoryAllocation.
namespace {
size_t padded_bytes(size_t n) { return n ? (n + 255) / 256 * 256 : 256; }
size_t device_memory_bytes() {
  static const size_t bytes = [] {
    const char* v = std::getenv("SIM_GPU_MEMORY_MB");
    return size_t(v ? std::atoll(v) : 81920) << 20;
  }();
  return bytes;
}
}  // namespace
cudaError_t cudaMalloc(void** p, size_t n) {
  const size_t padded = padded_bytes(n);
  sim::Memory& m = sim::memory();
  {
    sim::RaceHidden hidden;
    std::lock_guard<std::mutex> lock(m.mu);
    if (m.in_use + n > device_memory_bytes()) return fail(cudaErrorMemoryAllocation);
  }
  char* c = static_cast<char*>(std::aligned_alloc(256, padded));
  if (!c) return fail(cudaErrorMemoryAllocation);
  std::memset(c, 0xFF, n);
  ASAN_POISON_MEMORY_REGION(c + n, padded - n);
  sim::RaceHidden hidden;
  std::lock_guard<std::mutex> lock(m.mu);
  m.live[c] = n ? n : 1;
  m.in_use += n ? n : 1;
  if (m.in_use > m.peak) m.peak = m.in_use;
  *p = c;
  return cudaSuccess;
}
namespace {
cudaError_t free_now(void* p) {
  sim::Memory& m = sim::memory();
  size_t bytes = 0;
  {
    sim::RaceHidden hidden;
    std::lock_guard<std::mutex> lock(m.mu);
    auto it = m.live.find(static_cast<const char*>(p));
    if (it == m.live.end()) sim::fault("cudaFree of a pointer that is not a live device allocation");
    bytes = it->second;
    m.in_use -= bytes;
    ASAN_UNPOISON_MEMORY_REGION(p, padded_bytes(bytes));
    m.live.erase(it);
  }
  // NaN, as the next user of the pool's block would overwrite it: a stream still reading it
  // (its free not ordered after that stream's work) gets garbage, as on a GPU.
  std::memset(p, 0xFF, bytes);
  std::free(p);
  return cudaSuccess;
}
}  // namespace
cudaError_t cudaFree(void* p) {
  if (!p) return cudaSuccess;
  sim::device_synchronize();
  return free_now(p);
}
cudaError_t cudaMallocAsync(void** p, size_t n, cudaStream_t) { return cudaMalloc(p, n); }
cudaError_t cudaFreeAsync(void* p, cudaStream_t s) {
  if (!p) return cudaSuccess;
  if (!sim::is_device_pointer(p)) sim::fault("cudaFreeAsync of a pointer that is not device memory");
  sim::enqueue(s, [p] { free_now(p); });  // stays allocated until the stream gets there
  return cudaSuccess;
}
cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t* pool, int device) {
  *pool = reinterpret_cast<cudaMemPool_t>(uintptr_t(device) + 1);
  return cudaSuccess;
}
cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t, cudaMemPoolAttr, void*) { return cudaSuccess; }
cudaError_t cudaMemPoolGetAttribute(cudaMemPool_t, cudaMemPoolAttr attr, void* value) {
  sim::Memory& m = sim::memory();
  sim::RaceHidden hidden;
  std::lock_guard<std::mutex> lock(m.mu);
  *static_cast<uint64_t*>(value) = attr == cudaMemPoolAttrUsedMemHigh ? m.peak : m.in_use;
  return cudaSuccess;
}

// Host memory here is pageable: a copy from it is staged at the call (the host buffer may be
// reused at once), a copy to it waits for the stream and completes before the call returns.
cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t n, cudaMemcpyKind kind,
                            cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  const bool dst_is_dev = sim::is_device_pointer(d, n), src_is_dev = sim::is_device_pointer(s, n);
  if (kind != cudaMemcpyDefault) {
    const bool dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    const bool src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    if (dst_dev != dst_is_dev)
      sim::fault(dst_dev ? "cudaMemcpy: destination is not device memory"
                         : "cudaMemcpy: destination is device memory but the kind says host");
    if (src_dev != src_is_dev)
      sim::fault(src_dev ? "cudaMemcpy: source is not device memory"
                         : "cudaMemcpy: source is device memory but the kind says host");
  }
  if (dst_is_dev && src_is_dev) {
    sim::enqueue(stream, [d, s, n] { std::memmove(d, s, n); });
  } else if (dst_is_dev) {
    auto staged = std::make_shared<std::vector<char>>(static_cast<const char*>(s),
                                                      static_cast<const char*>(s) + n);
    // moved in: the work owns the copy alone (ThreadSanitizer: see worker above)
    sim::enqueue(stream, [d, staged = std::move(staged)] {
      std::memcpy(d, staged->data(), staged->size());
    });
  } else {
    cudaStreamSynchronize(stream);  // the null stream: every stream
    std::memmove(d, s, n);
  }
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void* d, const void* s, size_t n, cudaMemcpyKind kind) {
  cudaError_t e = cudaMemcpyAsync(d, s, n, kind, nullptr);
  sim::device_synchronize();
  return e;
}
cudaError_t cudaMemsetAsync(void* p, int value, size_t n, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (!sim::is_device_pointer(p, n)) sim::fault("cudaMemsetAsync on memory that is not device memory");
  sim::enqueue(stream, [p, value, n] { std::memset(p, value, n); });
  return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) {
  auto* st = new CUstream_st;
  {
    sim::RaceHidden hidden;
    std::lock_guard<std::mutex> lock(sim::streams().mu);
    sim::streams().all.push_back(st);
  }
  if (!sim::eager()) {
    static const bool drain_registered = std::atexit(sim::drain_at_exit) == 0;
    (void)drain_registered;
    std::thread(sim::worker, st).detach();
  }
  *s = st;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  if (s) sim::stream_synchronize(s);
  else sim::device_synchronize();
  return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) {
  *e = new CUevent_st;
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  sim::RaceHidden hidden;  // its stamp's count (worker above)
  delete e;  // like CUDA: allowed while the recorded work is pending
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
  e->stream = s;
  auto now = [] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  };
  {
    sim::RaceHidden hidden;  // the stamp of the last record may still hold it (worker above)
    e->reached.reset();
  }
  e->reached = std::make_shared<std::atomic<double>>(-1.0);
  if (!s) {
    sim::device_synchronize();
    e->reached->store(now());
    return cudaSuccess;
  }
  e->target = sim::submitted(s) + 1;  // the work so far and this stamp
  sim::enqueue(s, [reached = e->reached, now] {
    reached->store(now());
    sim::race_release(reached.get());  // what the stream did so far, for the event's waiters
  });
  return cudaSuccess;
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  const double a = start->reached->load(), b = end->reached->load();
  // Like CUDA: it does not wait; an event the stream has not reached yet is "not ready".
  if (a < 0 || b < 0) return cudaErrorNotReady;  // not recorded as the last error (neither by CUDA)
  *ms = static_cast<float>((b - a) * 1e3);
  return cudaSuccess;
}
cudaError_t cudaEventQuery(cudaEvent_t e) {
  CUstream_st* s = e->stream;
  if (!s) return cudaSuccess;
  {
    sim::RaceHidden hidden;
    std::lock_guard<std::mutex> lock(s->mu);
    if (s->completed < e->target) return cudaErrorNotReady;
  }
  sim::race_acquire(e->reached.get());
  return cudaSuccess;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned) {
  CUstream_st* src = e->stream;
  const uint64_t target = e->target;  // the work recorded so far, not what comes later
  std::shared_ptr<std::atomic<double>> reached;
  {
    sim::RaceHidden hidden;  // its count (worker above)
    reached = e->reached;
  }
  if (src && src != s)
    sim::enqueue(s, [src, target, reached = std::move(reached)] {
      sim::wait_until(src, target);
      sim::race_acquire(reached.get());
    });
  return cudaSuccess;
}

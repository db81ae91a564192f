// CPU simulator of CUDA thread blocks for core/cuda/*.cu (README.md): the threads of a block
// are fibers on one OS thread (a minimal x86-64 context switch); __syncthreads and warp
// shuffles are barriers that yield. Blocks run one after another. Default schedule: every
// thread in order each pass. SIM_RANDOM=<seed>: one random warp runs as far as it can before
// another is picked, so warps drift apart and a missing __syncthreads shows up as a wrong
// result. Also aborts when a barrier is reached after threads of the block (or warp) exited.
// RETORT_SIM_RACECHECK (RETORT_SIM_SANITIZE=thread): each thread is a ThreadSanitizer fiber
// whose accesses are ordered only by the barriers (and by the block's start and end), so two
// threads of a block touching one address between barriers, one of them writing, are reported
// whatever the schedule; and neighbouring blocks are not ordered at all, so two blocks touching
// one address (one writing, not both atomically) are reported too. Kernels run one at a time,
// but the lock that serialises them is hidden from ThreadSanitizer, and each stream's thread
// has its own fibers, stacks and static shared memory: kernels on two streams are ordered only
// as their streams are (race.cpp). Not a model of: bank conflicts, registers, launch limits.

#include <cstdio>
#include <mutex>
#include <vector>

#include <cuda_runtime.h>
#if RETORT_SIM_RACECHECK
#include <sanitizer/tsan_interface.h>
#endif

// Minimal x86-64 context switch: saves callee-saved registers and the stack pointer.
extern "C" void sim_switch(void** save_sp, void* new_sp);
asm(R"(
.text
.globl sim_switch
.type sim_switch,@function
sim_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
)");

namespace sim {
// The scheduler's state is the running OS thread's (a stream's): ThreadSanitizer must see no
// memory that two streams' kernels share beyond the device memory they were given.
thread_local dim3 tid;
thread_local dim3 bid, bdim, gdim;
thread_local unsigned char* dyn_smem = nullptr;
thread_local int block_copy = 0;

namespace {
constexpr size_t kStack = 256 * 1024;
// Copies of a block's memory (stacks, shared memory): block b uses copy b % kCopies. Under
// RETORT_SIM_RACECHECK neighbouring blocks run unordered, so each needs its own.
#if RETORT_SIM_RACECHECK
constexpr int kCopies = 2;
#else
constexpr int kCopies = 1;
#endif
thread_local void* sched_sp = nullptr;
thread_local std::vector<void*> ctx_sp;
thread_local std::vector<std::vector<char>> stacks[kCopies];
thread_local std::vector<char> finished;
thread_local std::vector<char> started;  // switched into at least once in this block
thread_local std::vector<int> warp_exited;  // threads of each warp that have returned
thread_local std::vector<uint64_t> slots;
thread_local int n = 0, cur = 0, alive = 0;
thread_local uint64_t progress = 0;
thread_local int block_arrived = 0;
thread_local unsigned block_gen = 0;
thread_local std::vector<int> warp_arrived;
thread_local std::vector<unsigned> warp_gen;
thread_local const std::function<void()>* body = nullptr;

// ThreadSanitizer's view (RETORT_SIM_RACECHECK): a fiber per thread index and block copy, and
// the scheduler's own context. A switch orders nothing, except a thread's first switch-in of a
// block: after the launch and everything the scheduler has taken in. The scheduler takes in a
// block's end (every thread's exit: one that exits early orders nothing of its block's others)
// only when the next block of its copy starts, and all of them when the grid ends. So block b
// is ordered after blocks b - 2, b - 3, ... (they share its memory copy) and not after b - 1:
// two neighbouring blocks touching one address are reported. __syncthreads orders what each
// thread of a block did before it before what any does after it; warp shuffles and matches
// order no memory (in CUDA only __syncwarp would). The barrier's sync object alternates between
// two by generation: a thread that has passed it may arrive at the next before a slower one
// has left it, and must not hand that one its later accesses.
#if RETORT_SIM_RACECHECK
thread_local std::vector<void*> race_fibers[kCopies];
thread_local void* race_scheduler = nullptr;
void race_enter(int i, bool first) {
  std::vector<void*>& fibers = race_fibers[block_copy];
  while (fibers.size() <= size_t(i)) fibers.push_back(__tsan_create_fiber(0));
  __tsan_switch_to_fiber(fibers[i], first ? 0 : __tsan_switch_to_fiber_no_sync);
}
void race_leave() { __tsan_switch_to_fiber(race_scheduler, __tsan_switch_to_fiber_no_sync); }
thread_local uint64_t race_block_end[kCopies];
void race_exit() { __tsan_release(&race_block_end[block_copy]); }
void race_block_starts() { __tsan_acquire(&race_block_end[block_copy]); }
void race_grid_ended() {
  for (uint64_t& end : race_block_end) __tsan_acquire(&end);
}
thread_local uint64_t race_barrier[kCopies][2];  // by block copy and generation parity
void race_arrive(unsigned gen) { __tsan_release(&race_barrier[block_copy][gen % 2]); }
void race_depart(unsigned gen) { __tsan_acquire(&race_barrier[block_copy][gen % 2]); }
#else
void race_enter(int, bool) {}
void race_leave() {}
void race_exit() {}
void race_block_starts() {}
void race_grid_ended() {}
void race_arrive(unsigned) {}
void race_depart(unsigned) {}
#endif

void yield() {
  race_leave();
  sim_switch(&ctx_sp[cur], sched_sp);
}

void fiber_entry() {
  (*body)();
  finished[cur] = 1;
  ++warp_exited[cur / 32];
  --alive;
  ++progress;
  race_exit();
  race_leave();
  for (;;) sim_switch(&ctx_sp[cur], sched_sp);  // never resumed
}

void* fresh_stack(std::vector<char>& st) {
  uintptr_t top = reinterpret_cast<uintptr_t>(st.data() + st.size()) & ~uintptr_t(15);
  uintptr_t a = top - 32;  // 16-aligned slot for the entry address; a + 8: fake return address
  auto* w = reinterpret_cast<uint64_t*>(a);
  w[0] = reinterpret_cast<uint64_t>(&fiber_entry);
  w[1] = 0;
  for (int r = 1; r <= 6; ++r) w[-r] = 0;  // r15 .. rbp
  return reinterpret_cast<void*>(a - 48);
}

void wait_barrier(int& arrived, unsigned& gen, int count, const char* what) {
  const unsigned g = gen;
  ++progress;
  if (++arrived == count) {
    arrived = 0;
    ++gen;
    return;
  }
  while (gen == g) {
    const bool exited = count == n ? alive < n : warp_exited[tid.x / 32] > 0;
    if (exited) {
      std::fprintf(stderr, "sim: %s reached after some threads exited (block %u,%u)\n", what, bid.x, bid.y);
      std::abort();
    }
    yield();
  }
}
}  // namespace

void syncthreads() {
  const unsigned g = block_gen;
  race_arrive(g);
  wait_barrier(block_arrived, block_gen, n, "__syncthreads");
  race_depart(g);
}

uint64_t exchange(uint64_t v, int lane_xor) {
  const int t = tid.x, w = t / 32, lane = t % 32;
  slots[t] = v;
  wait_barrier(warp_arrived[w], warp_gen[w], 32, "__shfl_xor_sync");
  const uint64_t r = slots[w * 32 + (lane ^ lane_xor)];
  wait_barrier(warp_arrived[w], warp_gen[w], 32, "__shfl_xor_sync");
  return r;
}

uint32_t match_any(uint64_t v) {
  const int t = tid.x, w = t / 32;
  slots[t] = v;
  wait_barrier(warp_arrived[w], warp_gen[w], 32, "__match_any_sync");
  uint32_t lanes = 0;
  for (int l = 0; l < 32; ++l)
    if (slots[w * 32 + l] == v) lanes |= 1u << l;
  wait_barrier(warp_arrived[w], warp_gen[w], 32, "__match_any_sync");
  return lanes;
}

void run(dim3 grid, dim3 block, size_t smem, const std::function<void()>& fn) {
  // One kernel at a time, as the suite's schedules have always been (the state above is each
  // thread's own); the lock orders nothing for ThreadSanitizer: on a GPU, kernels on two
  // streams may overlap.
  static std::mutex one_kernel_at_a_time;
  {
    RaceHidden hidden;
    one_kernel_at_a_time.lock();
  }
  struct Unlock {
    ~Unlock() {
      RaceHidden hidden;
      one_kernel_at_a_time.unlock();
    }
  } unlock;
#if RETORT_SIM_RACECHECK
  race_scheduler = __tsan_get_current_fiber();
#endif
  if (block.y != 1 || block.z != 1 || block.x % 32 != 0 || block.x > 1024)
    fault("kernel launch with a block shape the simulator does not run (x: multiple of 32, <= 1024)");
  if (grid.x == 0 || grid.y == 0 || grid.y > 65535) fault("invalid kernel launch: grid dimension");
  n = block.x;
  ctx_sp.resize(n);
  for (auto& copy : stacks)
    if (copy.size() < size_t(n)) copy.resize(n, std::vector<char>(kStack));
  finished.assign(n, 0);
  started.assign(n, 0);
  warp_exited.assign(n / 32, 0);
  slots.assign(n, 0);
  warp_arrived.assign(n / 32, 0);
  warp_gen.assign(n / 32, 0);
  std::vector<unsigned char> bufs[kCopies];
  for (auto& buf : bufs) buf.resize(smem + 16);
  bdim = block;
  gdim = grid;
  body = &fn;
  for (unsigned y = 0; y < grid.y; ++y)
    for (unsigned x = 0; x < grid.x; ++x) {
      bid = dim3(x, y, 0);
      block_copy = int((y * grid.x + x) % kCopies);
      race_block_starts();  // before the block's memory copy is filled again
      std::vector<unsigned char>& buf = bufs[block_copy];
      std::fill(buf.begin(), buf.end(), 0xFF);  // garbage (NaN floats) in dynamic smem
      dyn_smem = buf.data();
      block_arrived = 0;
      for (int i = 0; i < n; ++i) {
        ctx_sp[i] = fresh_stack(stacks[block_copy][i]);
        finished[i] = 0;
        started[i] = 0;
      }
      std::fill(warp_exited.begin(), warp_exited.end(), 0);
      alive = n;
      // SIM_RANDOM=seed: each pass resumes a random ~quarter of the threads (warps drift
      // apart, exposing missing barriers); default: all threads in order.
      static const char* rs = std::getenv("SIM_RANDOM");
      static uint64_t rng = rs ? std::strtoull(rs, nullptr, 10) * 2654435761u + 1 : 0;
      int only_warp = -1;  // SIM_RANDOM: run one random warp as far as it can go
      uint64_t last_progress = progress;  // forces a pick before the first pass
      while (alive > 0) {
        if (rs && progress == last_progress) {  // the warp is stuck: switch to another
          rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
          only_warp = int((rng >> 20) % uint64_t(n / 32));
        }
        last_progress = progress;
        for (int i = 0; i < n; ++i)
          if (!finished[i] && (only_warp < 0 || i / 32 == only_warp)) {
            cur = i;
            tid = dim3(i, 0, 0);
            race_enter(i, !started[i]);
            started[i] = 1;
            sim_switch(&sched_sp, ctx_sp[i]);
          }
      }
    }
  race_grid_ended();
}
}  // namespace sim

#include "parallel/collective_watchdog.h"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <list>
#include <map>
#include <mutex>
#include <thread>

#include "core/check.h"

namespace retort {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

constexpr auto kTick = std::chrono::milliseconds(20);  // the watchdog thread's period
constexpr int kPingTag = 1, kAnswerTag = 2;
constexpr double kBusyNamedS = 1.0;  // ranks outside the waiting communicator busy this long are named
constexpr size_t kMostClauses = 8;   // of each kind in the line

std::atomic<double> g_timeout_s{kDefaultCollectiveTimeoutS};

// How long a timed-out rank waits for answers: a quarter of the timeout, within [1, 5] s. Live
// ranks answer within kTick plus scheduling delays.
double probe_s(double timeout) { return std::clamp(timeout / 4, 1.0, 5.0); }

// What this rank's main thread does, shared with the watchdog thread.
struct State {
  bool waiting = false;
  CollectiveCall call;                   // the current one, or the last finished
  Clock::time_point since = Clock::now();  // start of the wait, or end of the last one
  int patient = 0;                       // PatientCollectives in scope
};
std::mutex g_mu;
State g_state;

// Device collectives queued and not yet seen complete, oldest first (one stream: in order).
struct Queued {
  CollectiveCall call;
  Clock::time_point since;
  std::function<bool()> done;
};
std::list<Queued> g_queued;

std::map<int, std::function<void()>> g_end_hooks;  // add_job_end_hook
int g_next_hook = 0;

// What the rank waits in: its own blocking collective or the oldest unfinished queued one,
// whichever started first. Drops the queued ones that have completed.
State snapshot() {
  std::lock_guard<std::mutex> lock(g_mu);
  while (!g_queued.empty() && g_queued.front().done()) g_queued.pop_front();
  State s = g_state;
  if (!g_queued.empty() && (!s.waiting || g_queued.front().since < s.since)) {
    s.waiting = true;
    s.call = g_queued.front().call;
    s.since = g_queued.front().since;
  }
  return s;
}

WaitReport report_of(const State& s, Clock::time_point now, bool diagnosing) {
  WaitReport r;
  r.waiting = s.waiting ? 1 : 0;
  r.diagnosing = diagnosing ? 1 : 0;
  r.kind = static_cast<int32_t>(s.call.kind);
  std::strncpy(r.axis, s.call.axis.c_str(), sizeof r.axis - 1);
  r.seq = s.call.seq;
  r.seconds = seconds_between(s.since, now);
  return r;
}

struct Ping {
  int32_t round;
  int32_t diagnosing;
};

// The watchdog's messages (pings and answers) on a private duplicate of MPI_COMM_WORLD, used by
// the watchdog thread only. Errors on it only cost answers: the job ends either way.
class Channel {
 public:
  Channel() {
    MPI_Comm_dup(MPI_COMM_WORLD, &comm_);
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    post_ping_receive();
  }

  int rank() const { return rank_; }
  int size() const { return size_; }

  // Answers every ping that has arrived with `state`. Returns the lowest rank among pingers
  // that were diagnosing (a timed-out rank asking around), size() if none, -1 if no ping came.
  int answer_pings(WaitReport state) {
    int lowest_diagnosing = -1;
    for (;;) {
      int arrived = 0;
      MPI_Status st;
      if (MPI_Test(&ping_req_, &arrived, &st) != MPI_SUCCESS || !arrived) break;
      state.round = ping_in_.round;
      send(st.MPI_SOURCE, kAnswerTag, state);
      if (lowest_diagnosing < 0) lowest_diagnosing = size_;
      if (ping_in_.diagnosing) lowest_diagnosing = std::min(lowest_diagnosing, st.MPI_SOURCE);
      post_ping_receive();
    }
    reap_sends();
    return lowest_diagnosing;
  }

  // A new round: pings every other rank; reports[r] is cleared, then filled by collect().
  void start_round(std::vector<std::optional<WaitReport>>& reports) {
    if (answer_req_.empty()) {  // receives for answers, posted on the first round, kept posted
      answer_in_.resize(size_);
      answer_req_.assign(size_, MPI_REQUEST_NULL);
      for (int r = 0; r < size_; ++r)
        if (r != rank_) post_answer_receive(r);
    }
    ++round_;
    reports.assign(size_, std::nullopt);
    for (int r = 0; r < size_; ++r)
      if (r != rank_) send(r, kPingTag, Ping{round_, 1});
  }

  // Moves the answers of the current round that have arrived into `reports`; drops stale ones.
  void collect(std::vector<std::optional<WaitReport>>& reports) {
    for (int r = 0; r < size_; ++r) {
      int arrived = 0;
      if (r == rank_ || MPI_Test(&answer_req_[r], &arrived, MPI_STATUS_IGNORE) != MPI_SUCCESS ||
          !arrived)
        continue;
      if (answer_in_[r].round == round_) reports[r] = answer_in_[r];
      post_answer_receive(r);
    }
  }

  // At MPI_Finalize: nothing of the watchdog may stay pending.
  void close() {
    auto cancel = [](MPI_Request& req) {
      if (req == MPI_REQUEST_NULL) return;
      MPI_Cancel(&req);
      MPI_Wait(&req, MPI_STATUS_IGNORE);
    };
    cancel(ping_req_);
    for (MPI_Request& req : answer_req_) cancel(req);
    for (Outgoing& o : out_) MPI_Request_free(&o.req);
    out_.clear();
    MPI_Comm_free(&comm_);
  }

 private:
  struct Outgoing {  // a send in flight and its buffer (list nodes do not move)
    alignas(8) unsigned char bytes[sizeof(WaitReport)];
    MPI_Request req = MPI_REQUEST_NULL;
  };
  static_assert(sizeof(Ping) <= sizeof(WaitReport));

  template <class Message>
  void send(int to, int tag, const Message& m) {
    Outgoing& o = out_.emplace_back();
    std::memcpy(o.bytes, &m, sizeof m);
    if (MPI_Isend(o.bytes, sizeof m, MPI_BYTE, to, tag, comm_, &o.req) != MPI_SUCCESS) out_.pop_back();
  }
  void reap_sends() {
    for (auto it = out_.begin(); it != out_.end();) {
      int done = 0;
      MPI_Test(&it->req, &done, MPI_STATUS_IGNORE);
      it = done ? out_.erase(it) : std::next(it);
    }
  }
  void post_ping_receive() {
    MPI_Irecv(&ping_in_, sizeof(Ping), MPI_BYTE, MPI_ANY_SOURCE, kPingTag, comm_, &ping_req_);
  }
  void post_answer_receive(int r) {
    MPI_Irecv(&answer_in_[r], sizeof(WaitReport), MPI_BYTE, r, kAnswerTag, comm_, &answer_req_[r]);
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  int32_t round_ = 0;
  Ping ping_in_{};
  MPI_Request ping_req_ = MPI_REQUEST_NULL;
  std::vector<WaitReport> answer_in_;
  std::vector<MPI_Request> answer_req_;
  std::list<Outgoing> out_;
};

// The ranks a diagnosis names, by world rank.
struct Findings {
  std::vector<int> silent;     // no answer
  std::vector<int> busy;       // alive, outside collectives (members; others from kBusyNamedS)
  std::vector<int> elsewhere;  // members waiting in another collective
};

Findings find_stall(const CollectiveCall& call, int me, const std::vector<std::optional<WaitReport>>& reports) {
  Findings f;
  const int n = static_cast<int>(reports.size());
  std::vector<char> member(n, 0);
  if (call.members)
    for (int r : *call.members)
      if (r >= 0 && r < n) member[r] = 1;
  for (int r = 0; r < n; ++r) {
    if (r == me) continue;
    if (!reports[r]) {
      f.silent.push_back(r);
      continue;
    }
    const WaitReport& w = *reports[r];
    if (!w.waiting) {
      if (member[r] || w.seconds >= kBusyNamedS) f.busy.push_back(r);
      continue;
    }
    const bool same = std::string(w.axis, strnlen(w.axis, sizeof w.axis)) == call.axis &&
                      w.seq == call.seq && w.kind == static_cast<int32_t>(call.kind);
    if (member[r] && !same) f.elsewhere.push_back(r);
  }
  return f;
}

std::string seconds_text(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, s < 10 ? "%.1f" : "%.0f", s);
  return buf;
}

std::string call_text(const WaitReport& w) {
  if (w.seq == 0) return "no collective yet";
  return str_cat(collective_name(static_cast<CollectiveKind>(w.kind)), " #", w.seq, " on axis ",
                 std::string(w.axis, strnlen(w.axis, sizeof w.axis)));
}

// The watchdog thread: answers pings and watches this rank's current wait.
class Watchdog {
 public:
  explicit Watchdog(bool can_ask) {
    if (can_ask) channel_ = std::make_unique<Channel>();
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    // Signals (preemption's SIGUSR1/SIGTERM) stay with the main thread.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    thread_ = std::thread([this] { run(); });
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
  }

  // At MPI_Finalize.
  void stop() {
    {
      std::lock_guard<std::mutex> lock(stop_mu_);
      stop_ = true;
    }
    stop_cv_.notify_all();
    thread_.join();
    if (channel_) channel_->close();
  }

 private:
  void run() {
    std::unique_lock<std::mutex> lock(stop_mu_);
    while (!stop_cv_.wait_for(lock, kTick, [this] { return stop_; })) {
      lock.unlock();
      tick();
      lock.lock();
    }
  }

  void tick() {
    const State s = snapshot();
    const auto now = Clock::now();
    // A timed-out rank is asking around and ends the job soon: do not pile on.
    if (channel_ && channel_->answer_pings(report_of(s, now, false)) >= 0)
      quiet_until_ = now + seconds(2 * probe_s(g_timeout_s) + 2);
    const double timeout = g_timeout_s;
    if (!s.waiting || timeout <= 0 || seconds_between(s.since, now) < timeout || now < quiet_until_) return;
    diagnose(s, seconds_between(s.since, now), timeout);
  }

  // Whether the main thread still waits in the collective of `s`.
  static bool still_waiting(const State& s) {
    const State n = snapshot();
    return n.waiting && n.call.seq == s.call.seq && n.call.axis == s.call.axis;
  }

  void diagnose(const State& s, double waited_s, double timeout) {
    if (!channel_) {
      end_job(describe_stall(s.call, waited_s, rank_, {}) +
              " (MPI without MPI_THREAD_MULTIPLE: the other ranks cannot be asked)");
    }
    Channel& ch = *channel_;
    std::vector<std::optional<WaitReport>> reports;
    ch.start_round(reports);
    const auto start = Clock::now();
    int lowest_diagnosing = ch.size();  // another timed-out rank below us reports instead
    auto answer = [&] {
      const int pinger = ch.answer_pings(report_of(snapshot(), Clock::now(), true));
      if (pinger >= 0) lowest_diagnosing = std::min(lowest_diagnosing, pinger);
    };
    for (;;) {
      if (!still_waiting(s)) return;  // it completed after all
      answer();
      ch.collect(reports);
      const auto answered = std::count_if(reports.begin(), reports.end(), [](auto& r) { return r.has_value(); });
      if (answered == ch.size() - 1 || seconds_between(start, Clock::now()) > probe_s(timeout)) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    const Findings f = find_stall(s.call, rank_, reports);
    if (s.patient && f.silent.empty() && f.elsewhere.empty()) {  // everyone late is still working
      quiet_until_ = Clock::now() + seconds(timeout);
      return;
    }
    if (lowest_diagnosing < rank_) {  // one line per job: give the lower rank time to end it
      const auto grace = Clock::now();
      while (seconds_between(grace, Clock::now()) < probe_s(timeout) + 2) {
        if (!still_waiting(s)) return;
        answer();
        std::this_thread::sleep_for(kTick);
      }
    }
    end_job(describe_stall(s.call, waited_s, rank_, reports));
  }

  [[noreturn]] void end_job(const std::string& line) {
    std::fprintf(stderr, "retort: error (rank %d): %s\n", rank_, line.c_str());
    std::fflush(stderr);
    std::map<int, std::function<void()>> hooks;
    {
      std::lock_guard<std::mutex> lock(g_mu);
      hooks = g_end_hooks;
    }
    for (auto& [id, hook] : hooks) hook();
    MPI_Abort(MPI_COMM_WORLD, kCollectiveTimeoutExitCode);
    std::_Exit(kCollectiveTimeoutExitCode);  // MPI_Abort does not return; in case it does
  }

  static Clock::duration seconds(double s) {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
  }

  std::unique_ptr<Channel> channel_;
  int rank_ = 0;
  Clock::time_point quiet_until_{};
  std::thread thread_;
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stop_ = false;
};

Watchdog* g_watchdog = nullptr;

// Attribute on MPI_COMM_SELF: MPI_Finalize deletes it first, which stops the watchdog.
int stop_watchdog(MPI_Comm, int, void*, void*) {
  if (g_watchdog) g_watchdog->stop();
  delete g_watchdog;
  g_watchdog = nullptr;
  std::lock_guard<std::mutex> lock(g_mu);
  g_queued.clear();
  return MPI_SUCCESS;
}

// "rank 3" or "ranks 1, 3".
std::string rank_list(const std::vector<int>& ranks) {
  std::string s = ranks.size() == 1 ? "rank " : "ranks ";
  const size_t shown = std::min(ranks.size(), kMostClauses * 2);
  for (size_t i = 0; i < shown; ++i) s += str_cat(i ? ", " : "", ranks[i]);
  if (shown < ranks.size()) s += str_cat(", ... (", ranks.size(), " in all)");
  return s;
}

}  // namespace

const char* collective_name(CollectiveKind kind) {
  switch (kind) {
    case CollectiveKind::AllReduce: return "all_reduce";
    case CollectiveKind::AllGather: return "all_gather";
    case CollectiveKind::ReduceScatter: return "reduce_scatter";
    case CollectiveKind::Broadcast: return "broadcast";
    case CollectiveKind::Barrier: return "barrier";
  }
  return "collective";
}

void set_collective_timeout(double seconds) { g_timeout_s = seconds; }
double collective_timeout() { return g_timeout_s; }

void attach_collective_watchdog() {
  static bool attached = false;
  if (attached) return;
  attached = true;
  int size = 1, provided = MPI_THREAD_SINGLE;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size == 1) return;
  MPI_Query_thread(&provided);
  if (provided != MPI_THREAD_MULTIPLE && g_timeout_s <= 0) return;  // off: no thread at all
  g_watchdog = new Watchdog(provided == MPI_THREAD_MULTIPLE);
  int keyval = MPI_KEYVAL_INVALID;
  MPI_Comm_create_keyval(MPI_COMM_NULL_COPY_FN, stop_watchdog, &keyval, nullptr);
  MPI_Comm_set_attr(MPI_COMM_SELF, keyval, nullptr);
}

WatchedWait::WatchedWait(const CollectiveCall& call) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_state.waiting = true;
  g_state.call = call;
  g_state.since = Clock::now();
}

WatchedWait::~WatchedWait() {
  std::lock_guard<std::mutex> lock(g_mu);
  g_state.waiting = false;
  g_state.since = Clock::now();
}

bool collective_watchdog_running() { return g_watchdog != nullptr; }

bool watch_queued_collective(const CollectiveCall& call, std::function<bool()> done) {
  if (!g_watchdog) return false;
  std::lock_guard<std::mutex> lock(g_mu);
  g_queued.push_back({call, Clock::now(), std::move(done)});
  return true;
}

int add_job_end_hook(std::function<void()> hook) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_end_hooks.emplace(g_next_hook, std::move(hook));
  return g_next_hook++;
}

void remove_job_end_hook(int id) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_end_hooks.erase(id);
}

PatientCollectives::PatientCollectives() {
  std::lock_guard<std::mutex> lock(g_mu);
  ++g_state.patient;
}

PatientCollectives::~PatientCollectives() {
  std::lock_guard<std::mutex> lock(g_mu);
  --g_state.patient;
}

void check_collective(int rc, const CollectiveCall& call, const char* mpi_function) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  throw Error(str_cat("collective ", collective_name(call.kind), " #", call.seq, " on axis ",
                      call.axis, ": ", mpi_function, " failed: ", std::string(msg, len)));
}

std::string describe_stall(const CollectiveCall& call, double waited_s, int me,
                           const std::vector<std::optional<WaitReport>>& reports) {
  std::string s = str_cat("collective ", collective_name(call.kind), " #", call.seq, " on axis ",
                          call.axis, " has waited ", seconds_text(waited_s), " s");
  if (reports.empty()) return s;
  const Findings f = find_stall(call, me, reports);
  if (!f.silent.empty())
    s += str_cat("; ", rank_list(f.silent), f.silent.size() == 1 ? " does" : " do",
                 " not respond (stopped, dead or its node hangs)");
  for (size_t i = 0; i < f.busy.size() && i < kMostClauses; ++i) {
    const WaitReport& w = *reports[f.busy[i]];
    s += str_cat("; rank ", f.busy[i], " has been outside collectives for ", seconds_text(w.seconds),
                 " s since ", call_text(w), " (stuck in I/O or computing)");
  }
  for (size_t i = 0; i < f.elsewhere.size() && i < kMostClauses; ++i)
    s += str_cat("; rank ", f.elsewhere[i], " has not arrived (waits in ", call_text(*reports[f.elsewhere[i]]), ")");
  if (f.busy.size() > kMostClauses || f.elsewhere.size() > kMostClauses) s += "; ...";
  if (f.silent.empty() && f.busy.empty() && f.elsewhere.empty())
    s += "; every rank answers and has arrived (MPI does not complete it)";
  return s;
}

}  // namespace retort

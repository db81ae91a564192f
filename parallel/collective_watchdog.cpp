#include "parallel/collective_watchdog.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <list>
#include <thread>

#include "core/check.h"

namespace retort {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Poll schedule: MPI_Test back to back for the first kSpinS (what a blocking MPI call does, so
// fast collectives cost the same), then one MPI_Test per kSleep. Open MPI progresses
// non-blocking collectives only inside MPI calls, so the sleep stays short.
constexpr double kSpinS = 0.01;
constexpr auto kSleep = std::chrono::microseconds(100);
constexpr double kPingCheckS = 0.001;  // pending pings are answered this often

constexpr int kPingTag = 1, kAnswerTag = 2;

double g_timeout_s = kDefaultCollectiveTimeoutS;

// How long a timed-out rank waits for answers: a quarter of the timeout, within [1, 5] s. Ranks
// that wait in a collective answer within kPingCheckS plus one scheduler slice.
double probe_s() { return std::clamp(g_timeout_s / 4, 1.0, 5.0); }

struct Ping {
  int32_t round;
  int32_t diagnosing;
};

// The watchdog's messages (pings and answers) on a private duplicate of MPI_COMM_WORLD. Errors
// on it only cost answers: the job ends either way.
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

Channel* g_channel = nullptr;

// Attribute on MPI_COMM_SELF: MPI_Finalize deletes it first, which closes the channel.
int close_channel(MPI_Comm, int, void*, void*) {
  if (g_channel) g_channel->close();
  delete g_channel;
  g_channel = nullptr;
  return MPI_SUCCESS;
}

WaitReport report_of(const CollectiveCall& call, double waited_s, bool diagnosing) {
  WaitReport r;
  r.diagnosing = diagnosing ? 1 : 0;
  r.kind = static_cast<int32_t>(call.kind);
  std::strncpy(r.axis, call.axis.c_str(), sizeof r.axis - 1);
  r.seq = call.seq;
  r.waited_s = waited_s;
  return r;
}

// `req` has waited `waited_s` > timeout: ask every rank what it does, print the diagnosis and
// end the job. Returns (true) only if the collective completes meanwhile.
bool diagnose_or_abort(MPI_Request* req, const CollectiveCall& call, double waited_s) {
  Channel& ch = *g_channel;
  std::vector<std::optional<WaitReport>> reports;
  ch.start_round(reports);
  const auto start = Clock::now();
  int lowest_diagnosing = ch.size();  // another timed-out rank below us reports instead
  auto poll = [&] {                   // true once the collective is done
    int done = 0;
    check_collective(MPI_Test(req, &done, MPI_STATUS_IGNORE), call, "MPI_Test");
    const int pinger = ch.answer_pings(report_of(call, waited_s + seconds_since(start), true));
    if (pinger >= 0) lowest_diagnosing = std::min(lowest_diagnosing, pinger);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return done != 0;
  };
  for (;;) {
    if (poll()) return true;
    ch.collect(reports);
    const auto answered = std::count_if(reports.begin(), reports.end(), [](auto& r) { return r.has_value(); });
    if (answered == ch.size() - 1 || seconds_since(start) > probe_s()) break;
  }
  const std::string line = describe_stall(call, waited_s, ch.rank(), reports);
  if (lowest_diagnosing < ch.rank()) {  // one line per job: give the lower rank time to end it
    const auto grace = Clock::now();
    while (seconds_since(grace) < probe_s() + 2)
      if (poll()) return true;
  }
  std::fprintf(stderr, "retort: error (rank %d): %s\n", ch.rank(), line.c_str());
  std::fflush(stderr);
  std::fflush(stdout);
  MPI_Abort(MPI_COMM_WORLD, kCollectiveTimeoutExitCode);
  std::_Exit(kCollectiveTimeoutExitCode);  // MPI_Abort does not return; in case it does
}

// "rank 3" or "ranks 1, 3".
std::string rank_list(const std::vector<int>& ranks) {
  std::string s = ranks.size() == 1 ? "rank " : "ranks ";
  const size_t shown = std::min<size_t>(ranks.size(), 16);
  for (size_t i = 0; i < shown; ++i) s += str_cat(i ? ", " : "", ranks[i]);
  if (shown < ranks.size()) s += str_cat(", ... (", ranks.size(), " in all)");
  return s;
}

std::string seconds_text(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, s < 10 ? "%.1f" : "%.0f", s);
  return buf;
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
  int size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size == 1) return;
  g_channel = new Channel();
  int keyval = MPI_KEYVAL_INVALID;
  MPI_Comm_create_keyval(MPI_COMM_NULL_COPY_FN, close_channel, &keyval, nullptr);
  MPI_Comm_set_attr(MPI_COMM_SELF, keyval, nullptr);
}

void check_collective(int rc, const CollectiveCall& call, const char* mpi_function) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  throw Error(str_cat("collective ", collective_name(call.kind), " #", call.seq, " on axis ",
                      call.axis, ": ", mpi_function, " failed: ", std::string(msg, len)));
}

void watchdog_wait(MPI_Request* req, const CollectiveCall& call) {
  int done = 0;
  check_collective(MPI_Test(req, &done, MPI_STATUS_IGNORE), call, "MPI_Test");
  if (done) return;
  if (g_timeout_s <= 0 || !g_channel) {
    check_collective(MPI_Wait(req, MPI_STATUS_IGNORE), call, "MPI_Wait");
    return;
  }
  const auto start = Clock::now();
  double deadline = g_timeout_s, next_ping_check = kPingCheckS;
  for (;;) {
    check_collective(MPI_Test(req, &done, MPI_STATUS_IGNORE), call, "MPI_Test");
    if (done) return;
    const double t = seconds_since(start);
    if (t >= next_ping_check) {
      next_ping_check = t + kPingCheckS;
      // A timed-out rank is asking around and ends the job soon: do not pile on.
      if (g_channel->answer_pings(report_of(call, t, false)) >= 0)
        deadline = std::max(deadline, t + 2 * probe_s() + 2);
    }
    if (t >= deadline) {
      if (diagnose_or_abort(req, call, t)) return;
    }
    if (t >= kSpinS) std::this_thread::sleep_for(kSleep);
  }
}

std::string describe_stall(const CollectiveCall& call, double waited_s, int me,
                           const std::vector<std::optional<WaitReport>>& reports) {
  std::string s = str_cat("collective ", collective_name(call.kind), " #", call.seq, " on axis ",
                          call.axis, " has waited ", seconds_text(waited_s), " s");
  std::vector<int> silent;
  for (int r = 0; r < static_cast<int>(reports.size()); ++r)
    if (r != me && !reports[r]) silent.push_back(r);
  if (!silent.empty())
    s += str_cat("; ", rank_list(silent), silent.size() == 1 ? " does" : " do",
                 " not respond (stopped, stuck in I/O or dead)");
  bool late = false;
  static const std::vector<int> none;
  for (int r : call.members ? *call.members : none) {
    if (r == me || r >= static_cast<int>(reports.size()) || !reports[r]) continue;
    const WaitReport& w = *reports[r];
    const std::string axis(w.axis, strnlen(w.axis, sizeof w.axis));
    if (axis == call.axis && w.seq == call.seq && w.kind == static_cast<int32_t>(call.kind)) continue;
    late = true;
    s += str_cat("; rank ", r, " has not arrived (waits in ",
                 collective_name(static_cast<CollectiveKind>(w.kind)), " #", w.seq, " on axis ", axis, ")");
  }
  if (silent.empty() && !late) s += "; every rank answers and has arrived (MPI does not complete it)";
  return s;
}

}  // namespace retort

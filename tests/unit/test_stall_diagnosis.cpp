// The collective watchdog's diagnosis line (parallel/collective_watchdog.h): which ranks it names
// as not responding and which as not arrived, from the answers it got. The timeout itself is
// tested end to end (tests/e2e/stalled_rank.sh).
#include <gtest/gtest.h>

#include <cstring>

#include "parallel/collective_watchdog.h"

using namespace retort;

namespace {

CollectiveCall call_on(const char* axis, std::vector<int> members, int64_t seq = 7) {
  return {CollectiveKind::AllReduce, axis, seq, std::make_shared<const std::vector<int>>(std::move(members))};
}

WaitReport waits_in(CollectiveKind kind, const char* axis, int64_t seq) {
  WaitReport r;
  r.waiting = 1;
  r.kind = static_cast<int32_t>(kind);
  std::strncpy(r.axis, axis, sizeof r.axis - 1);
  r.seq = seq;
  return r;
}

}  // namespace

TEST(StallDiagnosis, NamesTheRankThatDoesNotRespond) {
  // dp2: rank 0 waits, rank 1 (stopped) never answers.
  EXPECT_EQ(describe_stall(call_on("dp", {0, 1}, 1234), 10.02, 0, {std::nullopt, std::nullopt}),
            "collective all_reduce #1234 on axis dp has waited 10 s; rank 1 does not respond "
            "(stopped, dead or its node hangs)");
}

TEST(StallDiagnosis, NamesARankBusyOutsideCollectives) {
  // Rank 1 answers (its process lives) but has not called a collective for 12 s: stuck in I/O.
  // Rank 2, outside the waiting communicator, is busy too but only briefly: not named.
  std::vector<std::optional<WaitReport>> reports(3);
  reports[1] = waits_in(CollectiveKind::Broadcast, "world", 40);
  reports[1]->waiting = 0, reports[1]->seconds = 12.3;
  reports[2] = waits_in(CollectiveKind::AllReduce, "tp", 9);
  reports[2]->waiting = 0, reports[2]->seconds = 0.2;
  EXPECT_EQ(describe_stall(call_on("dp", {0, 1}, 41), 10, 0, reports),
            "collective all_reduce #41 on axis dp has waited 10 s; rank 1 has been outside "
            "collectives for 12 s since broadcast #40 on axis world (stuck in I/O or computing)");
}

TEST(StallDiagnosis, SilentRanksAnywhereAndLateMembers) {
  // dp2 x fsdp2: rank 0 waits in dp {0, 2}; rank 2 waits in an fsdp gather with rank 3, which
  // is silent; rank 1 answers from the same dp all-reduce number on its own dp group.
  std::vector<std::optional<WaitReport>> reports(4);
  reports[1] = waits_in(CollectiveKind::AllReduce, "dp", 7);
  reports[2] = waits_in(CollectiveKind::AllGather, "fsdp", 31);
  EXPECT_EQ(describe_stall(call_on("dp", {0, 2}), 5.5, 0, reports),
            "collective all_reduce #7 on axis dp has waited 5.5 s; rank 3 does not respond "
            "(stopped, dead or its node hangs); rank 2 has not arrived (waits in all_gather #31 on "
            "axis fsdp)");
  reports[1].reset();
  EXPECT_NE(describe_stall(call_on("dp", {0, 2}), 5.5, 0, reports).find("ranks 1, 3 do not respond"),
            std::string::npos);
}

TEST(StallDiagnosis, EveryRankArrived) {
  std::vector<std::optional<WaitReport>> reports(2);
  reports[0] = waits_in(CollectiveKind::AllReduce, "world", 7);
  EXPECT_EQ(describe_stall(call_on("world", {0, 1}), 600, 1, reports),
            "collective all_reduce #7 on axis world has waited 600 s; every rank answers and has "
            "arrived (MPI does not complete it)");
}

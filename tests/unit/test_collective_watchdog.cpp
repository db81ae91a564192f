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
  r.kind = static_cast<int32_t>(kind);
  std::strncpy(r.axis, axis, sizeof r.axis - 1);
  r.seq = seq;
  return r;
}

}  // namespace

TEST(CollectiveWatchdog, NamesTheRankThatDoesNotRespond) {
  // dp2: rank 0 waits, rank 1 (stopped) never answers.
  EXPECT_EQ(describe_stall(call_on("dp", {0, 1}, 1234), 10.02, 0, {std::nullopt, std::nullopt}),
            "collective all_reduce #1234 on axis dp has waited 10 s; rank 1 does not respond "
            "(stopped, stuck in I/O or dead)");
}

TEST(CollectiveWatchdog, SilentRanksAnywhereAndLateMembers) {
  // dp2 x fsdp2: rank 0 waits in dp {0, 2}; rank 2 waits in an fsdp gather with rank 3, which
  // is silent; rank 1 answers from the same dp all-reduce number on its own dp group.
  std::vector<std::optional<WaitReport>> reports(4);
  reports[1] = waits_in(CollectiveKind::AllReduce, "dp", 7);
  reports[2] = waits_in(CollectiveKind::AllGather, "fsdp", 31);
  EXPECT_EQ(describe_stall(call_on("dp", {0, 2}), 5.5, 0, reports),
            "collective all_reduce #7 on axis dp has waited 5.5 s; rank 3 does not respond "
            "(stopped, stuck in I/O or dead); rank 2 has not arrived (waits in all_gather #31 on "
            "axis fsdp)");
  reports[1].reset();
  EXPECT_NE(describe_stall(call_on("dp", {0, 2}), 5.5, 0, reports).find("ranks 1, 3 do not respond"),
            std::string::npos);
}

TEST(CollectiveWatchdog, EveryRankArrived) {
  std::vector<std::optional<WaitReport>> reports(2);
  reports[0] = waits_in(CollectiveKind::AllReduce, "world", 7);
  EXPECT_EQ(describe_stall(call_on("world", {0, 1}), 600, 1, reports),
            "collective all_reduce #7 on axis world has waited 600 s; every rank answers and has "
            "arrived (MPI does not complete it)");
}

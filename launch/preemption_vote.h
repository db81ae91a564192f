// The collective half of preemption (core/preemption.h holds the signal flag): all ranks agree
// whether any of them was asked to stop, so every rank stops after the same unit of work (a
// training step, a corpus shard round).
#pragma once
#include "parallel/mesh.h"

namespace retort {

// Max over ranks of "this rank received SIGUSR1/SIGTERM" (one 1-element all-reduce; a
// collective: every rank of the mesh must call it at the same point).
bool any_rank_preempted(const Mesh& mesh);

}  // namespace retort

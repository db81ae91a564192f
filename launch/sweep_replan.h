// Replanning a sweep into a directory that holds its runs' outputs (docs/SWEEPS.md): the
// scripts skip a complete run and resume an interrupted one from its checkpoint, so a run whose
// config the new plan changes would keep its old config's results, or continue them under the
// new one, without a word. check_replan refuses such a plan before anything is written.
#pragma once
#include "scaling/sweep_plan.h"

namespace retort {

// ConfigError, one line naming the runs and the first changed key, when a run of `plan` whose
// directory holds outputs would get a config that differs, in a key its command reads and that
// changes what it computes, from the one those outputs came from (its config.resolved.yaml,
// else the previous plan's configs/NAME.yaml); the runs with outputs that read such a run's
// output count too. Free to change: run.dir, checkpoint.*,
// train.log_every, train.spike_zscore, eval.every, system.*, bench.*, the mesh (parallel.dp,
// fsdp, fsdp_keep_params, tp, sp, device, bucket_elems, timeout_s), generate.batch.
void check_replan(const SweepSpec& spec, const SweepPlan& plan);

}  // namespace retort

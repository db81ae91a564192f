// Preemption: SIGUSR1 (Slurm `--signal=B:USR1@SECONDS`, forwarded by mpirun to every rank) and
// SIGTERM ask a job to stop cleanly: every rank finishes its current step, the job writes a
// checkpoint and exits with kPreemptedExitCode, and the same command with --resume continues
// bitwise where it stopped (launch/slurm/train.sbatch requeues itself on that code).
#pragma once

namespace retort {

constexpr int kPreemptedExitCode = 75;  // EX_TEMPFAIL: "stopped early on request; resume me"

// Installs the SIGUSR1 and SIGTERM handlers (idempotent). The handlers only set a flag.
void install_preemption_handlers();
// The signal received so far ("SIGUSR1", "SIGTERM"), or nullptr.
const char* preemption_signal();

}  // namespace retort

#!/usr/bin/env bash
# A rank that stalls while its peer's GPU collectives are queued on the communication stream
# (label gpu; exits 77 = skipped with fewer than 2 GPUs), two GPUs:
#  - fsdp2, rank 1 stuck in I/O before step 7 (RETORT_FAULT_STUCK_IO): rank 0's first
#    collective of step 7 is an NCCL all-gather of parameters that never completes, and its
#    host then blocks in a stream synchronisation, outside any MPI call. The collective watchdog
#    (parallel/collective_watchdog.h, watch_queued_collective) sees the queued collective
#    pending and ends the job with exit 124 and one line naming rank 1 as outside collectives,
#    after aborting its NCCL communicators (checked on the simulator, which reports the call).
#    Without that the job hangs, and this test fails after TIMEOUT + MARGIN.
#  - dp2, rank 1 stopped (SIGSTOP) after the step-5 checkpoint: exit 124 naming rank 1 as not
#    responding (wherever it stopped: in a host or a device collective).
source "$(dirname "$0")/lib.sh"
gpus=$(retort info "$TINY" --json | json /dev/stdin "j['cuda_gpus']")
if [ "$gpus" -lt 2 ]; then echo "fewer than 2 GPUs visible: skipped"; exit 77; fi
tiny_tokens "$WORK/tok"
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
TIMEOUT=6    # longer than stalled_rank.sh: simulated GPU ranks share few cores with other tests
MARGIN=${GPU_STALL_MARGIN:-10}  # diagnosis, MPI_Abort, mpirun's teardown; the simulator is slow
ARGS=("$TINY" --set "data.train=$WORK/tok/train.h5" --set "data.val=$WORK/tok/val.h5"
      --set train.log_every=1 --set train.steps=200 --set checkpoint.every=5
      --set checkpoint.keep_last=0 --set eval.every=0 --set eval.max_windows=2
      --set parallel.timeout_s=$TIMEOUT --set parallel.device=cuda)
trap cleanup_victims EXIT

mkfifo "$WORK/stuck.fifo"
RETORT_FAULT_STUCK_IO=1:7:$WORK/stuck.fifo start stuck_io 2 --set parallel.fsdp=2
for _ in $(seq 1200); do [ "$(wc -l <"$WORK/stuck_io/metrics.jsonl" 2>/dev/null || echo 0)" -ge 6 ] && break; sleep 0.05; done
ends stuck_io "step 6 (rank 1 then blocks in I/O)"
one_line stuck_io "rank 1 has been outside collectives for [0-9.]+ s since [a-z_]+ #[0-9]+ on axis [a-z]+ \(stuck in I/O or computing\)"
if retort info "$TINY" | grep -q "simulated GPU"; then  # the simulator reports ncclCommAbort
  grep -aq "nccl simulator: ncclCommAbort (rank 0 of 2)" "$WORK/stuck_io.log" ||
    { cat "$WORK/stuck_io.log" >&2; fail "stuck_io: rank 0 did not abort its NCCL communicators"; }
fi

start dp2 2 --set parallel.dp=2
signal_rank dp2 STOP 1
ends dp2 "rank 1 got SIGSTOP"
one_line dp2 "rank 1 does not respond \(stopped, dead or its node hangs\)"
echo PASS

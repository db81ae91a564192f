// An exclusive lock on a directory that one job writes (a run directory, a corpus), so that a
// second job started on it (the same command twice, a resubmission while the first still
// runs) stops at once with one line naming the holder instead of both writing one run's
// checkpoints and metrics. flock(2) on DIR/.lock (open read-only, so the file system can still
// be remounted read-only under the job), which holds "pid P on host H since TIME":
// the kernel releases the lock when the holding process ends, however it ends, so a crash
// never leaves it behind. On a file system without flock (ENOSYS, EOPNOTSUPP, ENOLCK: e.g.
// Lustre mounted without -o flock) it warns once on stderr and goes on unlocked.
#pragma once
#include <string>

namespace retort {

class DirLock {
 public:
  // Takes the lock of `dir` (which must exist) for the life of this object. When another
  // process holds it, throws Error: "DIR is in use by another job (pid P on host H since
  // TIME; its lock: DIR/.lock); wait for it to end or choose another <what>".
  DirLock(const std::string& dir, const std::string& what);
  ~DirLock();
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace retort

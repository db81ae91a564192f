#include "core/dir_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "core/check.h"
#include "core/fs.h"

namespace retort {

namespace {

// "pid 1234 on host node07 since 2026-12-07T10:56:13Z"
std::string holder_line() {
  char host[256] = "?";
  gethostname(host, sizeof host - 1);
  char when[32] = "?";
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  if (gmtime_r(&now, &utc)) std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return str_cat("pid ", getpid(), " on host ", host, " since ", when);
}

}  // namespace

DirLock::DirLock(const std::string& dir, const std::string& what) {
  const std::string path = dir + "/.lock";
  // Held through a read-only descriptor (flock needs no write access): a file open for
  // writing would keep the file system from being remounted read-only while the job runs.
  fd_ = ::open(path.c_str(), O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw Error(str_cat(path, ": cannot open: ", std::strerror(errno)));
  if (::flock(fd_, LOCK_EX | LOCK_NB) == 0) {
    try {  // the record through a descriptor of its own, closed at once (same file: no rename)
      const std::string line = holder_line() + "\n";
      fs::FileWriter record(path);
      record.write(line.data(), line.size());
      record.close();
    } catch (const Error& e) {
      std::fprintf(stderr, "retort: warning: cannot record this job in its lock: %s\n", e.what());
    }
    return;
  }
  const int err = errno;
  if (err == EWOULDBLOCK) {
    std::string holder;
    try {
      holder = fs::read_file(path);
    } catch (const Error&) {
    }
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == '\r')) holder.pop_back();
    ::close(fd_);
    fd_ = -1;
    throw Error(str_cat(dir, " is in use by another job (", holder.empty() ? "not yet recorded" : holder,
                        "; its lock: ", path, "); wait for it to end or choose another ", what));
  }
  ::close(fd_);
  fd_ = -1;
  if (err == ENOSYS || err == EOPNOTSUPP || err == ENOLCK) {
    std::fprintf(stderr, "retort: warning: %s: this file system cannot lock (%s); not guarding %s "
                 "against a second job\n", path.c_str(), std::strerror(err), dir.c_str());
    return;
  }
  throw Error(str_cat(path, ": cannot lock: ", std::strerror(err)));
}

DirLock::~DirLock() {
  if (fd_ >= 0) ::close(fd_);  // closing the descriptor releases the lock
}

}  // namespace retort

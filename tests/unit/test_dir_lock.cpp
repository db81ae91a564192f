// DirLock: one holder at a time, the refusal naming the holder, release when the holder goes
// (also when a process that held it ends without unlocking), and a missing directory.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <optional>

#include "core/check.h"
#include "core/dir_lock.h"
#include "core/fs.h"
#include "tests/unit/test_support.h"

namespace stdfs = std::filesystem;
using namespace retort;

namespace {

std::string refusal(const std::string& dir) {
  try {
    DirLock second(dir, "run.dir");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(DirLock, SecondHolderIsRefusedWithTheFirstNamed) {
  const std::string dir = test::fresh_temp_dir("lock", "second");
  std::optional<DirLock> first(std::in_place, dir, "run.dir");
  const std::string holder = fs::read_file(dir + "/.lock");
  EXPECT_EQ(holder.rfind(str_cat("pid ", ::getpid(), " on host "), 0), 0u) << holder;
  EXPECT_NE(holder.find(" since 20"), std::string::npos) << holder;

  const std::string why = refusal(dir);
  EXPECT_EQ(why, str_cat(dir, " is in use by another job (", holder.substr(0, holder.size() - 1), "; its lock: ",
                         dir, "/.lock); wait for it to end or choose another run.dir"));
  EXPECT_EQ(fs::read_file(dir + "/.lock"), holder) << "the refused job changed the holder's record";

  first.reset();
  EXPECT_EQ(refusal(dir), "") << "the lock outlived its holder";
  stdfs::remove_all(dir);
}

TEST(DirLock, ReleasedWhenItsProcessEndsWithoutUnlocking) {
  const std::string dir = test::fresh_temp_dir("lock", "exit");
  int ready[2], go[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(go), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {  // holds the lock, says so, waits, then ends without running destructors
    new DirLock(dir, "run.dir");
    char c = 1;
    (void)!::write(ready[1], &c, 1);
    (void)!::read(go[0], &c, 1);
    ::_exit(0);
  }
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  EXPECT_NE(refusal(dir).find(str_cat("(pid ", child, " on host ")), std::string::npos);
  ASSERT_EQ(::write(go[1], &c, 1), 1);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_EQ(refusal(dir), "") << "a process that ended still holds the lock";
  for (int fd : {ready[0], ready[1], go[0], go[1]}) ::close(fd);
  stdfs::remove_all(dir);
}

TEST(DirLock, MissingDirectoryIsAnErrorNamingTheLock) {
  const std::string dir = test::fresh_temp_dir("lock", "missing") + "/absent";
  try {
    DirLock lock(dir, "run.dir");
    FAIL() << "locked a directory that does not exist";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), dir + "/.lock: cannot open: No such file or directory");
  }
}

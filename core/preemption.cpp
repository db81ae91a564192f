#include "core/preemption.h"

#include <csignal>

namespace retort {

namespace {
volatile std::sig_atomic_t g_signal = 0;
extern "C" void on_preemption_signal(int sig) { g_signal = sig; }
}  // namespace

void install_preemption_handlers() {
  struct sigaction sa = {};
  sa.sa_handler = on_preemption_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // blocking I/O and MPI calls continue; the flag is polled per step
  sigaction(SIGUSR1, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

const char* preemption_signal() {
  switch (g_signal) {
    case SIGUSR1: return "SIGUSR1";
    case SIGTERM: return "SIGTERM";
    default: return nullptr;
  }
}

}  // namespace retort

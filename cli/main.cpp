// The trackevent CLI: everything lives in app.cpp, the commands and the library.
#include "app.hpp"

#ifdef TRACKEVENT_WITH_MIMALLOC
#include <mimalloc.h>
#endif

int main(int argc, char** argv) {
#ifdef TRACKEVENT_WITH_MIMALLOC
  // Events are allocated on the reader thread and freed on the dispatcher thread, batch after
  // batch: keep freed memory committed for a while instead of returning it to the OS at once
  // and faulting it back in (halves the allocator's system time in `ingest`).
  mi_option_set(mi_option_decommit_delay, 2000);
  mi_option_set(mi_option_eager_commit_delay, 0);
#endif
  return trackevent::cli::run(argc, argv);
}

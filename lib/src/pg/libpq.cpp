#include "pg/libpq.hpp"

#include <dlfcn.h>

#include <stdexcept>
#include <string>

namespace trackevent::detail {
namespace {

constexpr const char* kSoname = "libpq.so.5";  // libpq's soname since PostgreSQL 8.0

std::string dl_error() {
  const char* e = ::dlerror();
  return e != nullptr ? e : "unknown error";
}

Libpq load() {
  // RTLD_LOCAL: libpq's symbols serve this table only. If the program linked libpq itself (a
  // test, a bench), dlopen() returns the copy already loaded.
  void* handle = ::dlopen(kSoname, RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    throw std::runtime_error(
        std::string("cannot load ") + kSoname +
        " (the PostgreSQL client library; Debian package libpq5): " + dl_error());
  }
  Libpq api;
  // The handle is never closed: the functions stay in use until the process exits.
#define TRACKEVENT_LIBPQ_RESOLVE(name)                                                   \
  api.name = reinterpret_cast<decltype(api.name)>(::dlsym(handle, #name));               \
  if (api.name == nullptr) {                                                             \
    throw std::runtime_error(std::string("cannot find " #name " in ") + kSoname + ": " + \
                             dl_error());                                                \
  }
  TRACKEVENT_LIBPQ_FUNCTIONS(TRACKEVENT_LIBPQ_RESOLVE)
#undef TRACKEVENT_LIBPQ_RESOLVE
  return api;
}

}  // namespace

const Libpq& pq() {
  // A failed load throws out of the initializer, so the next call tries again.
  static const Libpq api = load();
  return api;
}

}  // namespace trackevent::detail

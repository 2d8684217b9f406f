#pragma once
// A Sink's WriteResult in one line, for assertion messages.

#include "pg/sqlstate.hpp"

#include <string>

namespace trackevent::test {

inline std::string describe(const WriteResult& r) {
  if (r.ok()) {
    return "ok stored=" + std::to_string(r.stored) + " duplicates=" + std::to_string(r.duplicates);
  }
  return std::string(trackevent::to_string(r.failure->disposition)) +
         " sqlstate=" + r.failure->sqlstate + " message=" + r.failure->message;
}

}  // namespace trackevent::test

// SQLSTATE -> Disposition: the one place that decides what a failed write means.
#include "pg/sqlstate.hpp"

#include <string_view>

namespace trackevent {

std::string_view to_string(Disposition d) noexcept {
  switch (d) {
    case Disposition::retry:
      return "retry";
    case Disposition::hold:
      return "hold";
    case Disposition::reject:
      return "reject";
  }
  return "retry";
}

// The table (first matching row wins):
//
//   SQLSTATE                     meaning                                   disposition
//   ---------------------------  ----------------------------------------  -----------
//   "" (none)                    connection lost / refused / timed out     retry
//   08xxx                        connection exception                      retry
//   57P01 57P02 57P03            admin/crash shutdown, cannot connect now  retry
//   57P04                        database dropped                          hold
//   57014                        query canceled (ours or not)              retry
//   40xxx (40001, 40P01, ...)    serialization failure, deadlock           retry
//   55P03                        lock not available                        retry
//   53xxx                        insufficient resources (disk, memory,     retry
//                                too many connections)
//   58xxx                        system / I/O error                        retry
//   28xxx                        invalid authorization (bad password)      hold
//   3D000                        database does not exist                   hold
//   3F000                        schema does not exist                     hold
//   42xxx (42501, 42P01, 42703)  no privilege, missing table/column, ...   hold
//   25006                        read-only transaction (hot standby)       hold
//   0A000                        feature not supported (wrong server)      hold
//   22xxx                        data exception (bad value)                reject
//   23xxx                        integrity constraint violation            reject
//   54xxx (54000)                program limit exceeded (row too big)      reject
//   anything else                unknown                                   retry
//
// Unknown codes retry (with backoff) rather than hold or reject: a retry costs time, a reject
// makes the caller split the batch and drop rows, which is only right when the data is at fault.
// 57014 retries whether or not we caused it; own_cancel is kept in the signature so callers
// say what they know and the policy for a foreign cancel can change here alone.
Disposition classify_sqlstate(std::string_view sqlstate, bool own_cancel) noexcept {
  (void)own_cancel;
  if (sqlstate.size() != 5) return Disposition::retry;  // none, or not a SQLSTATE at all
  const std::string_view cls = sqlstate.substr(0, 2);

  if (sqlstate == "57P04") return Disposition::hold;
  if (sqlstate == "57014") return Disposition::retry;
  if (sqlstate == "25006") return Disposition::hold;
  if (sqlstate == "3D000" || sqlstate == "3F000" || sqlstate == "0A000") return Disposition::hold;
  if (sqlstate == "55P03") return Disposition::retry;

  if (cls == "08" || cls == "40" || cls == "53" || cls == "57" || cls == "58") {
    return Disposition::retry;
  }
  if (cls == "28" || cls == "42") return Disposition::hold;
  if (cls == "22" || cls == "23" || cls == "54") return Disposition::reject;
  return Disposition::retry;
}

}  // namespace trackevent

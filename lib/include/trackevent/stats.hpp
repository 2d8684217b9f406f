#pragma once

#include <cstdint>

namespace trackevent {

/// Counters since the Tracker was made. Each event accepted by this Tracker ends in exactly one of
/// stored, duplicates, rejected_by_db, spooled or dropped (or is still in flight).
struct Stats {
  std::uint64_t accepted = 0;    ///< taken by track() (valid and queued)
  std::uint64_t stored = 0;      ///< written by the sink (including events replayed from the spool;
                                 ///< durable mode: also ours that another process sharing the
                                 ///< spool delivered)
  std::uint64_t duplicates = 0;  ///< the sink already had this event_id
  std::uint64_t rejected = 0;    ///< refused by validation: in track(), or (metadata moved in
                                 ///< with track(…, json&&)) by the dispatcher; never accepted
  std::uint64_t rejected_by_db = 0;  ///< bad rows isolated by the database (sent to dead letters)
  std::uint64_t dropped = 0;  ///< lost: queue full under OverflowPolicy::drop, or the spool failed
  std::uint64_t spooled = 0;  ///< written to the local spool for later delivery
  std::uint64_t unspooled = 0;  ///< taken back from the spool and delivered (stored or duplicate)
  std::uint64_t retries = 0;    ///< batch write attempts that failed transiently and were retried
};

}  // namespace trackevent

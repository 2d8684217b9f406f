/*
 * trackevent.h: the C ABI of libtrackevent (C99; usable from C++ and through FFIs like ctypes).
 *
 * A thin layer over trackevent::Tracker with the same contract: trackevent_track() queues the
 * event and returns at once (it never waits on the database by default), a dispatcher thread
 * batches events into the database, and trackevent_destroy() delivers what is queued within the
 * shutdown timeout and spools the rest. No function lets a C++ exception escape; each returns an
 * error code (see trackevent_error) and trackevent_last_error() explains the last failure on the
 * calling thread.
 *
 *   trackevent_options* o;
 *   trackevent_tracker* t;
 *   trackevent_options_create(&o);
 *   trackevent_options_set_database_url(o, "sqlite:/tmp/events.db");
 *   if (trackevent_create(o, &t) != TRACKEVENT_OK) { ... }
 *   trackevent_options_destroy(o);
 *   trackevent_track(t, 42, 7, "user.signed_in", "{\"method\":\"sso\"}");
 *   trackevent_destroy(t);
 *
 * Options are opaque with setter functions, so fields can be added without breaking the ABI.
 */
#ifndef TRACKEVENT_TRACKEVENT_H
#define TRACKEVENT_TRACKEVENT_H

#include "trackevent/export.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Error codes. Every function returning int returns one of these. */
typedef enum trackevent_error {
  TRACKEVENT_OK = 0,
  TRACKEVENT_EINVAL = 1,    /* invalid argument: NULL pointer, bad event name, org_id < 1,
                               user_id < 0, metadata not a JSON object or over a limit */
  TRACKEVENT_ENOMEM = 2,    /* out of memory */
  TRACKEVENT_ETIMEDOUT = 3, /* trackevent_flush(): events still in memory at the deadline */
  TRACKEVENT_EDROPPED = 4,  /* trackevent_track(): queue full under TRACKEVENT_ON_FULL_DROP;
                               the event was counted as dropped */
  TRACKEVENT_EOPEN = 5,     /* trackevent_create(): the tracker could not be set up. (A database
                               that cannot be reached is not an error: events are spooled.) */
  TRACKEVENT_EINTERNAL = 6  /* an unexpected internal error (details in trackevent_last_error) */
} trackevent_error;

/* What trackevent_track() does when the in-memory queue is full. */
typedef enum trackevent_on_full {
  TRACKEVENT_ON_FULL_SPOOL = 0, /* default: write the event to the local spool (a disk write) */
  TRACKEVENT_ON_FULL_DROP = 1,  /* count it as dropped; trackevent_track returns EDROPPED */
  TRACKEVENT_ON_FULL_BLOCK = 2  /* wait for room (backpressure; not for request paths) */
} trackevent_on_full;

typedef struct trackevent_options trackevent_options;
typedef struct trackevent_tracker trackevent_tracker;

/* Counters since the tracker was created (see trackevent::Stats). `rejected` includes calls
 * refused by trackevent_track() with TRACKEVENT_EINVAL. The reserved tail keeps the struct's size
 * stable when counters are added; it is zeroed. */
typedef struct trackevent_stats {
  uint64_t accepted;
  uint64_t stored;
  uint64_t duplicates;
  uint64_t rejected;
  uint64_t rejected_by_db;
  uint64_t dropped;
  uint64_t spooled;
  uint64_t unspooled;
  uint64_t retries;
  uint64_t reserved[7];
} trackevent_stats;

/* Options. trackevent_options_create() starts from the C++ defaults and the environment
 * (TRACKEVENT_DATABASE_URL, DATABASE_URL, TRACKEVENT_SPOOL_DIR), like
 * trackevent::TrackerOptions::from_env(). Setters return TRACKEVENT_EINVAL for out-of-range
 * values and leave the option unchanged. */
TRACKEVENT_API int trackevent_options_create(trackevent_options** out);
TRACKEVENT_API void trackevent_options_destroy(trackevent_options* options);
/* "postgresql://...", libpq "key=value" conninfo, or "sqlite:PATH". NULL or "": the embedded
 * store ($XDG_DATA_HOME/trackevent/events.db). Default: from the environment. */
TRACKEVENT_API int trackevent_options_set_database_url(trackevent_options* options,
                                                       const char* url);
/* Events held in memory before on_full applies (>= 1). Default 65536. */
TRACKEVENT_API int trackevent_options_set_queue_capacity(trackevent_options* options,
                                                         size_t capacity);
/* Largest batch per round trip (>= 1). Default 5000. */
TRACKEVENT_API int trackevent_options_set_batch_size(trackevent_options* options, size_t size);
/* A partial batch is sent once its oldest event waited this long (>= 1). Default 200. */
TRACKEVENT_API int trackevent_options_set_flush_interval_ms(trackevent_options* options,
                                                            int64_t ms);
/* How long trackevent_destroy() keeps delivering before spooling the rest (>= 0). Default 5000. */
TRACKEVENT_API int trackevent_options_set_shutdown_timeout_ms(trackevent_options* options,
                                                              int64_t ms);
/* One of trackevent_on_full. Default TRACKEVENT_ON_FULL_SPOOL. */
TRACKEVENT_API int trackevent_options_set_on_full(trackevent_options* options, int policy);
/* Directory of the spool and dead letters. NULL or "": $TRACKEVENT_SPOOL_DIR, else
 * $XDG_STATE_HOME/trackevent, else ~/.local/state/trackevent. */
TRACKEVENT_API int trackevent_options_set_spool_dir(trackevent_options* options, const char* dir);

/* What a catalog's metadata schemas do to an event that breaks them (trackevent::CatalogMode). */
typedef enum trackevent_catalog_mode {
  TRACKEVENT_CATALOG_REJECT = 0, /* default: trackevent_track() returns EINVAL with the reason */
  TRACKEVENT_CATALOG_WARN = 1,   /* kept; a warning is logged (once a second per event and rule) */
  TRACKEVENT_CATALOG_OFF = 2     /* metadata is not checked (names still are) */
} trackevent_catalog_mode;

/* A tracking plan: a catalog file (man trackevent(1), TRACKING PLAN) and a trackevent_catalog_mode.
 * trackevent_track() then refuses names outside the catalog (EINVAL) and checks metadata against
 * the entry's schema. The file is read by trackevent_create(), which fails with EOPEN (the reason,
 * with the JSON pointer, in trackevent_last_error) when it is invalid. NULL or "": no catalog. */
TRACKEVENT_API int trackevent_options_set_catalog(trackevent_options* options, const char* path,
                                                  int mode);

/* Levels of the library's log lines (trackevent::LogLevel). */
typedef enum trackevent_log_level {
  TRACKEVENT_LOG_TRACE = 0,
  TRACKEVENT_LOG_DEBUG = 1,
  TRACKEVENT_LOG_INFO = 2,
  TRACKEVENT_LOG_WARN = 3,
  TRACKEVENT_LOG_ERROR = 4,
  TRACKEVENT_LOG_CRITICAL = 5
} trackevent_log_level;

/* Receives one log line of the library: its level (trackevent_log_level), its key, stable for
 * lines that can repeat ("sink.retry"; "" for a one-off line), its message, and its fields as the
 * text of a JSON object. The strings are valid only during the call. */
typedef void (*trackevent_log_fn)(void* user, int level, const char* key, const char* message,
                                  const char* fields_json);

/* Sends the library's log lines to fn(user, ...) instead of stderr while a tracker created with
 * these options is open (trackevent::TrackerOptions::log has the rules: the log is one per
 * process, the newest open tracker with a callback gets every line; lines at info and above; any
 * thread, one line at a time; never called once trackevent_destroy() has returned). fn NULL:
 * stderr, the default. */
TRACKEVENT_API int trackevent_options_set_log_callback(trackevent_options* options,
                                                       trackevent_log_fn fn, void* user);

/* Creates a tracker and its dispatcher thread. `options` may be NULL (defaults and environment)
 * and may be destroyed right after the call. On success stores the tracker in *out. */
TRACKEVENT_API int trackevent_create(const trackevent_options* options, trackevent_tracker** out);

/* Records one event, stamped now with a new UUIDv7. Returns at once: it never touches the network
 * and, unless on_full is BLOCK, never waits. user_id 0 means "no user" (SQL NULL).
 * metadata_json: a JSON object as text, or NULL for {}. Invalid input returns TRACKEVENT_EINVAL
 * (the event is counted as rejected and logged); a full queue under DROP returns
 * TRACKEVENT_EDROPPED. Thread-safe. */
TRACKEVENT_API int trackevent_track(trackevent_tracker* tracker, int64_t org_id, int64_t user_id,
                                    const char* event_name, const char* metadata_json);

/* Waits until every event queued before the call is delivered or spooled, at most timeout_ms
 * (>= 0). TRACKEVENT_OK when complete, TRACKEVENT_ETIMEDOUT when events remain in memory. */
TRACKEVENT_API int trackevent_flush(trackevent_tracker* tracker, int timeout_ms);

/* Copies the counters into *out. */
TRACKEVENT_API int trackevent_get_stats(const trackevent_tracker* tracker, trackevent_stats* out);

/* Delivers what is queued within the shutdown timeout, spools the rest, stops the thread and
 * frees the tracker. NULL is a no-op. */
TRACKEVENT_API void trackevent_destroy(trackevent_tracker* tracker);

/* A static, human-readable description of an error code ("unknown error" for others). */
TRACKEVENT_API const char* trackevent_strerror(int code);

/* Why the last failing call on this thread failed (e.g. "event_name: ..."), or "" when none.
 * Valid until the next trackevent_* call on this thread. */
TRACKEVENT_API const char* trackevent_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* TRACKEVENT_TRACKEVENT_H */

/* The C ABI from plain C99: create a tracker on a temporary SQLite store, record 100 events,
 * check invalid input is refused with TRACKEVENT_EINVAL (and logged to our callback, not stderr),
 * flush, destroy, then read the rows back with the SQLite C API. Exit 0 when everything holds;
 * each failed check prints one line. */
#define _XOPEN_SOURCE 700 /* mkdtemp, nftw */

#include "trackevent/trackevent.h"

#include <sqlite3.h>

#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                              \
    }                                                                          \
  } while (0)

#define CHECK_RC(expected, call)                                                                  \
  do {                                                                                            \
    int rc_ = (call);                                                                             \
    if (rc_ != (expected)) {                                                                      \
      fprintf(stderr, "%s:%d: %s returned %d (%s: %s), expected %d\n", __FILE__, __LINE__, #call, \
              rc_, trackevent_strerror(rc_), trackevent_last_error(), (expected));                \
      ++failures;                                                                                 \
    }                                                                                             \
  } while (0)

static int remove_entry(const char* path, const struct stat* sb, int flag, struct FTW* ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

/* What the log callback saw. Lines come one at a time, so no lock is needed. */
struct log_seen {
  int lines;
  int rejected; /* key "c_api.rejected", level error, an "err" field, message "rejected event" */
};

static void on_log(void* user, int level, const char* key, const char* message,
                   const char* fields_json) {
  struct log_seen* seen = (struct log_seen*)user;
  ++seen->lines;
  if (strcmp(key, "c_api.rejected") == 0 && level == TRACKEVENT_LOG_ERROR &&
      strcmp(message, "rejected event") == 0 && fields_json[0] == '{' &&
      strstr(fields_json, "\"err\":") != NULL) {
    ++seen->rejected;
  }
}

/* One integer from a query; -1 on error. */
static int64_t query_int(sqlite3* db, const char* sql) {
  sqlite3_stmt* stmt = NULL;
  int64_t value = -1;
  if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK) {
    fprintf(stderr, "sqlite: %s: %s\n", sql, sqlite3_errmsg(db));
    return -1;
  }
  if (sqlite3_step(stmt) == SQLITE_ROW) value = sqlite3_column_int64(stmt, 0);
  sqlite3_finalize(stmt);
  return value;
}

int main(void) {
  const char* base = getenv("TMPDIR");
  char dir[4096];
  char url[4300];
  char spool[4200];
  char path[4200];
  trackevent_options* options = NULL;
  trackevent_tracker* tracker = NULL;
  trackevent_stats stats;
  struct log_seen seen = {0, 0};
  sqlite3* db = NULL;
  int i;

  snprintf(dir, sizeof dir, "%s/trackevent-capi-XXXXXX", base != NULL && *base ? base : "/tmp");
  if (mkdtemp(dir) == NULL) {
    perror("mkdtemp");
    return 2;
  }
  snprintf(path, sizeof path, "%s/x.db", dir);
  snprintf(url, sizeof url, "sqlite:%s", path);
  snprintf(spool, sizeof spool, "%s/spool", dir);

  CHECK_RC(TRACKEVENT_OK, trackevent_options_create(&options));
  CHECK_RC(TRACKEVENT_OK, trackevent_options_set_database_url(options, url));
  CHECK_RC(TRACKEVENT_OK, trackevent_options_set_spool_dir(options, spool));
  CHECK_RC(TRACKEVENT_OK, trackevent_options_set_batch_size(options, 32));
  CHECK_RC(TRACKEVENT_OK, trackevent_options_set_flush_interval_ms(options, 20));
  CHECK_RC(TRACKEVENT_OK, trackevent_options_set_shutdown_timeout_ms(options, 5000));
  CHECK_RC(TRACKEVENT_OK, trackevent_options_set_on_full(options, TRACKEVENT_ON_FULL_SPOOL));
  CHECK_RC(TRACKEVENT_OK, trackevent_options_set_log_callback(options, on_log, &seen));
  /* Out-of-range settings are refused and leave the option as it was. */
  CHECK_RC(TRACKEVENT_EINVAL, trackevent_options_set_queue_capacity(options, 0));
  CHECK_RC(TRACKEVENT_EINVAL, trackevent_options_set_on_full(options, 7));
  CHECK_RC(TRACKEVENT_EINVAL, trackevent_options_set_shutdown_timeout_ms(options, -1));
  CHECK_RC(TRACKEVENT_EINVAL, trackevent_create(options, NULL));
  CHECK_RC(TRACKEVENT_EINVAL, trackevent_options_set_log_callback(NULL, on_log, &seen));

  CHECK_RC(TRACKEVENT_OK, trackevent_create(options, &tracker));
  trackevent_options_destroy(options); /* the tracker keeps its own copy */
  if (tracker == NULL) {
    fprintf(stderr, "no tracker; giving up\n");
    return 1;
  }

  /* 100 events: odd i has user i, even i has no user; every tenth has no metadata. */
  for (i = 0; i < 100; ++i) {
    char meta[64];
    /* Both forms: compact text is validated as is, spaced text is compacted first. */
    snprintf(meta, sizeof meta,
             i % 3 ? "{\"i\":%d,\"tag\":\"c\"}" : "{ \"i\": %d,\n \"tag\": \"c\" }", i);
    CHECK_RC(TRACKEVENT_OK,
             trackevent_track(tracker, 7, i % 2 ? i : 0, "capi.tested", i % 10 == 0 ? NULL : meta));
  }

  /* Invalid input: refused at once, never stored. */
  CHECK_RC(TRACKEVENT_EINVAL, trackevent_track(tracker, 7, 0, "Not A Name", NULL));
  CHECK(strlen(trackevent_last_error()) > 0);
  CHECK_RC(TRACKEVENT_EINVAL, trackevent_track(tracker, 0, 0, "capi.tested", NULL));
  CHECK_RC(TRACKEVENT_EINVAL, trackevent_track(tracker, 7, -3, "capi.tested", NULL));
  CHECK_RC(TRACKEVENT_EINVAL, trackevent_track(tracker, 7, 0, NULL, NULL));
  CHECK_RC(TRACKEVENT_EINVAL, trackevent_track(tracker, 7, 0, "capi.tested", "{\"a\":"));
  CHECK_RC(TRACKEVENT_EINVAL, trackevent_track(tracker, 7, 0, "capi.tested", "[1, 2]"));
  CHECK_RC(TRACKEVENT_EINVAL, trackevent_track(NULL, 7, 0, "capi.tested", NULL));

  CHECK_RC(TRACKEVENT_EINVAL, trackevent_flush(tracker, -1));
  CHECK_RC(TRACKEVENT_OK, trackevent_flush(tracker, 10000));

  CHECK_RC(TRACKEVENT_OK, trackevent_get_stats(tracker, &stats));
  CHECK(stats.accepted == 100);
  CHECK(stats.stored == 100);
  CHECK(stats.rejected == 6); /* every EINVAL above except the NULL tracker */
  CHECK(stats.dropped == 0);
  CHECK(stats.reserved[0] == 0);
  CHECK_RC(TRACKEVENT_EINVAL, trackevent_get_stats(NULL, &stats));
  /* The rejections with a tracker went to the callback (the NULL tracker is not logged). */
  CHECK(seen.rejected == 6);

  trackevent_destroy(tracker);
  trackevent_destroy(NULL); /* a no-op, like free(NULL) */

  CHECK(strcmp(trackevent_strerror(TRACKEVENT_OK), "success") == 0);
  CHECK(strcmp(trackevent_strerror(12345), "unknown error") == 0);

  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
    fprintf(stderr, "cannot open %s: %s\n", path, db ? sqlite3_errmsg(db) : "?");
    ++failures;
  } else {
    CHECK(query_int(db, "SELECT count(*) FROM analytics_events") == 100);
    CHECK(query_int(db, "SELECT count(DISTINCT event_id) FROM analytics_events") == 100);
    CHECK(query_int(db,
                    "SELECT count(*) FROM analytics_events WHERE org_id = 7 AND "
                    "event_name = 'capi.tested'") == 100);
    CHECK(query_int(db, "SELECT count(*) FROM analytics_events WHERE user_id IS NULL") == 50);
    CHECK(query_int(db, "SELECT sum(user_id) FROM analytics_events") == 2500); /* 1+3+...+99 */
    CHECK(query_int(db, "SELECT count(*) FROM analytics_events WHERE metadata = '{}'") == 10);
    /* 0..99 minus the multiples of ten, whose metadata was NULL. */
    CHECK(query_int(db, "SELECT sum(json_extract(metadata, '$.i')) FROM analytics_events") == 4500);
    CHECK(query_int(db,
                    "SELECT count(*) FROM analytics_events WHERE "
                    "json_extract(metadata, '$.tag') = 'c'") == 90);
    /* Stored compact, whichever form it came in. */
    CHECK(query_int(db,
                    "SELECT count(*) FROM analytics_events WHERE metadata = "
                    "json_object('i', json_extract(metadata, '$.i'), 'tag', 'c')") == 90);
    sqlite3_close(db);
  }

  /* A tracking plan: names outside it and metadata that breaks its schema are refused. */
  {
    char plan[4200];
    char bad_plan[4200];
    FILE* f;
    snprintf(plan, sizeof plan, "%s/plan.json", dir);
    snprintf(bad_plan, sizeof bad_plan, "%s/bad-plan.json", dir);
    f = fopen(plan, "w");
    CHECK(f != NULL);
    if (f != NULL) {
      fputs(
          "{\"events\":[{\"name\":\"capi.tested\",\"metadata\":{\"required\":[\"i\"],"
          "\"properties\":{\"i\":{\"type\":\"integer\"}}}}]}",
          f);
      fclose(f);
    }
    f = fopen(bad_plan, "w");
    CHECK(f != NULL);
    if (f != NULL) {
      fputs("{\"events\":[{\"name\":\"capi.tested\",\"metadata\":{\"oneOf\":[]}}]}", f);
      fclose(f);
    }
    CHECK_RC(TRACKEVENT_OK, trackevent_options_create(&options));
    CHECK_RC(TRACKEVENT_OK, trackevent_options_set_database_url(options, url));
    CHECK_RC(TRACKEVENT_OK, trackevent_options_set_spool_dir(options, spool));
    CHECK_RC(TRACKEVENT_OK, trackevent_options_set_log_callback(options, on_log, &seen));
    CHECK_RC(TRACKEVENT_EINVAL, trackevent_options_set_catalog(options, plan, 9));
    CHECK_RC(TRACKEVENT_OK,
             trackevent_options_set_catalog(options, bad_plan, TRACKEVENT_CATALOG_REJECT));
    CHECK_RC(TRACKEVENT_EOPEN, trackevent_create(options, &tracker));
    CHECK(strstr(trackevent_last_error(), "/events/0/metadata/oneOf") != NULL);
    CHECK_RC(TRACKEVENT_OK,
             trackevent_options_set_catalog(options, plan, TRACKEVENT_CATALOG_REJECT));
    CHECK_RC(TRACKEVENT_OK, trackevent_create(options, &tracker));
    trackevent_options_destroy(options);
    if (tracker != NULL) {
      CHECK_RC(TRACKEVENT_OK, trackevent_track(tracker, 7, 0, "capi.tested", "{\"i\":1}"));
      CHECK_RC(TRACKEVENT_EINVAL, trackevent_track(tracker, 7, 0, "capi.tested", "{\"i\":\"1\"}"));
      CHECK(strstr(trackevent_last_error(), "metadata.i: expected integer") != NULL);
      CHECK_RC(TRACKEVENT_EINVAL, trackevent_track(tracker, 7, 0, "capi.tested", NULL));
      CHECK_RC(TRACKEVENT_EINVAL, trackevent_track(tracker, 7, 0, "capi.untested", "{\"i\":1}"));
      CHECK_RC(TRACKEVENT_OK, trackevent_flush(tracker, 10000));
      CHECK_RC(TRACKEVENT_OK, trackevent_get_stats(tracker, &stats));
      CHECK(stats.stored == 1);
      CHECK(stats.rejected == 3);
      trackevent_destroy(tracker);
    }
  }

  nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
  if (failures != 0) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  printf("capi_test: ok\n");
  return 0;
}

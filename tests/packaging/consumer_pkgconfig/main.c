/* Built with `cc -std=c99 main.c $(pkg-config --cflags --libs trackevent)`: the C ABI from a C
 * program that knows nothing of C++. Records one event into the SQLite store argv[1]. */
#include "trackevent/trackevent.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char** argv) {
  char url[4096];
  trackevent_options* options = NULL;
  trackevent_tracker* tracker = NULL;
  trackevent_stats stats;
  int rc;

  if (argc != 3) {
    fprintf(stderr, "usage: consumer_c DB_PATH SPOOL_DIR\n");
    return 64;
  }
  snprintf(url, sizeof url, "sqlite:%s", argv[1]);
  if (trackevent_options_create(&options) != TRACKEVENT_OK ||
      trackevent_options_set_database_url(options, url) != TRACKEVENT_OK ||
      trackevent_options_set_spool_dir(options, argv[2]) != TRACKEVENT_OK) {
    fprintf(stderr, "options: %s\n", trackevent_last_error());
    return 1;
  }
  rc = trackevent_create(options, &tracker);
  trackevent_options_destroy(options);
  if (rc != TRACKEVENT_OK) {
    fprintf(stderr, "create: %s: %s\n", trackevent_strerror(rc), trackevent_last_error());
    return 1;
  }
  rc = trackevent_track(tracker, 1, 0, "consumer.c_abi", "{\"via\":\"pkg-config\"}");
  if (rc == TRACKEVENT_OK) rc = trackevent_flush(tracker, 10000);
  if (rc == TRACKEVENT_OK) rc = trackevent_get_stats(tracker, &stats);
  trackevent_destroy(tracker);
  if (rc != TRACKEVENT_OK || stats.stored != 1) {
    fprintf(stderr, "consumer_c: %s: %s\n", trackevent_strerror(rc), trackevent_last_error());
    return 1;
  }
  return 0;
}

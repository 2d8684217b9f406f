#!/usr/bin/env python3
"""The C ABI through ctypes, as a Python program would use it.

Run: TRACKEVENT_LIBRARY=/path/to/libtrackevent.so python3 test_capi.py
"""
import ctypes
import json
import os
import shutil
import sqlite3
import tempfile
import unittest

OK, EINVAL, ENOMEM, ETIMEDOUT, EDROPPED, EOPEN, EINTERNAL = range(7)
ON_FULL_SPOOL, ON_FULL_DROP, ON_FULL_BLOCK = range(3)


class Stats(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "accepted", "stored", "duplicates", "rejected", "rejected_by_db", "dropped", "spooled",
        "unspooled", "retries")] + [("reserved", ctypes.c_uint64 * 7)]


def load_library():
    path = os.environ.get("TRACKEVENT_LIBRARY")
    if not path:
        raise unittest.SkipTest("TRACKEVENT_LIBRARY is not set")
    lib = ctypes.CDLL(path)
    opaque = ctypes.c_void_p
    sigs = {
        "trackevent_options_create": (ctypes.c_int, [ctypes.POINTER(opaque)]),
        "trackevent_options_destroy": (None, [opaque]),
        "trackevent_options_set_database_url": (ctypes.c_int, [opaque, ctypes.c_char_p]),
        "trackevent_options_set_spool_dir": (ctypes.c_int, [opaque, ctypes.c_char_p]),
        "trackevent_options_set_queue_capacity": (ctypes.c_int, [opaque, ctypes.c_size_t]),
        "trackevent_options_set_batch_size": (ctypes.c_int, [opaque, ctypes.c_size_t]),
        "trackevent_options_set_flush_interval_ms": (ctypes.c_int, [opaque, ctypes.c_int64]),
        "trackevent_options_set_shutdown_timeout_ms": (ctypes.c_int, [opaque, ctypes.c_int64]),
        "trackevent_options_set_on_full": (ctypes.c_int, [opaque, ctypes.c_int]),
        "trackevent_create": (ctypes.c_int, [opaque, ctypes.POINTER(opaque)]),
        "trackevent_track": (ctypes.c_int, [opaque, ctypes.c_int64, ctypes.c_int64,
                                            ctypes.c_char_p, ctypes.c_char_p]),
        "trackevent_flush": (ctypes.c_int, [opaque, ctypes.c_int]),
        "trackevent_get_stats": (ctypes.c_int, [opaque, ctypes.POINTER(Stats)]),
        "trackevent_destroy": (None, [opaque]),
        "trackevent_strerror": (ctypes.c_char_p, [ctypes.c_int]),
        "trackevent_last_error": (ctypes.c_char_p, []),
    }
    for name, (restype, argtypes) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


class CApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.lib = load_library()

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="trackevent-ctypes-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.db_path = os.path.join(self.dir, "x.db")

    def check(self, rc, expected=OK):
        if rc != expected:
            self.fail("rc %d (%s: %s), expected %d" % (
                rc, self.lib.trackevent_strerror(rc).decode(),
                self.lib.trackevent_last_error().decode(), expected))

    def make_tracker(self, **settings):
        lib = self.lib
        options = ctypes.c_void_p()
        self.check(lib.trackevent_options_create(ctypes.byref(options)))
        try:
            url = ("sqlite:" + self.db_path).encode()
            self.check(lib.trackevent_options_set_database_url(options, url))
            self.check(lib.trackevent_options_set_spool_dir(
                options, os.path.join(self.dir, "spool").encode()))
            self.check(lib.trackevent_options_set_flush_interval_ms(options, 20))
            for name, value in settings.items():
                self.check(getattr(lib, "trackevent_options_set_" + name)(options, value))
            tracker = ctypes.c_void_p()
            self.check(lib.trackevent_create(options, ctypes.byref(tracker)))
        finally:
            lib.trackevent_options_destroy(options)
        self.assertTrue(tracker.value)
        return tracker

    def rows(self, sql, *args):
        with sqlite3.connect("file:%s?mode=ro" % self.db_path, uri=True) as db:
            return db.execute(sql, args).fetchall()

    def test_track_flush_destroy_stores_every_event(self):
        lib = self.lib
        tracker = self.make_tracker(batch_size=16)
        for i in range(100):
            meta = None if i % 10 == 0 else json.dumps({"i": i, "lang": "python", "ü": "✓"})
            self.check(lib.trackevent_track(tracker, 9, i if i % 2 else 0, b"ctypes.tested",
                                            meta.encode() if meta else None))
        self.check(lib.trackevent_track(tracker, 9, 0, b"Bad Name", None), EINVAL)
        self.assertTrue(lib.trackevent_last_error())
        self.check(lib.trackevent_flush(tracker, 10000))
        stats = Stats()
        self.check(lib.trackevent_get_stats(tracker, ctypes.byref(stats)))
        self.assertEqual(stats.accepted, 100)
        self.assertEqual(stats.stored, 100)
        self.assertEqual(stats.rejected, 1)
        self.assertEqual(stats.dropped, 0)
        lib.trackevent_destroy(tracker)

        self.assertEqual(self.rows("SELECT count(*), count(DISTINCT event_id) FROM analytics_events"),
                         [(100, 100)])
        self.assertEqual(self.rows("SELECT DISTINCT org_id, event_name FROM analytics_events"),
                         [(9, "ctypes.tested")])
        self.assertEqual(self.rows("SELECT count(*) FROM analytics_events WHERE user_id IS NULL"),
                         [(50,)])
        metas = [json.loads(m) for (m,) in self.rows("SELECT metadata FROM analytics_events")]
        self.assertEqual(sum(1 for m in metas if m == {}), 10)
        self.assertEqual(sum(m.get("i", 0) for m in metas), 4500)
        self.assertTrue(all(m.get("ü") == "✓" for m in metas if m))

    def test_invalid_input_is_refused(self):
        lib = self.lib
        tracker = self.make_tracker()
        self.addCleanup(lib.trackevent_destroy, tracker)
        cases = [
            (0, 0, b"ctypes.tested", None),         # org_id < 1
            (1, -1, b"ctypes.tested", None),        # user_id < 0
            (1, 0, None, None),                     # no name
            (1, 0, b"nodots", None),                # not dotted
            (1, 0, b"ctypes.tested", b"{"),         # not JSON
            (1, 0, b"ctypes.tested", b"\"text\""),  # not an object
            (1, 0, b"ctypes.tested", b"{} {}"),     # trailing garbage
            (1, 0, b"ctypes.tested", b"{}x"),       # trailing garbage, compact
            (1, 0, b"ctypes.tested", b"[1]"),       # compact, not an object
            (1, 0, b"ctypes.tested", b""),          # empty text
            (1, 0, b"ctypes.tested", b'{"a":"\xff"}'),  # invalid UTF-8
        ]
        for org, user, name, meta in cases:
            with self.subTest(org=org, user=user, name=name, meta=meta):
                self.check(lib.trackevent_track(tracker, org, user, name, meta), EINVAL)
        self.check(lib.trackevent_track(None, 1, 0, b"ctypes.tested", None), EINVAL)
        stats = Stats()
        self.check(lib.trackevent_get_stats(tracker, ctypes.byref(stats)))
        self.assertEqual(stats.rejected, len(cases))
        self.assertEqual(stats.accepted, 0)

    def test_options_reject_out_of_range_values(self):
        lib = self.lib
        options = ctypes.c_void_p()
        self.check(lib.trackevent_options_create(ctypes.byref(options)))
        self.addCleanup(lib.trackevent_options_destroy, options)
        self.check(lib.trackevent_options_set_queue_capacity(options, 0), EINVAL)
        self.check(lib.trackevent_options_set_batch_size(options, 0), EINVAL)
        self.check(lib.trackevent_options_set_flush_interval_ms(options, 0), EINVAL)
        self.check(lib.trackevent_options_set_on_full(options, 3), EINVAL)
        self.check(lib.trackevent_options_set_on_full(options, ON_FULL_DROP))

    def test_strerror(self):
        self.assertEqual(self.lib.trackevent_strerror(OK), b"success")
        self.assertEqual(self.lib.trackevent_strerror(ETIMEDOUT),
                         b"timed out with events still in memory")
        self.assertEqual(self.lib.trackevent_strerror(-5), b"unknown error")


if __name__ == "__main__":
    unittest.main()

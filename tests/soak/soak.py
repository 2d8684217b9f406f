#!/usr/bin/env python3
"""Chaos soak for trackevent: real faults at random against a real PostgreSQL while events are
ingested, then proof that nothing accepted was lost and nothing was stored twice.

Not part of CI: a person runs it (as root: it mounts a tmpfs for the spool) and reads its table.
Python 3 standard library only, plus the PostgreSQL client tools. See tests/soak/README.md.

    sudo python3 tests/soak/soak.py --minutes 2 --events 200000
"""

from __future__ import annotations

import argparse
import array
import atexit
import collections
import datetime as dt
import json
import os
import random
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Per-event state, one byte per seq (the harness numbers every event it makes, 0..N-1).
SRC_PIPE, SRC_DURABLE, SRC_FILE, SRC_SEND = 1, 2, 3, 4
SRC_NAME = {SRC_PIPE: "pipe", SRC_DURABLE: "durable", SRC_FILE: "file", SRC_SEND: "send"}
F_SENT = 1  # handed to some trackevent process
F_REQ = 2  # acked: must end stored or dead-lettered
F_UNACKED = 4  # tee'd by a non-durable ingest killed with -9: allowed to be lost
F_STORED = 8
F_DEAD = 16
F_SENDFAIL = 32  # `send --background` exited non-zero or timed out: not acked

REJECT_MOD = 997  # the soak_reject constraint refuses rows whose metadata seq is divisible by it
OUTAGE = {"restart", "kill9", "sigstop", "terminate", "revoke"}
SERVER_FAULTS = ["restart", "kill9", "sigstop", "terminate", "revoke", "constraint", "ballast"]
FAULT_TITLE = {
    "restart": "server restart (pg-test-server restart)",
    "kill9": "postmaster kill -9, then start",
    "sigstop": "SIGSTOP postmaster+backends, SIGCONT",
    "terminate": "pg_terminate_backend loop",
    "revoke": "REVOKE INSERT ... later GRANT",
    "constraint": f"CHECK seq % {REJECT_MOD} <> 0 NOT VALID",
    "ballast": "spool tmpfs full (ballast file)",
}
CLIENT_TARGETS = ["pipe", "durable", "file", "flush"]
# Which server faults may be injected while a state fault holds. Never a full spool with an
# outage (events must be spooled) or with the constraint (rejected rows must be dead-lettered, in
# the spool directory): trackevent then drops by design (exit 74, counted), which only
# --full-and-down asks for.
NESTABLE = {
    "revoke": ["restart", "kill9", "sigstop", "terminate", "constraint"],
    "constraint": ["restart", "kill9", "sigstop", "terminate", "revoke"],
    "ballast": [],
}
# A full spool right after an outage would meet clients still spooling (they probe a holding
# database every 30 s, and back off up to 30 s): keep the ballast away from outages by this much.
BALLAST_AFTER_OUTAGE_S = 45.0
SEQ_RE = re.compile(rb'"seq":(\d+)')


def mono() -> float:
    return time.monotonic()


class HarnessError(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# small process helpers


def is_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
    return state not in (b"Z", b"X")


def children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = collections.defaultdict(list)
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        rest = stat[stat.rfind(b")") + 2 :].split()
        if len(rest) > 1:
            kids[int(rest[1])].append(int(name))
    return kids


def descendants(pid: int) -> list[int]:
    kids = children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in kids.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def kill_pid(pid: int, sig: int) -> bool:
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return False


# ---------------------------------------------------------------------------------------------
# events


class Events:
    """Every event the harness makes: a seq number, an event_id derived from it (a per-run
    prefix, then the seq in the last 12 hex digits), and per-seq flags."""

    def __init__(self, seed: int, capacity: int, t0_us: int, step_us: int):
        rng = random.Random(seed * 7919 + 17)
        a, b, c = rng.getrandbits(32), rng.getrandbits(16), rng.getrandbits(12)
        d = 0x8000 | rng.getrandbits(14)
        self.prefix = f"{a:08x}-{b:04x}-4{c:03x}-{d:04x}-"
        self.capacity = capacity
        self.flags = bytearray(capacity)
        self.src = bytearray(capacity)
        self.run_of = array.array("i", [-1]) * capacity  # the last client run it was handed to
        self.t_sent = array.array("f", [0.0]) * capacity  # seconds after start, first hand-over
        self.next = 0
        self.lock = threading.Lock()
        self.t0_us = t0_us
        self.step_us = max(1, step_us)
        self._sec_cache: dict[int, str] = {}

    def alloc(self, n: int, src: int) -> range:
        with self.lock:
            a = self.next
            b = min(self.capacity, a + max(0, n))
            self.next = b
        if b > a:
            self.src[a:b] = bytes([src]) * (b - a)
        return range(a, b)

    def event_id(self, seq: int) -> str:
        return f"{self.prefix}{seq:012x}"

    def seq_of(self, event_id: str) -> int | None:
        if len(event_id) != 36 or not event_id.startswith(self.prefix):
            return None
        try:
            return int(event_id[24:], 16)
        except ValueError:
            return None

    def occurred_at(self, seq: int) -> str:
        sec, frac = divmod(self.t0_us + seq * self.step_us, 1_000_000)
        s = self._sec_cache.get(sec)
        if s is None:
            if len(self._sec_cache) > 100_000:
                self._sec_cache.clear()
            s = dt.datetime.fromtimestamp(sec, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
            self._sec_cache[sec] = s
        return f"{s}.{frac:06d}Z"

    def line(self, seq: int) -> str:
        name = SRC_NAME[self.src[seq]]
        user = "null" if seq % 7 == 0 else str(1 + seq % 5000)
        return (
            f'{{"event_id":"{self.prefix}{seq:012x}","org_id":{1 + seq % 50},"user_id":{user},'
            f'"event_name":"soak.{name}","occurred_at":"{self.occurred_at(seq)}",'
            f'"metadata":{{"seq":{seq},"src":"{name}"}}}}\n'
        )

    def mark_sent(self, seqs, run_id: int, t: float) -> None:
        flags, run_of, t_sent = self.flags, self.run_of, self.t_sent
        with self.lock:
            for s in seqs:
                if not flags[s] & F_SENT:
                    flags[s] |= F_SENT
                    t_sent[s] = t
                run_of[s] = run_id

    def set_flag(self, seqs, flag: int) -> None:
        flags = self.flags
        with self.lock:
            for s in seqs:
                flags[s] |= flag


# ---------------------------------------------------------------------------------------------
# client runs


class Run:
    """One trackevent process the harness started."""

    def __init__(self, rid: int, kind: str, argv: list[str], log_path: Path, tee_path: Path | None):
        self.rid = rid
        self.kind = kind
        self.argv = argv
        self.log_path = log_path
        self.tee_path = tee_path
        self.popen: subprocess.Popen | None = None
        self.start = mono()
        self.end: float | None = None
        self.rc: int | None = None
        self.signals: list[tuple[float, str, str]] = []  # (time, signal, "fault"|"harness")
        self.summary: dict | None = None
        self.notes: list[str] = []
        self.n_sent = 0
        self.n_teed = 0
        self.ranges: list[range] = []  # the seqs handed to this run

    def add_seqs(self, seqs) -> None:
        for r in to_ranges(list(seqs)):
            if self.ranges and self.ranges[-1].stop == r.start:
                self.ranges[-1] = range(self.ranges[-1].start, r.stop)
            else:
                self.ranges.append(r)

    def handed(self, seq: int) -> bool:
        return any(seq in r for r in self.ranges)

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int, by: str) -> bool:
        if not self.alive():
            return False
        if kill_pid(self.popen.pid, sig):
            self.signals.append((mono(), signal.Signals(sig).name, by))
            return True
        return False

    def got(self, sig: int, by: str | None = None) -> bool:
        name = signal.Signals(sig).name
        return any(s == name and (by is None or b == by) for _, s, b in self.signals)

    def finish(self) -> None:
        if self.end is not None:
            return
        self.end = mono()
        self.rc = self.popen.returncode if self.popen else None
        self.summary = read_summary(self.log_path)

    def fate(self) -> str:
        if self.got(signal.SIGKILL):
            return "kill -9" + ("" if self.got(signal.SIGKILL, "fault") else " (harness)")
        if self.got(signal.SIGTERM):
            return "SIGTERM" + ("" if self.got(signal.SIGTERM, "fault") else " (harness)")
        return "ran to the end"


def read_summary(path: Path) -> dict | None:
    last = None
    try:
        with open(path, "rb") as f:
            for line in f:
                if b'"msg":"summary"' in line:
                    try:
                        last = json.loads(line)
                    except ValueError:
                        pass
    except OSError:
        return None
    return last


def teed_seqs(path: Path) -> array.array:
    """The seqs of the complete lines (ending in a newline) a --tee run echoed."""
    out = array.array("q")
    try:
        with open(path, "rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    continue  # a partial line (input cut at a signal) was not an accepted event
                m = SEQ_RE.search(line)
                if m:
                    out.append(int(m.group(1)))
    except OSError:
        pass
    return out


# ---------------------------------------------------------------------------------------------
# the disposable server


class Server:
    def __init__(self, h: "Harness", script: Path, directory: Path):
        self.h = h
        self.script = script
        self.dir = directory
        self.env: dict[str, str] = {}
        self.port = ""
        self.bin = ""

    def _script(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(
                ["bash", str(self.script), *args], capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired as e:
            return subprocess.CompletedProcess(e.cmd, 124, "", f"timed out after {timeout} s")

    def start(self, attempts: int = 6) -> bool:
        for attempt in range(1, attempts + 1):
            r = self._script("start", str(self.dir))
            if r.returncode == 0:
                if not self.env:
                    for line in r.stdout.splitlines():
                        if line.startswith("export "):
                            for word in shlex.split(line[7:]):
                                k, _, v = word.partition("=")
                                self.env[k] = v
                    self.port = self.env["PGPORT"]
                    self.bin = self.env.get("TRACKEVENT_TEST_PG_BIN", "")
                return True
            self.h.log(f"server start attempt {attempt} failed: {r.stderr.strip()[-300:]}")
            time.sleep(1.0)
        return False

    def stop(self) -> None:
        self._script("stop", str(self.dir), timeout=60)

    def restart(self) -> bool:
        r = self._script("restart", str(self.dir))
        if r.returncode == 0:
            return True
        self.h.log(f"pg-test-server restart failed ({r.returncode}): {r.stderr.strip()[-300:]}")
        return self.start()

    def postmaster_pid(self) -> int:
        try:
            pid = int((self.dir / "data" / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return 0
        return pid if is_alive(pid) else 0

    def family(self) -> list[int]:
        pm = self.postmaster_pid()
        return [pm, *descendants(pm)] if pm else []

    def kill9(self) -> str:
        """SIGKILL the postmaster (the script's `kill`), then wait (bounded) until its orphaned
        backends are gone too, so the next start does not trip over their shared memory."""
        family = self.family()
        if not family:
            return "no postmaster running"
        r = self._script("kill", str(self.dir), timeout=30)
        if r.returncode != 0:
            kill_pid(family[0], signal.SIGKILL)
        deadline = mono() + 10
        while mono() < deadline and any(is_alive(p) for p in family):
            time.sleep(0.1)
        left = [p for p in family if is_alive(p)]
        for p in left:
            kill_pid(p, signal.SIGKILL)
        return f"{len(family) - 1} backends/children; {len(left)} killed by hand"

    def psql(self, sql: str, timeout: float = 30, stdout=None, input_text: str | None = None,
             check: bool = True) -> str:
        psql = str(Path(self.bin) / "psql") if self.bin and (Path(self.bin) / "psql").exists() else "psql"
        env = dict(os.environ)
        env.update({"PGHOST": str(self.dir), "PGPORT": self.port, "PGUSER": "postgres",
                    "PGDATABASE": "postgres", "PGCONNECT_TIMEOUT": "5", "PGAPPNAME": "soak-harness"})
        argv = [psql, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"]
        argv += ["-f", "-"] if input_text is not None else ["-c", sql]
        try:
            r = subprocess.run(argv, env=env, input=input_text, text=True, timeout=timeout,
                               stdout=stdout if stdout is not None else subprocess.PIPE,
                               stderr=subprocess.PIPE)
        except subprocess.TimeoutExpired:
            if check:
                raise HarnessError(f"psql timed out after {timeout} s: {sql[:80]}")
            return ""
        if r.returncode != 0 and check:
            raise HarnessError(f"psql failed: {sql[:120]}: {r.stderr.strip()[-400:]}")
        return r.stdout if stdout is None else ""

    def ready(self, timeout: float) -> bool:
        deadline = mono() + timeout
        while mono() < deadline:
            try:
                if self.psql("SELECT 1", timeout=8).strip() == "1":
                    return True
            except HarnessError:
                pass
            time.sleep(0.5)
        return False

    def ensure_up(self, timeout: float = 90) -> bool:
        if self.ready(3):
            return True
        if not self.postmaster_pid():
            self.start()
        return self.ready(timeout)


# ---------------------------------------------------------------------------------------------
# faults


class Injection:
    def __init__(self, kind: str, nested_in: str | None = None):
        self.kind = kind
        self.nested_in = nested_in
        self.start = mono()
        self.end: float | None = None
        self.ok = False
        self.detail: dict = {}
        self.run_id: int | None = None
        self.error = ""


# ---------------------------------------------------------------------------------------------
# workload: ingest from a pipe


class PipeStream(threading.Thread):
    """A generator writing JSONL into `trackevent ingest --tee [--durable]`, at a bounded rate.
    When its client ends (EOF rotation, a fault's signal), the lines the client did not echo are
    sent again to the next one; what it echoed is acked (durable: always; non-durable: unless the
    client was killed with -9, when it is "unacked, not required")."""

    def __init__(self, h: "Harness", name: str, src: int, extra: list[str], budget: int, rate: float):
        super().__init__(name=f"stream-{name}", daemon=True)
        self.h = h
        self.kind = name
        self.src = src
        self.extra = extra
        self.budget = budget
        self.rate = rate
        self.allocated = 0
        self.resend: collections.deque[int] = collections.deque()
        self.cur: Run | None = None
        self.sent = array.array("q")
        self.buf = b""
        self.fd = -1
        self.t_start = 0.0
        self.rotate_at = 0.0
        self.last_progress = 0.0
        self.lock = threading.Lock()  # guards self.cur against the fault thread

    def current(self) -> Run | None:
        with self.lock:
            return self.cur if self.cur and self.cur.alive() else None

    def _start_client(self) -> None:
        h = self.h
        run = h.spawn(self.kind, ["ingest", "--tee", *self.extra], stdin=subprocess.PIPE, tee=True)
        self.fd = run.popen.stdin.fileno()
        os.set_blocking(self.fd, False)
        self.sent = array.array("q")
        self.buf = b""
        self.rotate_at = mono() + h.rng.uniform(*h.args.rotate)
        self.last_progress = mono()
        with self.lock:
            self.cur = run

    def _fill(self) -> None:
        h = self.h
        elapsed = mono() - self.t_start
        want = int(self.rate * elapsed) - self.allocated
        seqs: list[int] = []
        while self.resend and len(seqs) < 4000:
            seqs.append(self.resend.popleft())
        room = min(max(0, want), 4000 - len(seqs), self.budget - self.allocated)
        if room > 0:
            new = h.events.alloc(room, self.src)
            self.allocated += len(new)
            seqs.extend(new)
        if not seqs:
            return
        ev = h.events
        self.buf = "".join(ev.line(s) for s in seqs).encode()
        ev.mark_sent(seqs, self.cur.rid, mono() - h.t0)
        self.sent.extend(seqs)
        self.cur.n_sent += len(seqs)
        self.cur.add_seqs(seqs)

    def _write(self, wait: float) -> None:
        try:
            _, w, _ = select.select([], [self.fd], [], wait)
        except (OSError, ValueError):
            return
        if not w:
            return
        try:
            n = os.write(self.fd, self.buf)
        except BlockingIOError:
            return
        except (BrokenPipeError, OSError):
            self.buf = b""  # the client is gone; its unread lines are sent again
            return
        self.buf = self.buf[n:]
        self.last_progress = mono()

    def _close_client(self, reason: str) -> None:
        """End of input for the client: write what is buffered (bounded), close its stdin, wait."""
        run = self.cur
        h = self.h
        deadline = mono() + 10
        while self.buf and run.alive() and mono() < deadline:
            self._write(0.2)
        try:
            run.popen.stdin.close()
        except OSError:
            pass
        h.wait_run(run, h.args.flush_timeout + 40, why=f"{self.kind} client after EOF ({reason})")
        self._finish_client()

    def _finish_client(self) -> None:
        run = self.cur
        h = self.h
        try:
            run.popen.stdin.close()
        except OSError:
            pass
        h.wait_run(run, 30, why=f"{self.kind} client that ended")
        run.finish()
        teed = teed_seqs(run.tee_path)
        run.n_teed = len(teed)
        teed_set = set(teed)
        unacked = self.src == SRC_PIPE and run.got(signal.SIGKILL, "fault")
        h.events.set_flag(teed, F_UNACKED if unacked else F_REQ)
        again = [s for s in self.sent if s not in teed_set]
        self.resend.extend(again)
        run.notes.append(f"sent {len(self.sent)}, echoed {len(teed)}, to send again {len(again)}"
                         + (" (echoed ones unacked: killed -9)" if unacked else ""))
        h.log(f"run {run.rid} {run.kind} ended rc={run.rc} {run.fate()}: {run.notes[-1]}")
        if not h.args.keep:
            try:
                run.tee_path.unlink()
            except OSError:
                pass
        with self.lock:
            self.cur = None
        self.sent = array.array("q")

    def run_loop(self) -> None:
        h = self.h
        self.t_start = mono()
        while not h.stop_workload.is_set():
            if self.cur is None:
                self._start_client()
            run = self.cur
            if not run.alive():
                self._finish_client()
                continue
            if mono() >= self.rotate_at and not self.buf:
                self._close_client("rotation")
                continue
            if not self.buf:
                self._fill()
            if self.buf:
                self._write(0.05)
                if self.buf and mono() - self.last_progress > h.args.stall:
                    h.anomaly(f"run {run.rid} ({self.kind}) read nothing for {h.args.stall} s: "
                              "killed by the harness")
                    run.signal(signal.SIGKILL, "harness")
                    h.wait_run(run, 10, why="stalled client")
            else:
                time.sleep(0.05)
        # End of the workload: hand the lines to send again to one more client, then stop.
        for _ in range(5):
            if self.cur is not None:
                self._close_client("end of workload")
            if not self.resend:
                break
            self._start_client()
            while (self.resend or self.buf) and self.cur.alive():
                if not self.buf:
                    seqs = [self.resend.popleft() for _ in range(min(4000, len(self.resend)))]
                    self.buf = "".join(h.events.line(s) for s in seqs).encode()
                    h.events.mark_sent(seqs, self.cur.rid, mono() - h.t0)
                    self.sent.extend(seqs)
                    self.cur.n_sent += len(seqs)
                    self.cur.add_seqs(seqs)
                self._write(0.2)
                if self.buf and mono() - self.last_progress > h.args.stall:
                    break
        if self.cur is not None:
            self._close_client("end of workload")
        if self.resend:
            h.anomaly(f"{self.kind}: {len(self.resend)} lines could not be handed over at the end")

    def run(self) -> None:  # noqa: A003 (threading API)
        try:
            self.run_loop()
        except Exception:
            self.h.crash(self.name)


# ---------------------------------------------------------------------------------------------
# workload: ingest of regular files


class SignalRequest:
    """A client fault waiting for its target: the next file ingest (or flush) is signalled a
    moment after it starts; if that one has ended by then, the request waits for the next."""

    def __init__(self):
        self.lock = threading.Lock()
        self.sig: int | None = None
        self.kind = ""

    def ask(self, sig: int, kind: str) -> bool:
        with self.lock:
            if self.sig is not None:
                return False
            self.sig, self.kind = sig, kind
            return True

    def pending(self) -> bool:
        return self.sig is not None

    def clear(self) -> None:
        with self.lock:
            self.sig = None

    def apply(self, h: "Harness", run: Run, delay: tuple[float, float]) -> None:
        with self.lock:
            sig, kind = self.sig, self.kind
        if sig is None or h.stop_faults.is_set():
            return
        time.sleep(h.crng.uniform(*delay))
        if run.signal(sig, "fault"):
            with self.lock:
                self.sig = None
            inj = Injection(kind)
            inj.ok, inj.run_id, inj.end = True, run.rid, mono()
            with h.lock:
                h.injections.append(inj)
            h.log(f"FAULT {kind}: run {run.rid} pid {run.popen.pid}, {mono() - run.start:.2f} s after its start")


class FileJob:
    def __init__(self, paths: list[Path], seqs: list[range], label: str):
        self.paths = paths
        self.seqs = seqs  # the seqs of the lines of `paths`, in order
        self.label = label
        self.attempts = 0

    def count(self) -> int:
        return sum(len(r) for r in self.seqs)


def split_ranges(ranges: list[range], k: int) -> tuple[list[range], list[range]]:
    """The first k seqs, and the rest."""
    head, tail = [], []
    for r in ranges:
        if k >= len(r):
            head.append(r)
            k -= len(r)
        elif k > 0:
            head.append(r[:k])
            tail.append(r[k:])
            k = 0
        else:
            tail.append(r)
    return head, tail


def to_ranges(seqs: list[int]) -> list[range]:
    """Consecutive runs of seqs as ranges (order kept)."""
    out: list[range] = []
    for x in seqs:
        if out and out[-1].stop == x:
            out[-1] = range(out[-1].start, x + 1)
        else:
            out.append(range(x, x + 1))
    return out


class FileFeeder(threading.Thread):
    def __init__(self, h: "Harness", jobs: list[FileJob], rate: float):
        super().__init__(name="files", daemon=True)
        self.h = h
        self.jobs = collections.deque(jobs)
        self.rate = rate
        self.done_lines = 0
        self.rest_n = 0
        self.request = SignalRequest()  # a client fault for the next file ingest
        self.lock = threading.Lock()
        self.completed_jobs = 0

    def _pace(self) -> None:
        h = self.h
        while not h.stop_workload.is_set():
            if self.done_lines <= self.rate * (mono() - h.t0):
                return
            time.sleep(0.2)

    def _run_job(self, job: FileJob) -> None:
        h = self.h
        job.attempts += 1
        run = h.spawn("file", ["ingest", *map(str, job.paths)])
        h.events.mark_sent([s for r in job.seqs for s in r], run.rid, mono() - h.t0)
        run.n_sent = job.count()
        run.ranges = list(job.seqs)
        self.request.apply(h, run, (0.01, 0.4))
        h.wait_run(run, h.args.file_timeout, why="file ingest")
        run.finish()
        s = run.summary
        if s is not None and not s.get("interrupted"):
            h.events.set_flag([x for r in job.seqs for x in r], F_REQ)
            self.done_lines += job.count()
            self.completed_jobs += 1
            run.notes.append(f"{job.label}: {job.count()} lines, complete")
            if run.rc not in (0,):
                run.notes.append(f"exit {run.rc}")
            h.log(f"run {run.rid} file ingest {job.label} done rc={run.rc}")
            return
        if s is not None and isinstance(s.get("read"), int):
            # Interrupted (SIGTERM): every line counted in "read" was handed to the Tracker, so
            # the rest starts after them. When the summary has the unread_* fields (source, byte
            # offset, files not started), the rest is cut from those instead, and the two must agree.
            read = s["read"] + int(s.get("blank", 0) or 0)
            head, tail = split_ranges(job.seqs, read)
            tail_seqs = [x for r in tail for x in r]
            rest_bytes = None
            unread = {k: v for k, v in s.items() if k.startswith("unread")}
            if unread:
                rest_bytes = self._unread_bytes(job, s)
                if rest_bytes is None:
                    h.anomaly(f"run {run.rid}: cannot use its unread fields {unread}; resuming after "
                              f"line {read}")
                else:
                    by_offset = [int(m.group(1)) for m in SEQ_RE.finditer(rest_bytes)]
                    if by_offset != tail_seqs:
                        h.anomaly(f"run {run.rid}: unread fields {unread} leave {len(by_offset)} lines, "
                                  f"but read={read} leaves {len(tail_seqs)}: resuming from the offset")
                        left = set(by_offset)
                        head = to_ranges([x for r in job.seqs for x in r if x not in left])
                        tail_seqs = by_offset
            h.events.set_flag([x for r in head for x in r], F_REQ)  # accepted before the signal
            self.done_lines += sum(len(r) for r in head)
            self.rest_n += 1
            path = h.files_dir / f"rest-{self.rest_n:04d}.jsonl"
            with open(path, "wb") as f:
                if rest_bytes is not None:
                    f.write(rest_bytes)
                else:
                    for x in tail_seqs:
                        f.write(h.events.line(x).encode())
            run.notes.append(f"{job.label}: interrupted after {read} of {job.count()} lines"
                             + (f" (summary: {unread})" if unread else " (no unread_* fields)")
                             + f"; the rest ({len(tail_seqs)} lines) goes to {path.name}")
            h.log(f"run {run.rid}: {run.notes[-1]}")
            if tail_seqs:
                self.jobs.appendleft(FileJob([path], to_ranges(tail_seqs), f"{path.name} (rest of {job.label})"))
            return
        run.notes.append(f"{job.label}: no summary ({run.fate()}, rc={run.rc}): ingested again whole")
        h.log(f"run {run.rid}: {run.notes[-1]}")
        if not run.got(signal.SIGKILL):
            h.anomaly(f"run {run.rid} (file ingest) ended without a summary line, rc={run.rc}, "
                      f"not killed with -9: see {run.log_path}")
        self.jobs.appendleft(job)

    @staticmethod
    def _unread_bytes(job: FileJob, s: dict) -> bytes | None:
        """The unread rest per the summary's unread_source / unread_offset / unread_files."""
        source, offset = s.get("unread_source"), s.get("unread_offset")
        paths = [str(p) for p in job.paths]
        if source in (None, "") and s.get("unread_bytes") == 0:
            return b""
        if not isinstance(source, str) or not isinstance(offset, int) or source not in paths:
            return None
        i = paths.index(source)
        if "unread_files" in s and s["unread_files"] != len(paths) - i - 1:
            return None
        with open(source, "rb") as f:
            f.seek(offset)
            data = f.read()
        for p in paths[i + 1:]:
            with open(p, "rb") as f:
                data += f.read()
        return data

    def run_loop(self) -> None:
        h = self.h
        while self.jobs and not h.stop_workload.is_set():
            self._pace()
            if h.stop_workload.is_set():
                break
            self._run_job(self.jobs.popleft())
        self.request.clear()  # no faults in the end phase
        # After the workload (no more faults): every file is ingested to its end.
        deadline = mono() + h.args.final_timeout
        while self.jobs and mono() < deadline and not h.aborting.is_set():
            job = self.jobs.popleft()
            if job.attempts > 8:
                h.anomaly(f"file job {job.label} failed {job.attempts} times; given up")
                continue
            self._run_job(job)
        if self.jobs and not h.aborting.is_set():
            h.anomaly(f"{len(self.jobs)} file jobs never completed")

    def run(self) -> None:  # noqa: A003
        try:
            self.run_loop()
        except Exception:
            self.h.crash(self.name)


# ---------------------------------------------------------------------------------------------
# workload: send --background, flush


class Sender(threading.Thread):
    def __init__(self, h: "Harness", budget: int, rate: float):
        super().__init__(name="sender", daemon=True)
        self.h = h
        self.budget = budget
        self.rate = rate
        self.n = 0
        self.ok = 0
        self.failed = 0

    def run(self) -> None:  # noqa: A003
        h = self.h
        try:
            while not h.stop_workload.is_set() and self.n < self.budget:
                time.sleep(h.rng.expovariate(self.rate) if self.rate > 0 else 1)
                got = h.events.alloc(1, SRC_SEND)
                if not got:
                    break
                seq = got[0]
                self.n += 1
                ev = h.events
                meta = json.dumps({"seq": seq, "src": "send"}, separators=(",", ":"))
                args = ["send", "--background", "--org", str(1 + seq % 50), "--event", "soak.send",
                        "--id", ev.event_id(seq), "--at", ev.occurred_at(seq), "--meta", meta]
                if seq % 7:
                    args += ["--user", str(1 + seq % 5000)]
                run = h.spawn("send", args)
                ev.mark_sent([seq], run.rid, mono() - h.t0)
                run.n_sent = 1
                run.add_seqs([seq])
                h.wait_run(run, 20, why="send --background")
                run.finish()
                if run.rc == 0 and not run.signals:
                    ev.set_flag([seq], F_REQ)
                    self.ok += 1
                else:
                    ev.set_flag([seq], F_SENDFAIL)
                    self.failed += 1
                    run.notes.append(f"send exited {run.rc}: not acked")
                    h.log(f"run {run.rid} send --background exited {run.rc}")
        except Exception:
            h.crash(self.name)


class Flusher(threading.Thread):
    def __init__(self, h: "Harness"):
        super().__init__(name="flusher", daemon=True)
        self.h = h
        self.running: list[Run] = []
        self.lock = threading.Lock()
        self.request = SignalRequest()  # a client fault for the next flush

    def _reap(self, force: bool) -> None:
        h = self.h
        with self.lock:
            runs = list(self.running)
        for r in runs:
            if force:
                h.wait_run(r, h.args.flush_run_timeout, why="flush at the end of the workload")
            elif r.alive() and mono() - r.start > h.args.flush_run_timeout:
                h.wait_run(r, 1, why="flush past its --timeout")
            if not r.alive():
                r.finish()
                with self.lock:
                    self.running.remove(r)

    def run(self) -> None:  # noqa: A003
        h = self.h
        try:
            while not h.stop_workload.is_set():
                wake = mono() + h.rng.uniform(*h.args.flush_every)
                while mono() < wake and not self.request.pending() and not h.stop_workload.is_set():
                    time.sleep(0.1)
                if h.stop_workload.is_set():
                    break
                self._reap(False)
                with self.lock:
                    n = len(self.running)
                if n < 2 or (self.request.pending() and n < 4):
                    args = ["flush", "--timeout", str(h.rng.choice([5, 15, 30]))]
                    if h.rng.random() < 0.3:
                        args.append("--exclusive")
                    run = h.spawn("flush", args)
                    with self.lock:
                        self.running.append(run)
                    self.request.apply(h, run, (0.005, 0.3))
                elif self.request.pending():
                    time.sleep(0.5)
            self.request.clear()
            self._reap(True)
        except Exception:
            h.crash(self.name)


# ---------------------------------------------------------------------------------------------
# the harness


class Harness:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.rng = random.Random(args.seed)
        self.frng = random.Random(args.seed + 1)  # faults
        self.crng = random.Random(args.seed + 2)  # client faults
        self.t0 = mono()
        self.lock = threading.Lock()
        self.runs: list[Run] = []
        self.injections: list[Injection] = []
        self.anomalies: list[str] = []
        self.stop_workload = threading.Event()
        self.stop_faults = threading.Event()
        self.aborting = threading.Event()
        self.crashed: list[str] = []
        self.stopped_pids: set[int] = set()
        self.ballast: Path | None = None
        self.mounted = False
        self.cleaned = False
        self.server: Server | None = None
        self.last_outage_end = -1e9
        self.work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="trackevent-soak."))
        self.work.mkdir(parents=True, exist_ok=True)
        os.chmod(self.work, 0o711)  # the server's postgres user must reach work/pg
        self.logdir = Path(args.log_dir) if args.log_dir else self.work / "logs"
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.files_dir = self.work / "files"
        self.files_dir.mkdir(exist_ok=True)
        self.tee_dir = self.work / "tee"
        self.tee_dir.mkdir(exist_ok=True)
        self.spool_mount = self.work / "spoolfs"
        self.spool_dir = self.spool_mount / "spool"
        self._log = open(self.logdir / "soak.log", "a", buffering=1)
        # Clients run in cores/ with core dumps on (kernel.core_pattern permitting), so a crash of
        # a client, or of a detached deliverer it started, leaves a core to look at.
        self.cores_dir = self.logdir / "cores"
        self.cores_dir.mkdir(exist_ok=True)
        self.events: Events | None = None
        self.streams: list[PipeStream] = []
        self.feeder: FileFeeder | None = None
        self.sender: Sender | None = None
        self.flusher: Flusher | None = None
        self.final_flush_runs: list[Run] = []
        self.t0_wall = ""

    # -- logging ------------------------------------------------------------------------------

    def log(self, msg: str, echo: bool = False) -> None:
        line = f"[{mono() - self.t0:8.1f}s] {msg}"
        with self.lock:
            self._log.write(line + "\n")
        if echo or self.args.verbose:
            print(line, flush=True)

    def anomaly(self, msg: str) -> None:
        with self.lock:
            self.anomalies.append(msg)
        self.log("ANOMALY: " + msg, echo=True)

    def crash(self, where: str) -> None:
        if self.cleaned:
            return  # a worker tripped over the cleanup (its processes are gone): not news
        tb = traceback.format_exc()
        with self.lock:
            self.crashed.append(f"{where}: {tb}")
        self.log(f"harness thread {where} crashed:\n{tb}", echo=True)
        self.aborting.set()

    # -- binaries -----------------------------------------------------------------------------

    def snapshot_binary(self) -> None:
        """Copies the CLI and libtrackevent into the work dir, so a rebuild in the source
        tree during the soak does not swap them under running clients."""
        src = Path(self.args.bin).resolve()
        if not src.exists():
            raise HarnessError(f"no trackevent binary at {src} (build it, or pass --bin)")
        bindir = self.work / "bin"
        libdir = self.work / "lib"
        libdir.mkdir(parents=True, exist_ok=True)
        bindir.mkdir(exist_ok=True)
        shutil.copy2(src, bindir / "trackevent")
        # The library: --lib-dir, else lib/ beside the binary's directory (a build tree, or a copy
        # that kept its layout), else wherever ldd finds it.
        candidates = [Path(self.args.lib_dir)] if self.args.lib_dir else [src.parent.parent / "lib"]
        lib = next((c / "libtrackevent.so.0" for c in candidates if (c / "libtrackevent.so.0").exists()), None)
        if lib is None:
            ldd = subprocess.run(["ldd", str(src)], capture_output=True, text=True, timeout=30).stdout
            m = re.search(r"libtrackevent\.so\S*\s+=>\s+(\S+)", ldd)
            if not m or not Path(m.group(1)).exists():
                raise HarnessError(f"ldd does not find libtrackevent for {src}:\n{ldd}")
            lib = Path(m.group(1))
        lib = lib.resolve()
        self.check_build_tree(src)
        for p in lib.parent.glob("libtrackevent.so*"):
            if p.is_symlink():
                dst = libdir / p.name
                if dst.exists() or dst.is_symlink():
                    dst.unlink()
                os.symlink(os.readlink(p), dst)
            else:
                shutil.copy2(p, libdir / p.name)
        self.bin = str(bindir / "trackevent")
        self.libdir = str(libdir)
        self.log(f"binary snapshot: {src} -> {self.bin} (lib {lib})")

    def check_build_tree(self, binary: Path) -> None:
        """In a CMake build tree, warn when an object file is older than a source or header it was
        compiled from: a CLI and a library built from different versions of a header crash at
        random (seen: `flush` jumping to a garbage DrainOptions::should_stop)."""
        tree = next((p for p in binary.parents if (p / "CMakeCache.txt").exists()), None)
        if tree is None:
            return
        stale = []
        for dep_file in tree.glob("**/CMakeFiles/trackevent*.dir/**/*.o.d"):
            obj = Path(str(dep_file)[:-2])
            try:
                text = dep_file.read_text().replace("\\\n", " ")
                built = obj.stat().st_mtime
            except OSError:
                continue
            for dep in text.split(":", 1)[-1].split():
                try:
                    if os.path.getmtime(dep) > built:
                        stale.append(f"{obj.name} (older than {dep})")
                        break
                except OSError:
                    continue
        if stale:
            self.log(f"WARNING: {binary} comes from a build tree with {len(stale)} stale objects, e.g. "
                     f"{stale[0]}: the binary may mix versions of the sources; rebuild, or build a "
                     "clean copy (git archive) and pass --bin", echo=True)

    # -- clients ------------------------------------------------------------------------------

    def client_environment(self) -> dict[str, str]:
        home = self.work / "home"
        home.mkdir(exist_ok=True)
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "LANG": "C.UTF-8",
            "LD_LIBRARY_PATH": self.libdir,
            "TRACKEVENT_SPOOL_DIR": str(self.spool_dir),
            "XDG_STATE_HOME": str(home / "state"),
            "XDG_DATA_HOME": str(home / "data"),
        }

    def spawn(self, kind: str, args: list[str], stdin=subprocess.DEVNULL, tee: bool = False,
              db: str | None = None) -> Run:
        if self.cleaned:
            raise HarnessError("cleaning up: no new clients")
        with self.lock:
            rid = len(self.runs)
            run = Run(rid, kind, [], self.logdir / f"{rid:05d}-{kind}.stderr",
                      self.tee_dir / f"{rid:05d}-{kind}.tee" if tee else None)
            self.runs.append(run)
        run.argv = [self.bin, "--db", db or self.client_url]
        if self.args.client_log_level and kind in self.args.client_log_kinds:
            run.argv += ["--log-level", self.args.client_log_level]
        run.argv += args
        stdout = open(run.tee_path, "wb") if tee else subprocess.DEVNULL
        with open(run.log_path, "wb") as err:
            run.popen = subprocess.Popen(run.argv, stdin=stdin, stdout=stdout, stderr=err,
                                         env=self.env, start_new_session=True, close_fds=True,
                                         cwd=self.cores_dir, preexec_fn=self.preexec)
        if tee:
            stdout.close()
        run.start = mono()
        self.log(f"run {rid} {kind} pid {run.popen.pid}: {' '.join(args[:6])}")
        return run

    def preexec(self) -> None:
        if not self.args.no_cores:
            import resource
            try:
                resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            except (ValueError, OSError):
                pass

    def crash_report(self) -> list[str]:
        """Core files left by clients (and by the deliverers they started), with a backtrace each
        when gdb is there (written beside the core as CORE.bt.txt)."""
        out = []
        cores = sorted(p for p in self.cores_dir.iterdir() if p.name.startswith("core"))
        if not cores:
            return out
        gdb = shutil.which("gdb")
        for core in cores:
            if core.name.endswith(".bt.txt"):
                continue
            line = f"{core}"
            if gdb and len(out) < 5:
                try:
                    r = subprocess.run([gdb, "-batch", "-nx", "-ex", "thread apply all bt 12", self.bin, str(core)],
                                       capture_output=True, text=True, timeout=120,
                                       env={**os.environ, "LD_LIBRARY_PATH": self.libdir})
                    Path(str(core) + ".bt.txt").write_text(r.stdout + r.stderr)
                    sig = re.search(r"Program terminated with signal (\S+)", r.stdout)
                    line += f" ({sig.group(1) if sig else '?'}; backtrace in {core.name}.bt.txt)"
                except subprocess.TimeoutExpired:
                    pass
            out.append(line)
        return out

    def wait_run(self, run: Run, timeout: float, why: str) -> None:
        """Waits (bounded) for a client; past the bound: SIGTERM, then kill -9, as an anomaly."""
        if run.popen is None:
            return
        try:
            run.popen.wait(timeout=max(0.0, timeout))
            return
        except subprocess.TimeoutExpired:
            pass
        if timeout <= 0:
            return
        self.anomaly(f"run {run.rid} ({why}) still running after {timeout:.0f} s: SIGTERM")
        run.signal(signal.SIGTERM, "harness")
        try:
            run.popen.wait(timeout=self.args.flush_timeout + 20)
            return
        except subprocess.TimeoutExpired:
            pass
        self.anomaly(f"run {run.rid} ({why}) ignored SIGTERM: kill -9")
        run.signal(signal.SIGKILL, "harness")
        try:
            run.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.anomaly(f"run {run.rid} pid {run.popen.pid} survives kill -9")

    # -- setup --------------------------------------------------------------------------------

    def setup(self) -> None:
        a = self.args
        self.snapshot_binary()
        # The spool on a small tmpfs, so that it can fill.
        self.spool_mount.mkdir(exist_ok=True)
        if os.geteuid() == 0 and not a.no_tmpfs:
            r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={a.spool_mb}m,mode=0700",
                                "soak-spool", str(self.spool_mount)], capture_output=True,
                               text=True, timeout=30)
            if r.returncode != 0:
                raise HarnessError(f"mount tmpfs failed: {r.stderr.strip()}")
            self.mounted = True
        else:
            self.log("not root (or --no-tmpfs): the spool is a plain directory and the "
                     "'spool full' fault is off", echo=True)
            a.faults = [f for f in a.faults if f != "ballast"]
        self.spool_dir.mkdir(mode=0o700, exist_ok=True)

        self.server = Server(self, Path(a.pg_script), self.work / "pg")
        if not self.server.start():
            raise HarnessError("could not start the disposable PostgreSQL")
        port = self.server.port
        self.admin_url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        self.client_url = f"postgresql://soak_client@127.0.0.1:{port}/postgres"
        self.env = self.client_environment()
        self.log(f"server {self.server.dir} port {port}; spool {self.spool_dir} "
                 f"({'tmpfs ' + str(a.spool_mb) + ' MiB' if self.mounted else 'plain dir'})", echo=True)
        run = self.spawn("migrate", ["migrate"], db=self.admin_url)
        self.wait_run(run, 120, why="migrate")
        run.finish()
        if run.rc != 0:
            raise HarnessError(f"trackevent migrate failed (rc={run.rc}): {run.log_path.read_text()[-800:]}")
        # A non-superuser client role (superusers ignore REVOKE). pg-test-server runs with
        # synchronous_commit=off, which loses acknowledged commits at a kill -9 or an immediate
        # stop; the role setting (which wins over the server's -c) turns it back on for clients.
        self.server.psql(
            "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='soak_client') THEN "
            "CREATE ROLE soak_client LOGIN; END IF; END$$;"
            "GRANT USAGE ON SCHEMA public TO soak_client;"
            "GRANT SELECT, INSERT ON analytics_events TO soak_client;"
            f"ALTER ROLE soak_client SET synchronous_commit = {'off' if a.async_commit else 'on'};"
        )

    def plan(self) -> None:
        """Budgets and rates: how many events each source makes, and how fast."""
        a = self.args
        dur = a.minutes * 60.0
        rate = min(a.events / dur, a.max_rate)
        total = int(rate * dur)
        if total < a.events:
            self.log(f"rate capped at {a.max_rate}/s: {total} events instead of {a.events}", echo=True)
        send_rate = a.send_rate
        n_send = min(int(send_rate * dur), total // 50)
        send_rate = n_send / dur
        rest = total - n_send
        n_file = int(rest * a.file_share)
        n_durable = int((rest - n_file) * a.durable_share)
        n_pipe = rest - n_file - n_durable
        self.budget = {"pipe": n_pipe, "durable": n_durable, "file": n_file, "send": n_send}
        self.rates = {k: v / dur for k, v in self.budget.items()}
        step_us = int(dur * 1e6 / max(1, total))
        t0_us = int(time.time() * 1e6)
        self.events = Events(a.seed, total, t0_us, step_us)
        self.log("plan: " + ", ".join(f"{k} {v} ({self.rates[k]:.0f}/s)" for k, v in self.budget.items()),
                 echo=True)

    def write_files(self) -> list[FileJob]:
        n_file = self.budget["file"]
        dur = self.args.minutes * 60.0
        groups = max(2, min(200, int(dur / self.args.file_every)))
        per_group = max(1, n_file // groups) if n_file else 0
        jobs = []
        ev = self.events
        left = n_file
        t = mono()
        for g in range(groups):
            n = per_group if g < groups - 1 else left
            if n <= 0:
                break
            left -= n
            seqs = ev.alloc(n, SRC_FILE)
            half = len(seqs) // 2
            parts = [seqs[:half], seqs[half:]] if half else [seqs]
            paths = []
            for i, part in enumerate(parts):
                path = self.files_dir / f"g{g:03d}-{i}.jsonl"
                with open(path, "w") as f:
                    for chunk in range(part.start, part.stop, 10000):
                        f.write("".join(ev.line(s) for s in range(chunk, min(chunk + 10000, part.stop))))
                paths.append(path)
            jobs.append(FileJob(paths, [seqs], f"group {g}"))
        self.log(f"wrote {n_file} lines in {len(jobs)} file groups in {mono() - t:.1f} s", echo=True)
        return jobs

    # -- server faults ------------------------------------------------------------------------

    def inject(self, kind: str, nested_in: str | None = None) -> Injection:
        inj = Injection(kind, nested_in)
        with self.lock:
            self.injections.append(inj)
        self.log(f"FAULT {kind} begins" + (f" (inside {nested_in})" if nested_in else ""))
        try:
            getattr(self, f"f_{kind}")(inj)
            inj.ok = not inj.error
        except Exception as e:  # a fault that could not be applied is counted as failed
            inj.error = f"{type(e).__name__}: {e}"
            self.log(traceback.format_exc())
        inj.end = mono()
        if kind in OUTAGE:
            self.last_outage_end = inj.end
        self.log(f"FAULT {kind} ends after {inj.end - inj.start:.1f} s: "
                 f"{'ok' if inj.ok else 'FAILED ' + inj.error} {inj.detail}")
        if not self.server.ready(5):
            self.log("server not answering after a fault: starting it")
            if not self.server.ensure_up(90):
                self.anomaly("the server could not be brought back up after a fault")
        return inj

    def hold(self, inj: Injection, seconds: float) -> None:
        """Keeps a state fault for `seconds`, maybe with another fault inside it."""
        end = mono() + seconds
        nestable = NESTABLE.get(inj.kind, [])
        if self.args.full_and_down:
            nestable = [k for k in SERVER_FAULTS if k != inj.kind]
        allowed = [k for k in nestable if k in self.args.faults]
        if inj.nested_in is None and allowed and self.frng.random() < self.args.nest:
            time.sleep(self.frng.uniform(0.5, seconds / 2))
            kind = self.frng.choice(allowed)
            if kind != "ballast" or self.args.full_and_down or \
                    mono() - self.last_outage_end >= BALLAST_AFTER_OUTAGE_S:
                self.inject(kind, nested_in=inj.kind)
        while mono() < end and not self.aborting.is_set():
            time.sleep(0.2)

    def f_restart(self, inj: Injection) -> None:
        t = mono()
        if not self.server.restart():
            inj.error = "restart failed"
            return
        inj.detail["down_s"] = round(mono() - t, 1)

    def f_kill9(self, inj: Injection) -> None:
        inj.detail["killed"] = self.server.kill9()
        time.sleep(self.frng.uniform(0.5, 4))
        t = mono()
        if not self.server.start():
            inj.error = "start after kill -9 failed"
            return
        inj.detail["start_s"] = round(mono() - t, 1)

    def f_sigstop(self, inj: Injection) -> None:
        pm = self.server.postmaster_pid()
        if not pm:
            inj.error = "no postmaster"
            return
        kill_pid(pm, signal.SIGSTOP)  # first, so it forks nothing new while we stop the rest
        self.stopped_pids.add(pm)
        for p in descendants(pm):
            if kill_pid(p, signal.SIGSTOP):
                self.stopped_pids.add(p)
        n = len(self.stopped_pids)
        secs = self.frng.uniform(*self.args.sigstop)
        time.sleep(secs)
        self.sigcont_all()
        inj.detail.update(processes=n, stopped_s=round(secs, 1))

    def sigcont_all(self) -> None:
        for p in list(self.stopped_pids):
            kill_pid(p, signal.SIGCONT)
            self.stopped_pids.discard(p)

    def f_terminate(self, inj: Injection) -> None:
        secs = self.frng.uniform(3, 8)
        rounds = max(1, int(secs / 0.2))
        script = (
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = 'trackevent' AND pid <> pg_backend_pid();\n"
            "SELECT pg_sleep(0.2);\n"
        ) * rounds
        out = self.server.psql("", timeout=secs + 30, input_text=script, check=False)
        inj.detail["terminated"] = sum(int(x) for x in out.split() if x.isdigit())
        inj.detail["loop_s"] = round(secs, 1)

    def f_revoke(self, inj: Injection) -> None:
        self.server.psql("REVOKE INSERT ON analytics_events FROM soak_client")
        secs = self.frng.uniform(5, 15)
        try:
            self.hold(inj, secs)
        finally:
            self.grant()
        inj.detail["revoked_s"] = round(mono() - inj.start, 1)

    def grant(self) -> None:
        deadline = mono() + 120
        while True:
            try:
                self.server.ensure_up(30)
                self.server.psql("GRANT SELECT, INSERT ON analytics_events TO soak_client")
                return
            except HarnessError as e:
                if mono() > deadline:
                    raise
                self.log(f"GRANT failed, again: {e}")
                time.sleep(1)

    def f_constraint(self, inj: Injection) -> None:
        lo = self.events.next
        self.server.psql(
            "SET lock_timeout = '10s'; ALTER TABLE analytics_events ADD CONSTRAINT soak_reject "
            f"CHECK ((metadata->>'seq') IS NULL OR ((metadata->>'seq')::bigint % {REJECT_MOD}) <> 0) "
            "NOT VALID", timeout=40)
        secs = self.frng.uniform(8, 20)
        try:
            self.hold(inj, secs)
        finally:
            self.drop_constraint()
        inj.detail["seq_window"] = (lo, self.events.next)

    def drop_constraint(self) -> None:
        deadline = mono() + 120
        while True:
            try:
                self.server.ensure_up(30)
                self.server.psql("SET lock_timeout = '10s'; ALTER TABLE analytics_events "
                                 "DROP CONSTRAINT IF EXISTS soak_reject", timeout=40)
                return
            except HarnessError as e:
                if mono() > deadline:
                    raise
                self.log(f"DROP CONSTRAINT failed, again: {e}")
                time.sleep(1)

    def f_ballast(self, inj: Injection) -> None:
        st = os.statvfs(self.spool_mount)
        free = st.f_bavail * st.f_frsize
        room = int(self.frng.uniform(0, self.args.ballast_room) * 1024)
        size = free - room
        if size <= 0:
            inj.error = f"only {free} bytes free already"
            return
        path = self.spool_mount / "ballast"
        self.ballast = path
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError:
            block = b"\0" * (1 << 20)
            left = size
            while left > 0:
                try:
                    left -= os.write(fd, block[: min(left, len(block))])
                except OSError:
                    break
        finally:
            os.close(fd)
        st = os.statvfs(self.spool_mount)
        inj.detail["free_kib"] = st.f_bavail * st.f_frsize // 1024
        inj.detail["ballast_mib"] = size >> 20
        secs = self.frng.uniform(5, 15)
        try:
            self.hold(inj, secs)
        finally:
            self.remove_ballast()

    def remove_ballast(self) -> None:
        if self.ballast is not None:
            try:
                self.ballast.unlink()
            except FileNotFoundError:
                pass
            self.ballast = None

    def server_fault_loop(self) -> None:
        try:
            kinds = [k for k in SERVER_FAULTS if k in self.args.faults]
            deck: list[str] = []  # every kind once per round, in random order: short runs see all
            while kinds and not self.stop_faults.wait(self.frng.uniform(*self.args.fault_gap)):
                if not deck:
                    deck = self.frng.sample(kinds, len(kinds))
                    if "ballast" in deck:  # early in the round: it must keep away from outages
                        deck.remove("ballast")
                        deck.insert(self.frng.randrange(0, len(deck) // 2 + 1), "ballast")
                kind = deck[0]
                if kind == "ballast" and not self.args.full_and_down and \
                        mono() - self.last_outage_end < BALLAST_AFTER_OUTAGE_S:
                    # Its turn: a quiet spell (client signals go on) until it may come.
                    wait = BALLAST_AFTER_OUTAGE_S - (mono() - self.last_outage_end)
                    self.log(f"ballast waits {wait:.0f} s to keep away from the last outage")
                    if self.stop_faults.wait(max(0.0, wait)):
                        break
                deck.remove(kind)
                self.inject(kind)
        except Exception:
            self.crash("server faults")

    # -- client faults ------------------------------------------------------------------------

    def client_fault_loop(self) -> None:
        try:
            targets = [t for t in CLIENT_TARGETS if f"client-{t}" in self.args.faults]
            combos = [(t, s) for t in targets for s in (signal.SIGTERM, signal.SIGKILL)]
            deck: list[tuple[str, int]] = []  # every (target, signal) once per round
            while combos and not self.stop_faults.wait(self.crng.uniform(*self.args.client_gap)):
                if not deck:
                    deck = self.crng.sample(combos, len(combos))
                # The first one in the deck that has something to signal within a few seconds.
                deadline = mono() + 5
                while not self.stop_faults.is_set() and mono() < deadline:
                    pick = next((c for c in deck if self.signal_client(*c)), None)
                    if pick is not None:
                        deck.remove(pick)
                        break
                    time.sleep(0.3)
        except Exception:
            self.crash("client faults")

    def signal_client(self, target: str, sig: int) -> bool:
        inj = Injection(f"{'SIGTERM' if sig == signal.SIGTERM else 'kill -9'} {target}")
        if target in ("file", "flush"):
            # Both are short-lived: signal the next one a moment after it starts (counted then).
            req = self.feeder.request if target == "file" else self.flusher.request
            if req.ask(sig, inj.kind):
                self.log(f"FAULT {inj.kind}: requested for the next {target} run")
                return True
            return False
        else:
            stream = next(s for s in self.streams if s.kind == target)
            run = stream.current()
            if run is not None and mono() - run.start < 1.0:
                return False
        if run is None or not run.signal(sig, "fault"):
            return False  # nothing to signal right now; not counted
        inj.ok = True
        inj.run_id = run.rid
        inj.end = mono()
        with self.lock:
            self.injections.append(inj)
        self.log(f"FAULT {inj.kind}: run {run.rid} pid {run.popen.pid}")
        return True

    # -- the soak -----------------------------------------------------------------------------

    def status_line(self) -> str:
        ev = self.events
        alive = sum(1 for r in self.runs if r.alive())
        use = ""
        if self.mounted:
            st = os.statvfs(self.spool_mount)
            used = (st.f_blocks - st.f_bfree) * st.f_frsize
            use = f", spool fs {used >> 20}/{(st.f_blocks * st.f_frsize) >> 20} MiB"
        with open("/proc/loadavg") as f:
            load = f.read().split()[0]
        return (f"sent {ev.next}/{ev.capacity}, client runs {len(self.runs)} ({alive} alive), "
                f"faults {len(self.injections)}{use}, load {load}")

    def soak(self) -> None:
        a = self.args
        self.setup()
        self.plan()
        jobs = self.write_files()
        self.t0 = mono()
        self.t0_wall = dt.datetime.now(dt.timezone.utc).isoformat()
        self.streams = [
            PipeStream(self, "pipe", SRC_PIPE, ["--flush-timeout", str(a.flush_timeout)],
                       self.budget["pipe"], self.rates["pipe"]),
            PipeStream(self, "durable", SRC_DURABLE,
                       ["--durable", "--flush-timeout", str(a.flush_timeout)],
                       self.budget["durable"], self.rates["durable"]),
        ]
        self.feeder = FileFeeder(self, jobs, self.rates["file"])
        self.sender = Sender(self, self.budget["send"], self.rates["send"])
        self.flusher = Flusher(self)
        workers = [*self.streams, self.feeder, self.sender, self.flusher]
        for w in workers:
            w.start()
        faults = [threading.Thread(target=self.server_fault_loop, name="server-faults", daemon=True),
                  threading.Thread(target=self.client_fault_loop, name="client-faults", daemon=True)]
        for f in faults:
            f.start()
        self.log(f"soak running for {a.minutes} min", echo=True)
        end = self.t0 + a.minutes * 60
        next_status = mono() + a.status_every
        while mono() < end and not self.aborting.is_set():
            time.sleep(0.5)
            if mono() >= next_status:
                self.log(self.status_line(), echo=True)
                next_status += a.status_every
        if self.aborting.is_set():
            raise HarnessError("a harness thread crashed: " + "; ".join(c.splitlines()[-1] for c in self.crashed))

        self.log("time is up: stopping faults", echo=True)
        self.stop_faults.set()
        for f in faults:
            f.join(timeout=180)
            if f.is_alive():
                self.anomaly(f"fault thread {f.name} did not stop within 180 s")
        self.undo_faults()
        self.log("stopping the workload (EOF to pipes, remaining files, last sends)", echo=True)
        self.stop_workload.set()
        for w in workers:
            w.join(timeout=a.final_timeout)
            if w.is_alive():
                self.anomaly(f"worker {w.name} did not finish within {a.final_timeout} s")
        if self.aborting.is_set():
            raise HarnessError("a harness thread crashed: " + "; ".join(c.splitlines()[-1] for c in self.crashed))
        self.drain()

    def undo_faults(self) -> None:
        self.sigcont_all()
        if not self.server.ensure_up(120):
            raise HarnessError("the server is not up after the faults")
        self.grant()
        self.drop_constraint()
        self.remove_ballast()

    def deliverers(self) -> list[int]:
        """Processes of our snapshot binary on our spool that the harness did not start itself:
        the detached `flush --exclusive` of `send --background`."""
        mine = {r.popen.pid for r in self.runs if r.popen is not None and r.alive()}
        want = f"TRACKEVENT_SPOOL_DIR={self.spool_dir}".encode()
        out = []
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) in mine or int(name) == os.getpid():
                continue
            try:
                if os.readlink(f"/proc/{name}/exe") != os.path.realpath(self.bin):
                    continue
                with open(f"/proc/{name}/environ", "rb") as f:
                    if want not in f.read().split(b"\0"):
                        continue
            except OSError:
                continue
            if is_alive(int(name)):
                out.append(int(name))
        return out

    def drain(self) -> None:
        """`trackevent flush` until the spool is empty (bounded)."""
        a = self.args
        deadline = mono() + a.final_timeout
        pids = self.deliverers()
        if pids:
            self.log(f"waiting for {len(pids)} background deliverers", echo=True)
        while pids and mono() < min(deadline, mono() + 150):
            time.sleep(1)
            pids = [p for p in pids if is_alive(p)]
        for p in pids:
            self.anomaly(f"background deliverer pid {p} still running: kill -9")
            kill_pid(p, signal.SIGKILL)
        self.log("flushing the spool until it is empty", echo=True)
        for attempt in range(1, 8):
            run = self.spawn("final-flush", ["flush", "--timeout", "150"])
            self.final_flush_runs.append(run)
            self.wait_run(run, 200, why="final flush")
            run.finish()
            s = run.summary or {}
            self.log(f"final flush {attempt}: rc={run.rc} {s}", echo=True)
            if run.rc == 0 and s.get("remaining", 0) == 0:
                return
            if mono() > deadline:
                break
            time.sleep(2)
        self.anomaly("the spool could not be emptied by `trackevent flush`")

    # -- verification -------------------------------------------------------------------------

    def verify(self) -> int:
        a = self.args
        ev = self.events
        srv = self.server
        # Keep the spool's side files before the tmpfs goes away.
        for name in ("dead-letter.jsonl", "flush.log", "flush.log.1"):
            p = self.spool_dir / name
            if p.exists():
                shutil.copy2(p, self.logdir / name)
        count, distinct = map(int, srv.psql(
            "SELECT count(*), count(DISTINCT event_id) FROM analytics_events", timeout=600
        ).strip().split("|"))
        mismatch = int(srv.psql(
            "SELECT count(*) FROM analytics_events WHERE metadata ? 'seq' AND "
            "right(event_id::text, 12) <> lpad(to_hex((metadata->>'seq')::bigint), 12, '0')",
            timeout=600).strip())
        ids_path = self.work / "stored-ids.txt"
        with open(ids_path, "w") as f:
            srv.psql("COPY (SELECT event_id FROM analytics_events) TO STDOUT", timeout=900, stdout=f)
        flags = ev.flags
        unknown = 0
        with open(ids_path) as f:
            for line in f:
                s = ev.seq_of(line.strip())
                if s is None or s >= ev.next:
                    unknown += 1
                else:
                    flags[s] |= F_STORED
        dead_lines = torn = dead_unknown = 0
        dead_sqlstates: collections.Counter = collections.Counter()
        dead_path = self.logdir / "dead-letter.jsonl"
        if dead_path.exists():
            with open(dead_path, "rb") as f:
                for line in f:
                    if not line.strip():
                        continue
                    dead_lines += 1
                    try:
                        d = json.loads(line)
                    except ValueError:
                        torn += 1
                        continue
                    s = ev.seq_of(str(d.get("event_id", "")))
                    dead_sqlstates[d.get("sqlstate")] += 1
                    if s is None or s >= ev.next:
                        dead_unknown += 1
                    else:
                        flags[s] |= F_DEAD

        # Classify every event the harness made.
        n = ev.next
        by_src = collections.Counter()
        sent = req = stored = dead = dead_not_at_risk = stored_and_dead = 0
        unacked = unacked_missing = sendfail_missing = never_sent = stored_unsent = 0
        missing: list[int] = []
        for s in range(n):
            f = flags[s]
            if f & F_SENT:
                sent += 1
                by_src[SRC_NAME.get(ev.src[s], "?")] += 1
            elif f & F_STORED:
                stored_unsent += 1
            else:
                never_sent += 1
            if f & F_STORED:
                stored += 1
            if f & F_DEAD:
                dead += 1
                if s % REJECT_MOD:
                    dead_not_at_risk += 1
                if f & F_STORED:
                    stored_and_dead += 1
            if f & F_REQ:
                req += 1
                if not f & (F_STORED | F_DEAD):
                    missing.append(s)
            elif f & F_UNACKED:
                unacked += 1
                if not f & (F_STORED | F_DEAD):
                    unacked_missing += 1
            elif f & F_SENDFAIL and not f & (F_STORED | F_DEAD):
                sendfail_missing += 1

        # Missing events a client admitted (summary "dropped") vs silently lost.
        runs = self.runs
        by_run = collections.Counter(ev.run_of[s] for s in missing)
        admitted_runs = set()
        for rid, k in by_run.items():
            r = runs[rid] if 0 <= rid < len(runs) else None
            if r is not None and r.summary and int(r.summary.get("dropped", 0) or 0) >= k:
                admitted_runs.add(rid)
        lost_seqs = [s for s in missing if ev.run_of[s] not in admitted_runs]
        admitted = len(missing) - len(lost_seqs)
        lost = len(lost_seqs)

        # Summary lines: accepted = stored + duplicates - unspooled + rejected_by_db + spooled + dropped
        checked = holds = replay_dead = replay_dead_unverified = replay_own = 0
        violations = []
        dropped_runs = []
        for r in runs:
            s = r.summary
            if r.kind not in ("pipe", "durable", "file", "send") or not s or "accepted" not in s:
                continue
            checked += 1
            g = lambda k: int(s.get(k, 0) or 0)  # noqa: E731
            rhs = g("stored") + g("duplicates") - g("unspooled") + g("rejected_by_db") + g("spooled") + g("dropped")
            delta = rhs - g("accepted")
            if delta == 0:
                holds += 1
            elif 0 < delta <= g("rejected_by_db"):
                # Rows this run replayed from the spool (others' events) that the database
                # rejected count in rejected_by_db, not in accepted. Verified from the run's log
                # when every bad row was logged (the lines are rate-limited).
                # A row it spooled itself, replayed and saw rejected counts in both spooled and
                # rejected_by_db (and not in unspooled): that makes up the rest.
                foreign, logged = self.foreign_dead_letters(r)
                if logged < g("rejected_by_db"):
                    replay_dead_unverified += 1
                elif foreign == delta:
                    replay_dead += 1
                elif foreign < delta:
                    replay_own += 1
                else:
                    violations.append((r, delta))
            else:
                violations.append((r, delta))
            if g("dropped") > 0:
                dropped_runs.append(r)

        # Ended without a summary line and not by kill -9 (a flush dies of SIGTERM: it has no
        # handler for it, and its leases then run out for others to take over).
        crashed = [r for r in runs if r.kind in ("pipe", "durable", "file", "send", "flush")
                   and r.end is not None and r.summary is None and not r.got(signal.SIGKILL)
                   and not (r.kind == "flush" and r.rc == -signal.SIGTERM and r.got(signal.SIGTERM))]
        criticals = []
        for r in runs:
            try:
                with open(r.log_path, "rb") as f:
                    for line in f:
                        if b'"level":"critical"' in line or b"dead_letter_err" in line:
                            criticals.append((r.rid, line.decode(errors="replace").strip()[:300]))
            except OSError:
                pass

        # ---- the table ----
        out = []
        p = out.append
        p("")
        p("=" * 100)
        p(f"trackevent chaos soak: {a.minutes} min, seed {a.seed}, target {a.events} events, "
          f"work dir {self.work}")
        p("=" * 100)
        p(f"{'fault':44} {'injected':>8} {'failed':>6} {'lost':>6} {'unacked':>8}  outcome")
        p("-" * 100)
        rows = self.fault_rows(lost_seqs)
        for title, injected, failed, lost_n, unacked_n, outcome in rows:
            p(f"{title:44} {injected:>8} {failed:>6} {lost_n:>6} {unacked_n:>8}  {outcome}")
        p("-" * 100)
        kinds = collections.Counter(r.kind for r in runs)
        rcs = collections.defaultdict(collections.Counter)
        for r in runs:
            rcs[r.kind][r.rc if not r.got(signal.SIGKILL) else "kill -9"] += 1
        p("client runs: " + "; ".join(f"{k} {kinds[k]} (exit {dict(rcs[k])})" for k in sorted(kinds)))
        p(f"summary lines checked: {checked} "
          "(accepted = stored + duplicates - unspooled + rejected_by_db + spooled + dropped)")
        p(f"   {'add up exactly':72} {holds:>6}")
        p(f"   {'off by exactly the events of others they dead-lettered (from their logs)':72} {replay_dead:>6}")
        p(f"   {'off by more, at most rejected_by_db (own spooled rows replayed, rejected)':72} {replay_own:>6}")
        p(f"   {'off by at most rejected_by_db, not checked (bad-row log lines suppressed)':72} "
          f"{replay_dead_unverified:>6}")
        p(f"   {'DO NOT ADD UP':72} {len(violations):>6}")
        for r, delta in violations[:20]:
            p(f"   run {r.rid} {r.kind} ({r.fate()}): off by {delta:+d}: {json.dumps(r.summary)}")
        p("-" * 100)
        p(f"{'events made':44} {n:>12}" + (f"   ({never_sent} never handed to a client)" if never_sent else ""))
        p(f"{'events sent (handed to trackevent)':44} {sent:>12}   " + ", ".join(f"{k} {v}" for k, v in sorted(by_src.items())))
        p(f"{'acked (required)':44} {req:>12}")
        p(f"{'stored (distinct ids in analytics_events)':44} {stored:>12}")
        p(f"{'dead-lettered':44} {dead:>12}   lines {dead_lines}, torn {torn}, not ours {dead_unknown}, "
          f"sqlstates {dict(dead_sqlstates)}")
        p(f"{'   of which not at risk (seq % 997 != 0)':44} {dead_not_at_risk:>12}")
        p(f"{'   of which also stored':44} {stored_and_dead:>12}")
        p(f"{'unacked, not required (kill -9), missing':44} {unacked_missing:>12}   of {unacked} unacked")
        p(f"{'send --background failed, not required, missing':44} {sendfail_missing:>12}")
        p(f"{'dropped (admitted in a summary, exit 74)':44} {admitted:>12}" + ("   <-- LOUD: data loss" if admitted else ""))
        p(f"{'LOST (acked, neither stored nor dead-lettered)':44} {lost:>12}   must be 0")
        p(f"{'DUPLICATES (count(*) - count(distinct))':44} {count - distinct:>12}   must be 0")
        p(f"{'rows not made by this soak / content mismatch':44} {unknown:>8} / {mismatch}")
        p(f"{'stored but never handed over (impossible)':44} {stored_unsent:>12}")
        import resource
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        p(f"CPU: harness {me.ru_utime + me.ru_stime:.0f} s, clients and tools {kids.ru_utime + kids.ru_stime:.0f} s "
          f"(the server not counted) over {mono() - self.t0:.0f} s")
        if dropped_runs:
            p("LOUD: runs that dropped events: " + ", ".join(
                f"run {r.rid} {r.kind} dropped {r.summary.get('dropped')} ({r.log_path.name})" for r in dropped_runs))
        if crashed:
            p("runs that ended without a summary line and were not killed with -9: " + ", ".join(
                f"run {r.rid} {r.kind} rc={r.rc} ({r.log_path.name})" for r in crashed))
        if criticals:
            p(f"critical log lines / dead-letter write failures: {len(criticals)}")
            for rid, line in criticals[:10]:
                p(f"   run {rid}: {line}")
        if lost_seqs:
            p(f"first LOST events (of {len(lost_seqs)}; all missing ones, dropped included, in lost-ids.txt):")
            for s in lost_seqs[:15]:
                rid = ev.run_of[s]
                r = runs[rid] if 0 <= rid < len(runs) else None
                p(f"   {ev.event_id(s)} seq {s} src {SRC_NAME.get(ev.src[s])} sent at {ev.t_sent[s]:.1f} s, "
                  f"last run {rid} {r.kind if r else '?'} ({r.fate() if r else '?'}, rc={r.rc if r else '?'}, "
                  f"{r.log_path.name if r else ''})")
        cores = self.crash_report()
        if cores:
            p(f"CORE DUMPS ({len(cores)}): a client or a detached deliverer crashed")
            for c in cores[:10]:
                p("   " + c)
        signalled = [r for r in runs if r.rc is not None and r.rc < 0 and not r.signals]
        if signalled:
            p("runs killed by a signal nobody sent: " + ", ".join(
                f"run {r.rid} {r.kind} {signal.Signals(-r.rc).name} ({r.log_path.name})" for r in signalled))
        if self.anomalies:
            p(f"anomalies ({len(self.anomalies)}):")
            for x in self.anomalies[:30]:
                p("   " + x)
        bad = lost > 0 or count != distinct or (admitted > 0 and not a.full_and_down) or violations or crashed or unknown or mismatch \
            or stored_unsent or cores or signalled or dead_not_at_risk
        p("RESULT: " + ("FAIL" if bad else "PASS") + f"   (logs: {self.logdir})")
        p("=" * 100)
        text = "\n".join(out)
        print(text, flush=True)
        (self.logdir / "report.txt").write_text(text + "\n")
        if missing:
            with open(self.logdir / "lost-ids.txt", "w") as f:
                for s in missing:
                    why = "dropped" if ev.run_of[s] in admitted_runs else "LOST"
                    f.write(f"{ev.event_id(s)} {why} seq={s} src={SRC_NAME.get(ev.src[s])} run={ev.run_of[s]} "
                            f"t={ev.t_sent[s]:.1f}\n")
        self.write_runs_json()
        return 1 if bad else 0

    def foreign_dead_letters(self, run: Run) -> tuple[int, int]:
        """(bad rows logged by `run` for events it was never handed, bad-row lines logged)."""
        foreign = logged = 0
        try:
            with open(run.log_path, "rb") as f:
                for line in f:
                    if b'"msg":"failed to record analytics event"' not in line:
                        continue
                    logged += 1
                    m = re.search(rb'"event_id":"([0-9a-f-]{36})"', line)
                    s = self.events.seq_of(m.group(1).decode()) if m else None
                    if s is None or not run.handed(s):
                        foreign += 1
        except OSError:
            pass
        return foreign, logged

    def fault_rows(self, missing: list[int]):
        ev = self.events
        rows = []
        injs = self.injections
        # Required events lost, by the server fault windows their hand-over time falls in.
        t_missing = [ev.t_sent[s] for s in missing]

        def lost_in(window_injs) -> int:
            n = 0
            for t in t_missing:
                if any(i.start - self.t0 - 5 <= t <= (i.end or i.start) - self.t0 + 30 for i in window_injs):
                    n += 1
            return n

        for kind in SERVER_FAULTS:
            if kind not in self.args.faults:
                continue
            mine = [i for i in injs if i.kind == kind]
            failed = sum(1 for i in mine if not i.ok)
            outcome = self.outcome(kind, mine)
            rows.append((FAULT_TITLE[kind], len(mine), failed, lost_in(mine), "-", outcome))
        runs = self.runs
        for sig in ("SIGTERM", "kill -9"):
            for target in CLIENT_TARGETS:
                if f"client-{target}" not in self.args.faults:
                    continue
                kind = f"{sig} {target}"
                mine = [i for i in injs if i.kind == kind]
                failed = sum(1 for i in mine if not i.ok)
                rids = {i.run_id for i in mine if i.run_id is not None}
                lost_n = sum(1 for s in missing if ev.run_of[s] in rids)
                unacked_n: object = "-"
                if target == "pipe" and sig == "kill -9":
                    flags = ev.flags
                    unacked_n = sum(1 for s in range(ev.next) if ev.run_of[s] in rids
                                    and flags[s] & F_UNACKED and not flags[s] & (F_STORED | F_DEAD | F_REQ))
                outcome = self.client_outcome(target, sig, [runs[r] for r in sorted(rids)])
                rows.append((f"{kind} ({'ingest' if target != 'flush' else 'flush'})", len(mine),
                             failed, lost_n, unacked_n, outcome))
        return rows

    def outcome(self, kind: str, mine: list[Injection]) -> str:
        if not mine:
            return "not injected"
        nested = sum(1 for i in mine if i.nested_in)
        ns = f"; {nested} nested in another fault" if nested else ""
        d = [i.detail for i in mine]

        def rng(key):
            vals = [x[key] for x in d if key in x]
            return f"{min(vals)}-{max(vals)}" if vals else "?"

        if kind == "restart":
            return f"down {rng('down_s')} s{ns}"
        if kind == "kill9":
            return f"start took {rng('start_s')} s{ns}"
        if kind == "sigstop":
            return f"{rng('processes')} processes stopped for {rng('stopped_s')} s{ns}"
        if kind == "terminate":
            return f"{sum(x.get('terminated', 0) for x in d)} backends terminated{ns}"
        if kind == "revoke":
            return f"revoked for {rng('revoked_s')} s{ns}"
        if kind == "constraint":
            at_risk = dead = 0
            for x in d:
                lo, hi = x.get("seq_window", (0, 0))
                for s in range((lo + REJECT_MOD - 1) // REJECT_MOD * REJECT_MOD, hi, REJECT_MOD):
                    at_risk += 1
                    dead += 1 if self.events.flags[s] & F_DEAD else 0
            return f"at-risk events made meanwhile {at_risk}, dead-lettered {dead}{ns}"
        if kind == "ballast":
            return (f"free left {rng('free_kib')} KiB for {rng('ballast_mib')} MiB ballast; "
                    f"client log lines about a full spool: {self.spool_error_lines()}{ns}")
        return ""

    def spool_error_lines(self) -> int:
        """Client log lines (and flush.log lines) that say the spool or dead-letter file could not
        be written: the ballast's effect."""
        needles = (b"disk is full", b"No space left", b"not durable", b"could not spool",
                   b"dead_letter_err", b"cannot spool", b"short write")
        n = 0
        paths = [r.log_path for r in self.runs] + [self.logdir / "flush.log", self.logdir / "flush.log.1"]
        for path in paths:
            try:
                with open(path, "rb") as f:
                    n += sum(1 for line in f if any(x in line for x in needles))
            except OSError:
                pass
        return n

    def client_outcome(self, target: str, sig: str, runs: list[Run]) -> str:
        if not runs:
            return "not injected"
        if target == "flush":
            rcs = collections.Counter(r.rc for r in runs)
            return f"exit {dict(rcs)}"
        summaries = sum(1 for r in runs if r.summary)
        inter = sum(1 for r in runs if r.summary and r.summary.get("interrupted"))
        if sig == "SIGTERM":
            return f"{summaries} summaries ({inter} interrupted), rc {dict(collections.Counter(r.rc for r in runs))}"
        if target == "file":
            return f"{len(runs)} runs killed; each job ingested again whole"
        return f"{len(runs)} runs killed; lines not echoed sent to a new run"

    def write_runs_json(self) -> None:
        with open(self.logdir / "runs.json", "w") as f:
            for r in self.runs:
                f.write(json.dumps({
                    "run": r.rid, "kind": r.kind, "argv": r.argv[3:], "pid": r.popen.pid if r.popen else None,
                    "start_s": round(r.start - self.t0, 2), "end_s": round((r.end or r.start) - self.t0, 2),
                    "t0_wall": self.t0_wall,
                    "rc": r.rc, "signals": [(round(t - self.t0, 2), s, b) for t, s, b in r.signals],
                    "summary": r.summary, "notes": r.notes, "sent": r.n_sent, "echoed": r.n_teed,
                    "log": r.log_path.name}) + "\n")
        with open(self.logdir / "faults.json", "w") as f:
            for i in self.injections:
                f.write(json.dumps({
                    "kind": i.kind, "nested_in": i.nested_in, "start_s": round(i.start - self.t0, 2),
                    "end_s": round((i.end or i.start) - self.t0, 2), "ok": i.ok, "error": i.error,
                    "run": i.run_id, "detail": i.detail}, default=str) + "\n")

    # -- cleanup ------------------------------------------------------------------------------

    def cleanup(self, success: bool = False) -> None:
        if self.cleaned:
            return
        self.cleaned = True
        self.stop_faults.set()
        self.stop_workload.set()
        self.aborting.set()
        try:
            self.sigcont_all()
        except Exception:
            pass
        for _ in range(2):  # twice: a worker may have been starting a client meanwhile
            for r in list(self.runs):
                if r.alive():
                    r.signal(signal.SIGKILL, "harness")
                    try:
                        r.popen.wait(timeout=5)
                    except Exception:
                        pass
            time.sleep(0.5)
        try:
            for p in self.deliverers():
                kill_pid(p, signal.SIGKILL)
        except Exception:
            pass
        if self.server is not None:
            try:
                fam = self.server.family()
                self.server.stop()
                for p in fam:
                    if is_alive(p):
                        kill_pid(p, signal.SIGKILL)
            except Exception:
                pass
        try:
            self.remove_ballast()
        except Exception:
            pass
        if self.mounted:
            for name in ("dead-letter.jsonl", "flush.log", "flush.log.1"):
                p = self.spool_dir / name
                if p.exists() and not (self.logdir / name).exists():
                    try:
                        shutil.copy2(p, self.logdir / name)
                    except OSError:
                        pass
            for argv in (["umount", str(self.spool_mount)], ["umount", "-l", str(self.spool_mount)]):
                try:
                    if subprocess.run(argv, capture_output=True, timeout=30).returncode == 0:
                        self.mounted = False
                        break
                except Exception:
                    pass
                time.sleep(1)
        if success and not self.args.keep:
            for sub in ("pg", "files", "tee", "stored-ids.txt", "bin", "lib", "home", "spoolfs"):
                p = self.work / sub
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p, ignore_errors=True)
                elif p.exists():
                    p.unlink()
        print(f"soak: logs in {self.logdir}" + ("" if success and not self.args.keep else f", work dir {self.work}"),
              flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", default=str(REPO / "build" / "cli" / "trackevent"),
                   help="the trackevent CLI (copied with its libraries into the work dir)")
    p.add_argument("--lib-dir", default=None,
                   help="where libtrackevent.so.0 is "
                        "(default: lib/ beside the binary's directory, else what ldd finds)")
    p.add_argument("--minutes", type=float, default=20)
    p.add_argument("--events", type=int, default=5_000_000, help="events to make in all")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--max-rate", type=float, default=5000, help="cap on events per second")
    p.add_argument("--workdir", default=None, help="default: a new /tmp/trackevent-soak.*")
    p.add_argument("--log-dir", default=None, help="default: WORKDIR/logs")
    p.add_argument("--keep", action="store_true", help="keep the work dir (pg data, inputs, tee files)")
    p.add_argument("--pg-script", default=str(REPO / "scripts" / "pg-test-server"))
    p.add_argument("--spool-mb", type=int, default=0, help="tmpfs size for the spool (default: by rate)")
    p.add_argument("--no-tmpfs", action="store_true")
    p.add_argument("--ballast-room", type=int, default=64,
                   help="at most this many KiB left free by the ballast (0 to this, at random)")
    p.add_argument("--full-and-down", action="store_true",
                   help="let a full spool overlap outages and the constraint: trackevent then drops "
                        "events by design (exit 74); the run passes if every missing event is one a "
                        "client counted as dropped")
    p.add_argument("--faults", default=",".join(SERVER_FAULTS + [f"client-{t}" for t in CLIENT_TARGETS]),
                   help="comma-separated subset of: " + ", ".join(SERVER_FAULTS + [f"client-{t}" for t in CLIENT_TARGETS]))
    p.add_argument("--fault-gap", type=float, nargs=2, default=(4, 15), metavar=("MIN", "MAX"),
                   help="seconds between server faults")
    p.add_argument("--client-gap", type=float, nargs=2, default=(5, 15), metavar=("MIN", "MAX"),
                   help="seconds between client signals")
    p.add_argument("--nest", type=float, default=0.35, help="chance of a fault inside a state fault")
    p.add_argument("--sigstop", type=float, nargs=2, default=(2, 6), metavar=("MIN", "MAX"))
    p.add_argument("--file-share", type=float, default=0.3)
    p.add_argument("--durable-share", type=float, default=0.3, help="of the piped events")
    p.add_argument("--send-rate", type=float, default=1.0, help="send --background per second")
    p.add_argument("--file-every", type=float, default=15, help="seconds between file ingests")
    p.add_argument("--flush-every", type=float, nargs=2, default=(2, 6), metavar=("MIN", "MAX"))
    p.add_argument("--rotate", type=float, nargs=2, default=(30, 90), metavar=("MIN", "MAX"),
                   help="seconds a pipe client lives before EOF (if no fault ends it first)")
    p.add_argument("--flush-timeout", type=float, default=10, help="ingest --flush-timeout")
    p.add_argument("--stall", type=float, default=60, help="seconds a pipe client may read nothing")
    p.add_argument("--file-timeout", type=float, default=600)
    p.add_argument("--flush-run-timeout", type=float, default=120)
    p.add_argument("--final-timeout", type=float, default=900, help="bound on the end phase")
    p.add_argument("--status-every", type=float, default=30)
    p.add_argument("--async-commit", action="store_true",
                   help="leave synchronous_commit off for the client role (expect losses at kill -9)")
    p.add_argument("--no-cores", action="store_true", help="do not turn core dumps on for clients")
    p.add_argument("--client-log-level", default="", help="--log-level for the clients (e.g. debug)")
    p.add_argument("--client-log-kinds", default="pipe,durable,file,flush,send,final-flush",
                   help="which client kinds get --client-log-level")
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args(argv)
    if a.seed is None:
        a.seed = random.randrange(1, 1 << 31)
    a.faults = [f.strip() for f in a.faults.split(",") if f.strip()]
    a.client_log_kinds = [k.strip() for k in a.client_log_kinds.split(",") if k.strip()]
    known = set(SERVER_FAULTS) | {f"client-{t}" for t in CLIENT_TARGETS}
    bad = [f for f in a.faults if f not in known]
    if bad:
        p.error(f"unknown faults: {bad}")
    if a.spool_mb <= 0:
        rate = min(a.events / (a.minutes * 60), a.max_rate)
        a.spool_mb = int(min(1024, max(64, rate * 90 * 600 / (1 << 20))))
    return a


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    print(f"soak: seed {args.seed}", flush=True)
    h = Harness(args)
    atexit.register(h.cleanup)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    status = 2
    try:
        h.soak()
        status = h.verify()
    except KeyboardInterrupt:
        print("soak: interrupted; cleaning up", flush=True)
        status = 130
    except HarnessError as e:
        print(f"soak: harness error: {e}", flush=True)
        h.log(f"harness error: {e}")
        status = 2
    except Exception:
        traceback.print_exc()
        status = 2
    finally:
        # Cleanup is bounded; a second Ctrl-C must not cut it short (servers, mounts, processes).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        try:
            h.write_runs_json()
        except Exception:
            pass
        h.cleanup(success=status == 0)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

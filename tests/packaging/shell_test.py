#!/usr/bin/env python3
"""The CLI as a shell user meets it: completion scripts, the man page, the progress line.

Run: shell_test.py CHECK TRACKEVENT_BINARY SOURCE_DIR
CHECK is one of: completions-uptodate, completions-coverage, completions-load-bash,
completions-load-zsh, completions-load-fish, completions-bash-complete, man-coverage, progress.
Exit 0: pass, 1: fail, 77: skipped (a tool is missing; CTest SKIP_RETURN_CODE).
"""
import fcntl
import json
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import termios
import time

SKIP = 77
SCRIPTS = {"bash": "trackevent.bash", "zsh": "_trackevent", "fish": "trackevent.fish"}


class Failure(Exception):
    pass


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=60, **kw)


def parse_help(text):
    """(options, subcommands) listed by a CLI11 --help page."""
    options, subcommands, section = set(), [], None
    for line in text.splitlines():
        if re.match(r"^\S.*:$", line):
            section = line[:-1]
            continue
        m = re.match(r"^  (-[^\s{]+)", line)
        if m and section == "Options":
            for name in m.group(1).split(","):
                options.add(name)
            continue
        m = re.match(r"^  ([a-z][\w-]*)\s", line)
        if m and section == "Subcommands":
            subcommands.append(m.group(1))
    return options, subcommands


def cli_surface(binary):
    """{command: options}, '' for the program itself, from every --help page."""
    res = run([binary, "--help"])
    if res.returncode != 0:
        raise Failure(f"{binary} --help exited {res.returncode}: {res.stderr}")
    options, subcommands = parse_help(res.stdout)
    surface = {"": options}
    for sub in subcommands:
        res = run([binary, sub, "--help"])
        if res.returncode != 0:
            raise Failure(f"{binary} {sub} --help exited {res.returncode}")
        surface[sub] = parse_help(res.stdout)[0]
    if len(surface) < 2 or "--db" not in surface[""] or "--tee" not in surface.get("ingest", ()):
        raise Failure(f"could not parse the --help output: {surface}")
    return surface


def nested_commands(binary, surface):
    """[(command, subcommand)] for the subcommands' own subcommands (`events lint`)."""
    nested = []
    for command in surface:
        if command:
            res = run([binary, command, "--help"])
            nested += [(command, sub) for sub in parse_help(res.stdout)[1]]
    if ("events", "lint") not in nested:
        raise Failure(f"could not find `events lint` in the --help output: {nested}")
    return nested


def regen_hint(binary):
    return f"regenerate them with: scripts/gen-completions {binary}"


def check_completions_uptodate(binary, src):
    stale = []
    for shell, name in SCRIPTS.items():
        path = os.path.join(src, "completions", name)
        res = run([binary, "completions", shell])
        if res.returncode != 0:
            raise Failure(f"trackevent completions {shell} exited {res.returncode}: {res.stderr}")
        try:
            with open(path) as f:
                checked_in = f.read()
        except FileNotFoundError:
            checked_in = None
        if checked_in != res.stdout:
            stale.append(f"completions/{name}")
    if stale:
        raise Failure(f"{', '.join(stale)} differ from what `trackevent completions SHELL` prints "
                      f"now (an option or subcommand changed); {regen_hint(binary)}")
    print("completion scripts are up to date")


def check_completions_coverage(binary, src):
    surface = cli_surface(binary)
    nested = nested_commands(binary, surface)
    missing = []
    for shell, name in SCRIPTS.items():
        with open(os.path.join(src, "completions", name)) as f:
            text = f.read()
        for command, options in surface.items():
            if command and not re.search(rf"(?<![\w-]){re.escape(command)}(?![\w-])", text):
                missing.append(f"{name}: subcommand {command}")
            for opt in options:
                # bash/zsh spell options out; fish as `-l name` / `-s x`.
                if shell == "fish":
                    flag = f"-l {opt[2:]}" if opt.startswith("--") else f"-s {opt[1:]}"
                    found = re.search(rf"{re.escape(flag)}(?![\w-])", text)
                else:
                    found = re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", text)
                if not found:
                    missing.append(f"{name}: {command or 'trackevent'} {opt}")
        for command, sub in nested:
            if not re.search(rf"(?<![\w-]){re.escape(sub)}(?![\w-])", text):
                missing.append(f"{name}: subcommand {command} {sub}")
    if missing:
        raise Failure("missing from the completion scripts:\n  " + "\n  ".join(missing) +
                      f"\n{regen_hint(binary)}")
    count = sum(len(o) for o in surface.values())
    print(f"{len(surface) - 1} subcommands and {count} options in all three scripts")


def need(tool):
    path = shutil.which(tool)
    if not path:
        print(f"SKIP: {tool} is not installed (scripts/setup installs it)")
        sys.exit(SKIP)
    return path


def check_load(shell, src):
    need(shell)
    script = os.path.join(src, "completions", SCRIPTS[shell])
    if shell == "bash":
        bc = "/usr/share/bash-completion/bash_completion"
        if not os.path.exists(bc):
            print("SKIP: bash-completion is not installed")
            sys.exit(SKIP)
        res = run(["bash", "-c", f'source {bc}; source "$1" && complete -p trackevent',
                   "bash", script])
        expect = "complete -F _trackevent trackevent"
    elif shell == "zsh":
        with tempfile.TemporaryDirectory() as home:
            res = run(["zsh", "-f", "-c",
                       'autoload -U compinit && compinit -u -d "$2/.zcompdump" && source "$1" '
                       '&& print -r -- "$_comps[trackevent]"', "zsh", script, home],
                      env={**os.environ, "HOME": home})
        expect = "_trackevent"
    else:
        with tempfile.TemporaryDirectory() as home:
            res = run(["fish", "--no-config", "-c",
                       'source $argv[1]; and complete -C"trackevent ing"', script],
                      env={**os.environ, "HOME": home, "XDG_CONFIG_HOME": home,
                           "XDG_DATA_HOME": home})
        expect = "ingest"
    if res.returncode != 0 or res.stderr.strip() or expect not in res.stdout:
        raise Failure(f"{shell} could not load {script} (exit {res.returncode})\n"
                      f"stdout: {res.stdout}\nstderr: {res.stderr}")
    print(f"{shell} loads {SCRIPTS[shell]}: {res.stdout.strip().splitlines()[0]}")


def check_bash_complete(binary, src):
    need("bash")
    script = os.path.join(src, "completions", SCRIPTS["bash"])
    catalog = os.path.join(src, "examples", "cpp", "events.json")
    plan = os.path.join(src, "examples", "plan.json")
    cases = [
        (["trackevent", "ing"], {"ingest"}),
        (["trackevent", "ingest", "--ba"], {"--batch-size"}),
        (["trackevent", "--log-format", "t"], {"text"}),
        (["trackevent", "--log-format", "=", ""], {"json", "text"}),
        (["trackevent", "-q", "ingest", "--on-full", ""], {"spool", "drop", "block"}),
        (["trackevent", "flush", "--"], {"--help", "--timeout", "--batch-size", "--exclusive"}),
        (["trackevent", "completions", ""], {"bash", "zsh", "fish"}),
        # A subcommand's own subcommand, and then its files.
        (["trackevent", "events", ""], {"lint"}),
        (["trackevent", "events", "lint", plan[:-3]], {plan}),
        ([binary, "--catalog", catalog, "send", "--event", ""],
         {"dataset.uploaded", "backup.completed"}),
        # The tracking plan: `-m KEY=` offers the keys of the chosen event's schema.
        ([binary, "--catalog", plan, "send", "--event", "backup.completed", "-m", ""],
         {"host=", "bytes=", "duration_s=", "incremental="}),
        ([binary, "--catalog", plan, "send", "--event", "backup.completed", "-m", "b"],
         {"bytes="}),
    ]
    bc = "/usr/share/bash-completion/bash_completion"
    prelude = f"source {bc}; " if os.path.exists(bc) else ""
    failures = []
    for words, expected in cases:
        program = (prelude + 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); '
                   'COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}; _trackevent; '
                   'printf "%s\\n" "${COMPREPLY[@]}"')
        res = run(["bash", "-c", program, "bash", script, *words])
        got = set(filter(None, res.stdout.splitlines()))
        if res.returncode != 0 or got != expected:
            failures.append(f"{' '.join(words)}<TAB>: expected {sorted(expected)}, got "
                            f"{sorted(got)} (exit {res.returncode}, stderr {res.stderr.strip()!r})")
        else:
            print(f"ok: {' '.join(words[1:])}<TAB> -> {' '.join(sorted(got))}")
    if failures:
        raise Failure("\n".join(failures))


def check_man(binary, src):
    page = os.path.join(src, "man", "trackevent.1")
    with open(page) as f:
        text = f.read()
    # In roff source a '-' in an option name is written '\-'.
    plain = text.replace("\\-", "-").replace("\\&", "")
    surface = cli_surface(binary)
    missing = []
    for command, options in surface.items():
        if command and not re.search(rf"\.SS {re.escape(command)}\b", plain):
            missing.append(f"no .SS section for the command {command}")
        for opt in options:
            if opt.startswith("--") and not re.search(rf"{re.escape(opt)}(?![\w-])", plain):
                missing.append(f"{command or 'global'} option {opt}")
    for command, sub in nested_commands(binary, surface):
        if not re.search(rf"\.SS {re.escape(command)} {re.escape(sub)}\b", plain):
            missing.append(f"no .SS section for the command {command} {sub}")
    if missing:
        raise Failure(f"{page} lacks:\n  " + "\n  ".join(missing))
    print(f"every long option of {len(surface)} --help pages is in trackevent.1")
    if shutil.which("man"):
        res = subprocess.run(["man", "-l", page], capture_output=True, timeout=60,
                             env={**os.environ, "MANPAGER": "cat", "PAGER": "cat",
                                  "MANWIDTH": "80"})
        if res.returncode != 0 or b"EXIT STATUS" not in res.stdout:
            raise Failure(f"man -l {page} failed (exit {res.returncode}): {res.stderr!r}")
        if res.stderr.strip():
            raise Failure(f"man -l {page} warned: {res.stderr.decode(errors='replace')}")
        print("man -l renders it")
    else:
        print("man is not installed; skipped man -l")


# --- progress ------------------------------------------------------------------------------------

def make_input(directory, lines=40000, bad_every=10000):
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "examples",
                           "events.jsonl")) as f:
        good = [line for line in f.read().splitlines() if line.strip()]
    path = os.path.join(directory, "input.jsonl")
    with open(path, "w") as f:
        for i in range(lines):
            if i % bad_every == bad_every - 1:
                f.write('{"org_id":0,"event_name":"bad"}\n')
            else:
                f.write(good[i % len(good)] + "\n")
    return path


def cli_env(directory):
    env = {k: v for k, v in os.environ.items()
           if k not in ("TRACKEVENT_DATABASE_URL", "DATABASE_URL", "TRACKEVENT_CATALOG",
                        "NO_COLOR")}
    env.update(XDG_DATA_HOME=os.path.join(directory, "data"),
               XDG_STATE_HOME=os.path.join(directory, "state"), HOME=directory)
    return env


# A small queue and batch make the file read only as fast as SQLite commits (backpressure), so
# the run lasts long enough for several redraws.
SLOW = ["--queue-size", "8", "--batch-size", "8", "--flush-interval", "1"]


def run_on_pty(args, env):
    """Runs with stderr on a pseudo-terminal (stdout a pipe); returns (status, stderr bytes)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 160, 0, 0))
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=slave, env=env)
    os.close(slave)
    out = bytearray()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    return proc.wait(timeout=30), bytes(out)


def log_lines(raw):
    """The complete lines in terminal output, each reduced to what is left after its last '\\r'
    (the progress line is wiped with '\\r' before a log line is written)."""
    text = raw.decode(errors="replace").replace("\r\n", "\n")
    return [line.split("\r")[-1] for line in text.split("\n")[:-1]]


def check_progress(binary, src):
    del src
    failures = []
    with tempfile.TemporaryDirectory() as directory:
        data = make_input(directory)
        env = cli_env(directory)

        # 1. A terminal: progress is drawn, and every log line is still one whole JSON object.
        status, raw = run_on_pty([binary, "ingest", *SLOW, data], env)
        text = raw.decode(errors="replace")
        if status != 65:
            failures.append(f"tty run: exit {status}, expected 65 (four rejected lines)")
        if "lines/s" not in text or "ETA" not in text or "\r" not in text.replace("\r\n", ""):
            failures.append(f"tty run: no progress line on stderr: {text[:400]!r}")
        logs = [line for line in log_lines(raw) if line.strip()]
        for line in logs:
            try:
                json.loads(line)
            except ValueError:
                failures.append(f"tty run: log line broken by the progress line: {line!r}")
        if sum('"rejected event"' in line for line in logs) != 4:
            failures.append(f"tty run: expected 4 rejection lines, got {logs}")
        if not any('"summary"' in line for line in logs):
            failures.append("tty run: no summary line")
        redraws = text.count("lines/s")
        print(f"tty: {redraws} progress redraws, {len(logs)} log lines intact")

        # 2. A pipe: never.
        res = subprocess.run([binary, "ingest", *SLOW, data], capture_output=True, env=env,
                             timeout=120)
        err = res.stderr.decode(errors="replace")
        if "lines/s" in err or "\r" in err:
            failures.append(f"pipe run: progress output on a pipe: {err[:300]!r}")
        for line in err.splitlines():
            try:
                json.loads(line)
            except ValueError:
                failures.append(f"pipe run: not a JSON log line: {line!r}")
        print("pipe: no progress")

        # 3. A terminal but -q, or --no-progress: never.
        for extra in (["-q", "ingest"], ["ingest", "--no-progress"]):
            status, raw = run_on_pty([binary, *extra, *SLOW, data], env)
            if b"lines/s" in raw:
                failures.append(f"{' '.join(extra)} on a tty: progress shown")
        print("-q and --no-progress: no progress")

        # 4. --progress forces it on a pipe (stdin, so no size and no ETA); text logs stay whole.
        with open(data, "rb") as f:
            res = subprocess.run(f"cat | {binary} --log-format text ingest --progress "
                                 + " ".join(SLOW), shell=True, stdin=f, capture_output=True,
                                 env=env, timeout=120)
        err = res.stderr.decode(errors="replace")
        if "lines/s" not in err:
            failures.append(f"--progress on a pipe: no progress line: {err[:300]!r}")
        if "ETA" in err:
            failures.append("--progress on stdin: an ETA without a known size")
        logs = [line for line in log_lines(res.stderr) if line.strip()]
        if not all(re.match(r"^\d{4}-\d\d-\d\dT\S+ (INFO |WARN |ERROR) ", line) for line in logs):
            failures.append(f"--progress with text logs: broken lines {logs}")
        print("--progress: forced on a pipe, without ETA")
    if failures:
        raise Failure("\n".join(failures))


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    check, binary, src = sys.argv[1:]
    checks = {
        "completions-uptodate": lambda: check_completions_uptodate(binary, src),
        "completions-coverage": lambda: check_completions_coverage(binary, src),
        "completions-load-bash": lambda: check_load("bash", src),
        "completions-load-zsh": lambda: check_load("zsh", src),
        "completions-load-fish": lambda: check_load("fish", src),
        "completions-bash-complete": lambda: check_bash_complete(binary, src),
        "man-coverage": lambda: check_man(binary, src),
        "progress": lambda: check_progress(binary, src),
    }
    if check not in checks:
        print(f"unknown check {check}", file=sys.stderr)
        return 2
    try:
        checks[check]()
    except Failure as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

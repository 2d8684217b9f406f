#!/usr/bin/env bash
# Installs the build into a temporary prefix and checks it as a user of the package would:
# the GNU install layout, the SONAME, that private dependencies do not leak, and that consumers
# built with find_package(trackevent) and with pkg-config link, run and store an event.
#
# Environment (set by tests/packaging/CMakeLists.txt): TE_BUILD_DIR TE_SOURCE_DIR TE_CMAKE TE_CXX
# TE_CC TE_BINDIR TE_LIBDIR TE_INCLUDEDIR TE_DATADIR TE_MANDIR TE_CMAKEDIR TE_VERSION
set -euo pipefail
for v in TE_BUILD_DIR TE_SOURCE_DIR TE_CMAKE TE_CXX TE_CC TE_BINDIR TE_LIBDIR TE_INCLUDEDIR \
         TE_DATADIR TE_MANDIR TE_CMAKEDIR TE_VERSION; do
  [[ -n ${!v:-} ]] || { echo "install_test: $v is not set" >&2; exit 2; }
done
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/trackevent-install.XXXXXX")
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
step() { echo "== $*"; }
# Runs a command quietly; on failure shows its output and counts a failure.
run() {
  local what=$1; shift
  if ! "$@" >"$work/last.log" 2>&1; then
    cat "$work/last.log" >&2
    fail "$what"
    return 1
  fi
}
count_rows() {  # count_rows DB: rows in analytics_events, or "error"
  python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT count(*) FROM analytics_events").fetchone()[0])' "$1" 2>/dev/null || echo error
}
expect_file() { [[ -f $1 ]] || fail "missing $1"; }

# The environment must not pick the database or spool for the consumers.
unset TRACKEVENT_DATABASE_URL DATABASE_URL TRACKEVENT_SPOOL_DIR
export XDG_DATA_HOME=$work/xdg-data XDG_STATE_HOME=$work/xdg-state

step "cmake --install $TE_BUILD_DIR --prefix $prefix"
run "cmake --install" "$TE_CMAKE" --install "$TE_BUILD_DIR" --prefix "$prefix" || exit 1

step "layout"
major=${TE_VERSION%%.*}
libdir=$prefix/$TE_LIBDIR
[[ -x $prefix/$TE_BINDIR/trackevent ]] || fail "missing executable $prefix/$TE_BINDIR/trackevent"
expect_file "$libdir/libtrackevent.so.$TE_VERSION"
[[ -L $libdir/libtrackevent.so.$major ]] || fail "libtrackevent.so.$major is not a symlink"
[[ -L $libdir/libtrackevent.so ]] || fail "libtrackevent.so (namelink) is not a symlink"
for h in "$TE_SOURCE_DIR"/lib/include/trackevent/*; do
  expect_file "$prefix/$TE_INCLUDEDIR/trackevent/$(basename "$h")"
done
expect_file "$prefix/$TE_INCLUDEDIR/trackevent/trackevent.h"
expect_file "$libdir/pkgconfig/trackevent.pc"
for f in trackeventConfig.cmake trackeventConfigVersion.cmake trackeventTargets.cmake \
         TrackeventCatalog.cmake TrackeventCatalogGen.cmake; do
  expect_file "$prefix/$TE_CMAKEDIR/$f"
done
shopt -s nullglob
for page in "$TE_SOURCE_DIR"/man/*.[13]; do
  expect_file "$prefix/$TE_MANDIR/man${page##*.}/$(basename "$page")"
done
shopt -u nullglob
[[ ! -f $TE_SOURCE_DIR/completions/trackevent.bash ]] ||
  expect_file "$prefix/$TE_DATADIR/bash-completion/completions/trackevent"
[[ ! -f $TE_SOURCE_DIR/completions/_trackevent ]] ||
  expect_file "$prefix/$TE_DATADIR/zsh/vendor-completions/_trackevent"
[[ ! -f $TE_SOURCE_DIR/completions/trackevent.fish ]] ||
  expect_file "$prefix/$TE_DATADIR/fish/vendor_completions.d/trackevent.fish"
[[ ! -f $TE_SOURCE_DIR/schema/events.json ]] ||
  expect_file "$prefix/$TE_DATADIR/trackevent/events.json"

step "SONAME"
soname=$(readelf -d "$libdir/libtrackevent.so.$TE_VERSION" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[[ $soname == "libtrackevent.so.$major" ]] || fail "SONAME is '$soname', expected libtrackevent.so.$major"

step "PostgreSQL from the prefix"
# libpq and libpqxx are ordinary dependencies of the library (no module, no dlopen): migrate
# finds them and gets as far as connecting, which fails here since no server listens.
needed=$(readelf -d "$libdir/libtrackevent.so.$TE_VERSION" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
[[ $needed == *libpq.so* && $needed == *libpqxx* ]] || fail "libtrackevent.so needs: $needed"
out=$(env -u LD_LIBRARY_PATH "$prefix/$TE_BINDIR/trackevent" --log-format text \
  --db "postgresql:///trackevent?host=$work/no-such-socket-dir&connect_timeout=2" migrate 2>&1) || true
[[ $out == *"cannot connect"* ]] || fail "migrate from the prefix did not reach libpq: $out"

step "no private dependency or build path leaks into the package files"
# Prints the private libraries named among link arguments (by basename, so that the random temp
# directory names cannot match by accident).
private_libs() {
  local arg
  for arg in $1; do
    arg=${arg##*/}
    if [[ $arg =~ ^(-l)?(lib)?(pqxx|pq|sqlite3|spdlog|fmtd?|simdjson)([.-]|$) || $arg == *::* ]]; then
      echo "$arg"
    fi
  done
}
# What consumers link: only the PUBLIC dependencies. (IMPORTED_LINK_DEPENDENT_LIBRARIES may name
# the private shared libraries: CMake uses it only for -rpath-link, never on the link line.)
iface=$(grep -h 'INTERFACE_LINK_LIBRARIES' "$prefix/$TE_CMAKEDIR"/trackeventTargets*.cmake || true)
[[ $iface == *'"nlohmann_json::nlohmann_json;Threads::Threads"'* ]] ||
  fail "exported INTERFACE_LINK_LIBRARIES is not nlohmann_json + Threads: $iface"
if grep -Fn -e "$TE_BUILD_DIR" -e "$TE_SOURCE_DIR" "$prefix/$TE_CMAKEDIR"/*.cmake "$libdir/pkgconfig/trackevent.pc"; then
  fail "build or source paths in the installed package files"
fi

step "pkg-config"
export PKG_CONFIG_PATH=$libdir/pkgconfig
pc_libs=$(pkg-config --libs trackevent) || fail "pkg-config --libs trackevent"
pc_cflags=$(pkg-config --cflags trackevent) || fail "pkg-config --cflags trackevent"
[[ -z $(private_libs "$pc_libs") ]] || fail "private libraries in pkg-config --libs: $pc_libs"
[[ $(pkg-config --variable=prefix trackevent) == "$prefix" ]] || fail "pkg-config prefix is not $prefix"
[[ $(pkg-config --modversion trackevent) == "$TE_VERSION" ]] || fail "pkg-config version"

step "each installed header compiles on its own against the prefix"
# Catches a public header that includes a private one (lib/src) or forgets an #include.
for h in "$prefix/$TE_INCLUDEDIR"/trackevent/*.hpp "$prefix/$TE_INCLUDEDIR"/trackevent/trackevent.h; do
  rel=trackevent/$(basename "$h")
  printf '#include <%s>\n' "$rel" >"$work/header.cpp"
  # shellcheck disable=SC2086
  run "$rel compiles as C++20" "$TE_CXX" -std=c++20 -Wall -Wextra -Wpedantic -Wshadow -Werror \
    -fsyntax-only $pc_cflags "$work/header.cpp" || true
done
printf '#include <trackevent/trackevent.h>\n' >"$work/header.c"
# shellcheck disable=SC2086
run "trackevent.h compiles as C99" "$TE_CC" -std=c99 -Wall -Wextra -Wpedantic -Werror \
  -fsyntax-only $pc_cflags "$work/header.c" || true

step "installed CLI runs without LD_LIBRARY_PATH (relative RPATH)"
run "trackevent --help from the prefix" env -u LD_LIBRARY_PATH "$prefix/$TE_BINDIR/trackevent" --help

# Builds and runs one CMake consumer project from a copy (the catalog test edits it).
cmake_consumer() {
  local name=$1 src=$2 bin=$3 rows=$4
  cp -r "$src" "$work/$name"
  run "$name: configure" "$TE_CMAKE" -S "$work/$name" -B "$work/$name/build" \
    -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_COMPILER="$TE_CXX" -DCMAKE_PREFIX_PATH="$prefix" || return 1
  run "$name: build" "$TE_CMAKE" --build "$work/$name/build" || return 1
  mkdir -p "$work/$name-spool" && chmod 0700 "$work/$name-spool"
  run "$name: run" env LD_LIBRARY_PATH="$libdir" "$work/$name/build/$bin" "$work/$name.db" "$work/$name-spool" || return 1
  # The consumer's link command names libtrackevent and no private dependency of it.
  local link; link=$(cat "$work/$name/build/CMakeFiles/$bin.dir/link.txt")
  [[ $link == *libtrackevent.so* ]] || fail "$name: link line lacks libtrackevent.so: $link"
  [[ -z $(private_libs "$link") ]] || fail "$name: private library on the link line: $link"
  local n; n=$(count_rows "$work/$name.db")
  [[ $n == "$rows" ]] || fail "$name: $n rows in the database, expected $rows"
}

step "find_package consumer"
if cmake_consumer consumer_cmake "$here/consumer_cmake" consumer 1; then
  gen=$work/consumer_cmake/build/trackevent_catalog/consumer/consumer_events.hpp
  grep -q 'consumer_built = "consumer.built"' "$gen" || fail "catalog header lacks consumer_built"
  grep -q '/// The find_package consumer ran.' "$gen" || fail "catalog header lacks the description"
  # A typo in an event name is a compile error.
  printf '#include "consumer_events.hpp"\nauto x = consumer::events::consumer_biult;\n' >"$work/typo.cpp"
  if "$TE_CXX" -std=c++20 -fsyntax-only -I"$(dirname "$gen")" "$work/typo.cpp" 2>/dev/null; then
    fail "a misspelt event constant compiled"
  fi
  # The tracking plan in the compiler: a misspelt field, or a string where the schema says
  # integer, does not compile; the same line spelt right does (so the failures are these).
  typed() {
    printf '#include "consumer_events.hpp"\nvoid f(trackevent::Tracker& t) {\n  track(t, 1, 2, consumer::events::ConsumerBuilt{%s});\n}\n' "$1" >"$work/typed.cpp"
    "$TE_CXX" -std=c++20 -fsyntax-only -I"$(dirname "$gen")" -I"$prefix/$TE_INCLUDEDIR" "$work/typed.cpp" 2>"$work/typed.err"
  }
  typed '.attempt = 2, .via = "x"' || fail "the typed struct, spelt right, does not compile: $(cat "$work/typed.err")"
  if typed '.attempt = 2, .vai = "x"'; then fail "a misspelt metadata field compiled"; fi
  grep -q "vai" "$work/typed.err" || fail "the misspelt field's error does not name it: $(cat "$work/typed.err")"
  if typed '.attempt = "2", .via = "x"'; then fail "a string for an integer field compiled"; fi
  # Editing the catalog regenerates the header on the next build.
  sleep 1
  printf '{"events":[{"name":"consumer.built","metadata":{"properties":{"via":{"type":"string"},"attempt":{"type":"integer"}}}},{"name":"consumer.added_later","description":"new"}]}\n' \
    >"$work/consumer_cmake/events.json"
  run "consumer_cmake: rebuild after a catalog change" "$TE_CMAKE" --build "$work/consumer_cmake/build"
  grep -q 'consumer_added_later = "consumer.added_later"' "$gen" || fail "header not regenerated"
fi

step "examples/cpp against the prefix"
cmake_consumer example_cpp "$TE_SOURCE_DIR/examples/cpp" trackevent_example 2 || true

step "pkg-config consumers (C++ and C)"
# The headers need C++20; pkg-config carries no -std flag (it would break C consumers).
# shellcheck disable=SC2086  # word splitting of pkg-config output is intended
if run "pkg-config C++ consumer: build" "$TE_CXX" -std=c++20 -o "$work/pc_consumer" \
    "$here/consumer_pkgconfig/main.cpp" $pc_cflags $pc_libs; then
  mkdir -p "$work/pc-spool" && chmod 0700 "$work/pc-spool"
  if run "pkg-config C++ consumer: run" env LD_LIBRARY_PATH="$libdir" "$work/pc_consumer" "$work/pc.db" "$work/pc-spool"; then
    n=$(count_rows "$work/pc.db"); [[ $n == 1 ]] || fail "pkg-config C++ consumer: $n rows, expected 1"
  fi
fi
# shellcheck disable=SC2086
if run "pkg-config C consumer: build" "$TE_CC" -std=c99 -Wall -Wextra -Wpedantic -Werror \
    -o "$work/pc_consumer_c" "$here/consumer_pkgconfig/main.c" $pc_cflags $pc_libs; then
  mkdir -p "$work/pcc-spool" && chmod 0700 "$work/pcc-spool"
  if run "pkg-config C consumer: run" env LD_LIBRARY_PATH="$libdir" "$work/pc_consumer_c" "$work/pcc.db" "$work/pcc-spool"; then
    n=$(count_rows "$work/pcc.db"); [[ $n == 1 ]] || fail "pkg-config C consumer: $n rows, expected 1"
  fi
fi

if ((failures)); then
  echo "install_test: $failures failure(s)" >&2
  exit 1
fi
echo "install_test: ok"

#!/usr/bin/env bash
# deb_test.sh: builds the Debian packages with `cpack -G DEB` (cmake/Packaging.cmake) from the
# finished build in TE_BUILD_DIR and checks, for each of trackevent, libtrackevent0 and
# libtrackevent-dev: the files it holds (and what must not be there), its dependencies (from
# dpkg-shlibdeps: real shared-library needs, no libtrackevent for the statically linked CLI),
# stripped binaries without RPATH, and `lintian` with no errors when lintian is installed.
# Exit 77 (skip) without dpkg-deb or dpkg-shlibdeps.
set -euo pipefail
: "${TE_BUILD_DIR:?}" "${TE_VERSION:?}"
cpack=${TE_CPACK:-cpack}
for tool in dpkg-deb dpkg-shlibdeps "$cpack"; do
  command -v "$tool" >/dev/null || { echo "deb_test: $tool missing; skipped"; exit 77; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "deb_test: FAIL: $*" >&2; exit 1; }
step() { echo "deb_test: $*"; }

step "cpack -G DEB"
(cd "$TE_BUILD_DIR" && "$cpack" -G DEB -B "$work/out") >"$work/cpack.log" 2>&1 ||
  { cat "$work/cpack.log"; fail "cpack failed"; }
arch=$(dpkg --print-architecture)
ver="$TE_VERSION-1"
cli="$work/out/trackevent_${ver}_${arch}.deb"
lib="$work/out/libtrackevent0_${ver}_${arch}.deb"
dev="$work/out/libtrackevent-dev_${ver}_${arch}.deb"
for deb in "$cli" "$lib" "$dev"; do
  [[ -f $deb ]] || { ls -la "$work/out"; fail "missing ${deb##*/}"; }
done
[[ $(ls "$work/out"/*.deb | wc -l) -eq 3 ]] || fail "expected exactly three packages: $(ls "$work/out")"

files() { dpkg-deb -c "$1" | awk '{print $6}' | sed 's|^\./|/|'; }
field() { dpkg-deb -f "$1" "$2"; }
has() { grep -qxF -- "$2" <<<"$1" || fail "${3}: missing $2"; }
hasnt() { ! grep -qE -- "$2" <<<"$1" || fail "${3}: must not hold $(grep -E -- "$2" <<<"$1" | head -1)"; }

step "trackevent: the CLI, its man page, completions, the catalog"
f=$(files "$cli")
has "$f" /usr/bin/trackevent trackevent
has "$f" /usr/share/man/man1/trackevent.1.gz trackevent
has "$f" /usr/share/bash-completion/completions/trackevent trackevent
has "$f" /usr/share/zsh/vendor-completions/_trackevent trackevent
has "$f" /usr/share/fish/vendor_completions.d/trackevent.fish trackevent
has "$f" /usr/share/doc/trackevent/copyright trackevent
hasnt "$f" '\.so|/include/|\.pc$|cmake' trackevent
[[ $(field "$cli" Package) == trackevent ]] || fail "trackevent: Package field"
deps=$(field "$cli" Depends)
step "  Depends: $deps"
for need in libc6 libpq5 libsqlite3-0 libstdc++6 libpqxx; do
  grep -q "$need" <<<"$deps" || fail "trackevent: Depends lacks $need"
done
! grep -q libtrackevent <<<"$deps" || fail "trackevent: the CLI links the library statically"

step "libtrackevent0: the shared library, shlibs, the ldconfig trigger"
f=$(files "$lib")
grep -qE "^/usr/lib/(.*/)?libtrackevent\.so\.0$" <<<"$f" || fail "libtrackevent0: no libtrackevent.so.0"
grep -qE "^/usr/lib/(.*/)?libtrackevent\.so\.$TE_VERSION$" <<<"$f" ||
  fail "libtrackevent0: no libtrackevent.so.$TE_VERSION"
hasnt "$f" 'libtrackevent\.so$|/include/|/bin/' libtrackevent0
has "$f" /usr/share/doc/libtrackevent0/copyright libtrackevent0
mkdir "$work/ctl"
dpkg-deb -e "$lib" "$work/ctl"
grep -q "^libtrackevent 0 libtrackevent0" "$work/ctl/shlibs" || fail "libtrackevent0: shlibs"
grep -qx "activate-noawait ldconfig" "$work/ctl/triggers" || fail "libtrackevent0: ldconfig trigger"
deps=$(field "$lib" Depends)
step "  Depends: $deps"
for need in libc6 libpq5 libsqlite3-0; do
  grep -q "$need" <<<"$deps" || fail "libtrackevent0: Depends lacks $need"
done

step "libtrackevent-dev: headers, the .so link, CMake package, pkg-config, libtrackevent(3)"
f=$(files "$dev")
has "$f" /usr/include/trackevent/tracker.hpp libtrackevent-dev
has "$f" /usr/include/trackevent/trackevent.h libtrackevent-dev
grep -qE "^/usr/lib/(.*/)?libtrackevent\.so$" <<<"$f" || fail "libtrackevent-dev: no libtrackevent.so link"
grep -qE "^/usr/lib/(.*/)?cmake/trackevent/trackeventConfig\.cmake$" <<<"$f" ||
  fail "libtrackevent-dev: no trackeventConfig.cmake"
grep -qE "^/usr/lib/(.*/)?pkgconfig/trackevent\.pc$" <<<"$f" || fail "libtrackevent-dev: no trackevent.pc"
has "$f" /usr/share/man/man3/libtrackevent.3.gz libtrackevent-dev
hasnt "$f" '/bin/|libtrackevent\.so\.' libtrackevent-dev
deps=$(field "$dev" Depends)
step "  Depends: $deps"
grep -q "libtrackevent0 (= $ver)" <<<"$deps" || fail "libtrackevent-dev: Depends lacks libtrackevent0 (= $ver)"
grep -q "nlohmann-json3-dev" <<<"$deps" || fail "libtrackevent-dev: Depends lacks nlohmann-json3-dev"
mkdir "$work/dev"
dpkg-deb -x "$dev" "$work/dev"
pc=$(find "$work/dev" -name trackevent.pc)
grep -qx "prefix=/usr" "$pc" || fail "trackevent.pc: $(grep prefix= "$pc")"

step "binaries stripped, no RPATH"
mkdir "$work/x"
dpkg-deb -x "$cli" "$work/x"
dpkg-deb -x "$lib" "$work/x"
for bin in "$work/x/usr/bin/trackevent" $(find "$work/x" -name 'libtrackevent.so.*' -type f); do
  if command -v readelf >/dev/null; then
    ! readelf -S "$bin" | grep -q '\.debug_info' || fail "$bin is not stripped"
    ! readelf -d "$bin" | grep -qE 'RPATH|RUNPATH' || fail "$bin has an RPATH"
  fi
done
"$work/x/usr/bin/trackevent" --version | grep -q "$TE_VERSION" || fail "the packaged CLI does not run"

if command -v lintian >/dev/null; then
  step "lintian"
  out=$(lintian --no-tag-display-limit "$cli" "$lib" "$dev" 2>&1 || true)
  echo "$out"
  ! grep -q '^E: ' <<<"$out" || fail "lintian reports errors"
else
  step "lintian not installed; not run"
fi
step "ok"

# Debian packages with CPack: `cpack -G DEB` in a build directory (after building everything)
# writes three packages, one per install component (cmake/Install.cmake):
#   trackevent         (runtime)      the CLI, trackevent(1), completions, the event catalog
#   libtrackevent0     (library)      libtrackevent.so.0, with a shlibs file and ldconfig trigger
#   libtrackevent-dev  (development)  headers, the .so link, CMake package, pkg-config, libtrackevent(3)
# Dependencies come from dpkg-shlibdeps on the real binaries (CPACK_DEBIAN_PACKAGE_SHLIBDEPS);
# the -dev package adds the library and nlohmann-json (a public dependency of the headers).
# tests/packaging/deb_test.sh builds them and checks file lists, dependencies and lintian.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME trackevent)
set(CPACK_PACKAGE_VENDOR trackevent)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "trackevent maintainers <trackevent@users.noreply.github.com>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_DESCRIPTION}")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
# Installed into a staging DESTDIR with the real prefix, so install-time files (trackevent.pc)
# name /usr, not the staging directory.
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL runtime library development)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # NAME_VERSION-REVISION_ARCH.deb
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://github.com/trackevent/trackevent")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(_te_deb_version "${PROJECT_VERSION}-${CPACK_DEBIAN_PACKAGE_RELEASE}")

set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME trackevent)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SECTION utils)
set(CPACK_COMPONENT_RUNTIME_DESCRIPTION
    "record analytics events without slowing down what emits them (CLI)\n\
trackevent records analytics events into PostgreSQL or an embedded SQLite\n\
store, with a local spool for when the database is away. This package has\n\
the command-line tool, its manual page, shell completions and the event\n\
catalog.")

set(CPACK_DEBIAN_LIBRARY_PACKAGE_NAME libtrackevent0)
set(CPACK_DEBIAN_LIBRARY_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)  # only the library has a SONAME
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY "=")
set(CPACK_DEBIAN_LIBRARY_PACKAGE_CONTROL_EXTRA ${PROJECT_SOURCE_DIR}/cmake/debian/triggers)
set(CPACK_COMPONENT_LIBRARY_DESCRIPTION
    "record analytics events without slowing down what emits them (library)\n\
libtrackevent records analytics events from C and C++ programs into\n\
PostgreSQL or an embedded SQLite store; track() never blocks the caller.\n\
This package has the shared library.")

set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_NAME libtrackevent-dev)
set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_DEPENDS
    "libtrackevent0 (= ${_te_deb_version}), nlohmann-json3-dev")
set(CPACK_COMPONENT_DEVELOPMENT_DESCRIPTION
    "record analytics events without slowing down what emits them (headers)\n\
Headers, the CMake package, the pkg-config file and the libtrackevent(3)\n\
manual page, for building programs against libtrackevent.")

# The installed CLI carries a relative RPATH for a `cmake --install --prefix` tree
# (TRACKEVENT_INSTALL_RPATH); a Debian package installs into the default search path, where an
# RPATH is wrong (lintian: custom-library-search-path): removed from the staged copy only, where
# man pages are also compressed and copyright and changelog files added.
set(CPACK_PRE_BUILD_SCRIPTS ${PROJECT_SOURCE_DIR}/cmake/debian/prepare_staging.cmake)

include(CPack)

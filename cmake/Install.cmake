# Install rules, the CMake package config and the pkg-config file.
#
# Layout follows GNUInstallDirs. Only the library's PUBLIC dependencies (nlohmann_json, Threads)
# reach consumers' link lines; SQLite, spdlog, fmt, simdjson, libpq and libpqxx stay behind the
# shared library's DT_NEEDED entries.
# (CMake still names the private shared-library targets in IMPORTED_LINK_DEPENDENT_LIBRARIES,
# used only for -rpath-link and skipped by consumers that do not define those targets; no
# $<BUILD_INTERFACE> wrapping removes that.)
#
# Of the library, only libtrackevent.so and its public headers are installed: the static core
# (trackevent_core) is the CLI's and the tests' own.
include(CMakePackageConfigHelpers)

set(TRACKEVENT_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/trackevent)
option(TRACKEVENT_INSTALL_RPATH
       "Give the installed CLI a relative RPATH to the installed library (OFF for distro packages)" ON)

# A relocatable RPATH ($ORIGIN/../lib) so `<prefix>/bin/trackevent` runs from any prefix without
# LD_LIBRARY_PATH. Distro packages install into the default search path and turn it off.
if(TRACKEVENT_INSTALL_RPATH AND NOT IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  file(RELATIVE_PATH _te_bin_to_lib /${CMAKE_INSTALL_BINDIR} /${CMAKE_INSTALL_LIBDIR})
  set_target_properties(trackevent_cli PROPERTIES INSTALL_RPATH "$ORIGIN/${_te_bin_to_lib}")
endif()

install(TARGETS trackevent EXPORT trackeventTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT library NAMELINK_COMPONENT development
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT development
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT runtime)
install(TARGETS trackevent_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT runtime)

install(DIRECTORY ${PROJECT_SOURCE_DIR}/lib/include/trackevent
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT development
  FILES_MATCHING PATTERN "*.hpp" PATTERN "*.h")

# Man pages: whatever man/ holds; CONFIGURE_DEPENDS re-globs when pages are added later.
file(GLOB _te_man1 CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/man/*.1)
file(GLOB _te_man3 CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/man/*.3)
if(_te_man1)
  install(FILES ${_te_man1} DESTINATION ${CMAKE_INSTALL_MANDIR}/man1 COMPONENT runtime)
endif()
if(_te_man3)
  install(FILES ${_te_man3} DESTINATION ${CMAKE_INSTALL_MANDIR}/man3 COMPONENT development)
endif()

# Completions and the event catalog may not exist yet: OPTIONAL checks at install time, so files
# written after configuring are still installed.
install(FILES ${PROJECT_SOURCE_DIR}/completions/trackevent.bash OPTIONAL
  DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions RENAME trackevent
  COMPONENT runtime)
install(FILES ${PROJECT_SOURCE_DIR}/completions/_trackevent OPTIONAL
  DESTINATION ${CMAKE_INSTALL_DATADIR}/zsh/vendor-completions COMPONENT runtime)
install(FILES ${PROJECT_SOURCE_DIR}/completions/trackevent.fish OPTIONAL
  DESTINATION ${CMAKE_INSTALL_DATADIR}/fish/vendor_completions.d COMPONENT runtime)
install(FILES ${PROJECT_SOURCE_DIR}/schema/events.json OPTIONAL
  DESTINATION ${CMAKE_INSTALL_DATADIR}/trackevent COMPONENT runtime)
# Run by hand with psql to hand partition upkeep over to pg_partman (docs/scale.md).
install(FILES ${PROJECT_SOURCE_DIR}/schema/pg_partman/handover.sql
  DESTINATION ${CMAKE_INSTALL_DATADIR}/trackevent/pg_partman COMPONENT runtime)

# CMake package: targets, config, version, and the catalog->header function.
install(EXPORT trackeventTargets NAMESPACE trackevent:: FILE trackeventTargets.cmake
  DESTINATION ${TRACKEVENT_INSTALL_CMAKEDIR} COMPONENT development)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/trackeventConfig.cmake.in
  ${PROJECT_BINARY_DIR}/trackeventConfig.cmake
  INSTALL_DESTINATION ${TRACKEVENT_INSTALL_CMAKEDIR})
# The SONAME carries only the major version, so the package promises the same compatibility.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/trackeventConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(FILES
  ${PROJECT_BINARY_DIR}/trackeventConfig.cmake
  ${PROJECT_BINARY_DIR}/trackeventConfigVersion.cmake
  ${PROJECT_SOURCE_DIR}/cmake/TrackeventCatalog.cmake
  ${PROJECT_SOURCE_DIR}/cmake/TrackeventCatalogGen.cmake
  DESTINATION ${TRACKEVENT_INSTALL_CMAKEDIR} COMPONENT development)

# pkg-config: written at install time, because `cmake --install --prefix P` changes the prefix
# after configuring and a .pc file holds absolute paths. file(INSTALL) honours DESTDIR.
set(_te_pc_in ${PROJECT_SOURCE_DIR}/cmake/trackevent.pc.in)
set(_te_pc_out ${PROJECT_BINARY_DIR}/pkgconfig/trackevent.pc)
foreach(_te_dir LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${_te_dir}}")
    set(_te_pc_${_te_dir} "${CMAKE_INSTALL_${_te_dir}}")
    set(_te_at_${_te_dir} "${CMAKE_INSTALL_${_te_dir}}")
  else()
    set(_te_pc_${_te_dir} "\${prefix}/${CMAKE_INSTALL_${_te_dir}}")
    set(_te_at_${_te_dir} "\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_${_te_dir}}")
  endif()
endforeach()
install(CODE "
  set(PC_VERSION [[${PROJECT_VERSION}]])
  set(PC_DESCRIPTION [[${PROJECT_DESCRIPTION}]])
  set(PC_PREFIX \"\${CMAKE_INSTALL_PREFIX}\")
  set(PC_LIBDIR [[${_te_pc_LIBDIR}]])
  set(PC_INCLUDEDIR [[${_te_pc_INCLUDEDIR}]])
  configure_file([[${_te_pc_in}]] [[${_te_pc_out}]] @ONLY)
  file(INSTALL DESTINATION \"${_te_at_LIBDIR}/pkgconfig\" TYPE FILE FILES [[${_te_pc_out}]])
" COMPONENT development)

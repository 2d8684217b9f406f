# CPACK_PRE_BUILD_SCRIPTS (cmake/Packaging.cmake): runs after CPack staged each package's files,
# before it builds the packages, and makes the staged trees what Debian policy expects:
# - the CLI loses its RPATH (a package installs into the default library path; lintian:
#   custom-library-search-path);
# - manual pages are compressed (gzip -9n, reproducible);
# - every package gets /usr/share/doc/<package>/copyright and changelog.Debian.gz.
set(_te_packages runtime=trackevent library=libtrackevent0 development=libtrackevent-dev)
set(_te_here "${CMAKE_CURRENT_LIST_DIR}")
foreach(_te_pair IN LISTS _te_packages)
  string(REPLACE "=" ";" _te_pair "${_te_pair}")
  list(GET _te_pair 0 _te_component)
  list(GET _te_pair 1 _te_package)
  set(_te_root "${CPACK_TEMPORARY_INSTALL_DIRECTORY}/${_te_component}")
  if(NOT IS_DIRECTORY "${_te_root}")
    continue()
  endif()
  file(GLOB_RECURSE _te_bins "${_te_root}/*/bin/trackevent")
  foreach(_te_bin IN LISTS _te_bins)
    file(RPATH_REMOVE FILE "${_te_bin}")
  endforeach()
  file(GLOB_RECURSE _te_pages "${_te_root}/*/share/man/*.[1-9]")
  foreach(_te_page IN LISTS _te_pages)
    execute_process(COMMAND gzip -9nf "${_te_page}" COMMAND_ERROR_IS_FATAL ANY)
  endforeach()
  set(_te_doc "${_te_root}${CPACK_PACKAGING_INSTALL_PREFIX}/share/doc/${_te_package}")
  file(MAKE_DIRECTORY "${_te_doc}")
  file(COPY_FILE "${_te_here}/copyright" "${_te_doc}/copyright")
  string(TIMESTAMP _te_date "%a, %d %b %Y %H:%M:%S +0000" UTC)
  file(WRITE "${_te_doc}/changelog.Debian"
       "${_te_package} (${CPACK_PACKAGE_VERSION}-${CPACK_DEBIAN_PACKAGE_RELEASE}) unstable; urgency=medium\n\n"
       "  * Package built with CPack from the trackevent source tree.\n\n"
       " -- ${CPACK_PACKAGE_CONTACT}  ${_te_date}\n")
  execute_process(COMMAND gzip -9nf "${_te_doc}/changelog.Debian" COMMAND_ERROR_IS_FATAL ANY)
endforeach()

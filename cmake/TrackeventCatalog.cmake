# trackevent_catalog_header(TARGET <tgt> CATALOG <events.json> HEADER <name.hpp> [NAMESPACE <ns>])
#
# Generates, at build time, <name.hpp> with one `inline constexpr std::string_view` per event in
# the catalog ({"events":[{"name":"user.signed_in","description":"..."}, ...]}), so a misspelt
# event name is a compile error:
#
#   user.signed_in  ->  namespace events { inline constexpr std::string_view user_signed_in = ...; }
#
# An entry with a "metadata" schema (a tracking plan) also gets a struct of typed fields, named in
# CamelCase (backup.completed -> events::BackupCompleted; std::optional for keys not required),
# with metadata(const BackupCompleted&) and track(tracker, org_id, user_id, const BackupCompleted&),
# so a misspelt field or a string for an integer fails to compile. Such a header includes
# <trackevent/tracker.hpp>: <tgt> must link trackevent::trackevent.
#
# The header is regenerated whenever the catalog changes, and its directory is added to <tgt>'s
# include path (PUBLIC, build tree only). Runs in CMake script mode: no Python needed.
include_guard(GLOBAL)
cmake_minimum_required(VERSION 3.19)  # string(JSON), CMAKE_CURRENT_FUNCTION_LIST_DIR

function(trackevent_catalog_header)
  cmake_parse_arguments(PARSE_ARGV 0 arg "" "TARGET;CATALOG;HEADER;NAMESPACE" "")
  if(arg_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "trackevent_catalog_header: unknown arguments: ${arg_UNPARSED_ARGUMENTS}")
  endif()
  foreach(_req TARGET CATALOG HEADER)
    if(NOT arg_${_req})
      message(FATAL_ERROR "trackevent_catalog_header: ${_req} is required")
    endif()
  endforeach()
  if(NOT TARGET ${arg_TARGET})
    message(FATAL_ERROR "trackevent_catalog_header: no target named '${arg_TARGET}'")
  endif()
  get_target_property(_type ${arg_TARGET} TYPE)
  get_target_property(_imported ${arg_TARGET} IMPORTED)
  if(_imported OR _type STREQUAL "INTERFACE_LIBRARY" OR _type STREQUAL "UTILITY")
    message(FATAL_ERROR "trackevent_catalog_header: '${arg_TARGET}' must be a target that compiles sources")
  endif()
  if(NOT arg_NAMESPACE)
    set(arg_NAMESPACE events)
  endif()
  if(NOT arg_NAMESPACE MATCHES "^[A-Za-z_][A-Za-z0-9_]*(::[A-Za-z_][A-Za-z0-9_]*)*$")
    message(FATAL_ERROR "trackevent_catalog_header: NAMESPACE '${arg_NAMESPACE}' is not a C++ namespace")
  endif()
  if(IS_ABSOLUTE "${arg_HEADER}" OR arg_HEADER MATCHES "\\.\\.")
    message(FATAL_ERROR "trackevent_catalog_header: HEADER must be a relative name like events.hpp")
  endif()
  get_filename_component(_catalog "${arg_CATALOG}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")

  # One directory per target, so two targets may generate headers of the same name.
  set(_dir "${CMAKE_CURRENT_BINARY_DIR}/trackevent_catalog/${arg_TARGET}")
  set(_out "${_dir}/${arg_HEADER}")
  set(_script "${CMAKE_CURRENT_FUNCTION_LIST_DIR}/TrackeventCatalogGen.cmake")
  add_custom_command(
    OUTPUT "${_out}"
    COMMAND "${CMAKE_COMMAND}" "-DCATALOG=${_catalog}" "-DOUT=${_out}"
            "-DNAMESPACE=${arg_NAMESPACE}" -P "${_script}"
    DEPENDS "${_catalog}" "${_script}"
    COMMENT "Generating ${arg_HEADER} from ${arg_CATALOG}"
    VERBATIM)
  # Listing the header as a source ties the custom command to the target, so it is generated
  # before anything in the target compiles.
  target_sources(${arg_TARGET} PRIVATE "${_out}")
  target_include_directories(${arg_TARGET} PUBLIC "$<BUILD_INTERFACE:${_dir}>")
endfunction()

# Script mode helper of trackevent_catalog_header():
#   cmake -DCATALOG=events.json -DOUT=events.hpp [-DNAMESPACE=events] -P TrackeventCatalogGen.cmake
# Fails (non-zero exit, message naming the entry) on malformed JSON, a missing or non-string name,
# a name outside ^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$, or two names mapping to one identifier.
cmake_minimum_required(VERSION 3.19)

foreach(_var CATALOG OUT)
  if(NOT DEFINED ${_var})
    message(FATAL_ERROR "TrackeventCatalogGen: -D${_var}= is required")
  endif()
endforeach()
if(NOT NAMESPACE)
  set(NAMESPACE events)
endif()
if(NOT EXISTS "${CATALOG}")
  message(FATAL_ERROR "${CATALOG}: no such file")
endif()

file(READ "${CATALOG}" _json)
string(JSON _count ERROR_VARIABLE _err LENGTH "${_json}" events)
if(_err)
  message(FATAL_ERROR "${CATALOG}: expected {\"events\": [...]}: ${_err}")
endif()
string(JSON _kind TYPE "${_json}" events)
if(NOT _kind STREQUAL "ARRAY")
  message(FATAL_ERROR "${CATALOG}: \"events\" must be an array, not ${_kind}")
endif()

set(_body "")
set(_idents "")
if(_count GREATER 0)
  math(EXPR _last "${_count} - 1")
  foreach(_i RANGE ${_last})
    string(JSON _name ERROR_VARIABLE _err GET "${_json}" events ${_i} name)
    string(JSON _ntype ERROR_VARIABLE _err2 TYPE "${_json}" events ${_i} name)
    if(_err OR NOT _ntype STREQUAL "STRING")
      message(FATAL_ERROR "${CATALOG}: events[${_i}]: \"name\" must be a string")
    endif()
    if(NOT _name MATCHES "^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*)+$")
      message(FATAL_ERROR "${CATALOG}: events[${_i}]: '${_name}' is not a lowercase dotted name")
    endif()
    string(LENGTH "${_name}" _len)
    if(_len GREATER 200)
      message(FATAL_ERROR "${CATALOG}: events[${_i}]: name longer than 200 bytes")
    endif()
    string(REPLACE "." "_" _ident "${_name}")
    if(_ident IN_LIST _idents)
      message(FATAL_ERROR "${CATALOG}: events[${_i}]: '${_name}' maps to '${_ident}', already used")
    endif()
    list(APPEND _idents "${_ident}")

    string(JSON _desc ERROR_VARIABLE _err GET "${_json}" events ${_i} description)
    if(NOT _err AND NOT _desc STREQUAL "")
      # One comment line per description line. A backslash ending a line would splice the next
      # line into the comment, so trailing backslashes (and blanks) are dropped.
      string(REPLACE "\r" "" _desc "${_desc}")
      string(REGEX REPLACE "[ \t\\]+\n" "\n" _desc "${_desc}")
      string(REGEX REPLACE "[ \t\\]+$" "" _desc "${_desc}")
      string(REPLACE "\n" "\n/// " _desc "${_desc}")
      string(APPEND _body "/// ${_desc}\n")
    endif()
    string(APPEND _body "inline constexpr std::string_view ${_ident} = \"${_name}\";\n")
  endforeach()
endif()

get_filename_component(_src "${CATALOG}" NAME)
file(WRITE "${OUT}" "// Generated from ${_src} by trackevent_catalog_header(); do not edit.
#pragma once

#include <string_view>

namespace ${NAMESPACE} {

${_body}
}  // namespace ${NAMESPACE}
")

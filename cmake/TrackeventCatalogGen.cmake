# Script mode helper of trackevent_catalog_header():
#   cmake -DCATALOG=events.json -DOUT=events.hpp [-DNAMESPACE=events] -P TrackeventCatalogGen.cmake
# Fails (non-zero exit, message naming the entry) on malformed JSON, a missing or non-string name,
# a name outside ^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$, or two names mapping to one identifier.
# An entry with a "metadata" schema also gets a struct of typed fields and a track() overload
# (see _te_schema_struct below); `trackevent events` checks the schema itself.
cmake_minimum_required(VERSION 3.19)

# --- typed structs for entries with a metadata schema (the tracking plan) ----------------------

# "billing.invoice.paid_v2" -> "BillingInvoicePaidV2".
function(_te_struct_name name out)
  string(REGEX REPLACE "[._]" ";" _parts "${name}")
  set(_r "")
  foreach(_p IN LISTS _parts)
    if(_p STREQUAL "")
      continue()
    endif()
    string(SUBSTRING "${_p}" 0 1 _first)
    string(TOUPPER "${_first}" _first)
    string(SUBSTRING "${_p}" 1 -1 _rest)
    string(APPEND _r "${_first}${_rest}")
  endforeach()
  set(${out} "${_r}" PARENT_SCOPE)
endfunction()

# A C++ type for a JSON Schema type name; "" when the schema says too little (nlohmann::json).
function(_te_scalar_type t out)
  if(t STREQUAL "string")
    set(${out} "std::string" PARENT_SCOPE)
  elseif(t STREQUAL "integer")
    set(${out} "std::int64_t" PARENT_SCOPE)
  elseif(t STREQUAL "number")
    set(${out} "double" PARENT_SCOPE)
  elseif(t STREQUAL "boolean")
    set(${out} "bool" PARENT_SCOPE)
  else()
    set(${out} "" PARENT_SCOPE)
  endif()
endfunction()

# The type of a property schema: sets <out_type> (a C++ type) and <out_nullable> (its "type" list
# also allows null). One type (besides null) maps to a C++ type; an array of such items to a
# std::vector; an enum of strings to std::string; anything else to nlohmann::json.
function(_te_property_type schema out_type out_nullable)
  set(_nullable OFF)
  set(_base "")
  string(JSON _kind ERROR_VARIABLE _err TYPE "${schema}" type)
  if(NOT _err AND _kind STREQUAL "STRING")
    string(JSON _base GET "${schema}" type)
  elseif(NOT _err AND _kind STREQUAL "ARRAY")
    string(JSON _n LENGTH "${schema}" type)
    set(_others "")
    if(_n GREATER 0)
      math(EXPR _last "${_n} - 1")
      foreach(_k RANGE ${_last})
        string(JSON _t GET "${schema}" type ${_k})
        if(_t STREQUAL "null")
          set(_nullable ON)
        else()
          list(APPEND _others "${_t}")
        endif()
      endforeach()
    endif()
    list(LENGTH _others _no)
    if(_no EQUAL 1)
      set(_base "${_others}")
    endif()
  else()
    string(JSON _ekind ERROR_VARIABLE _err TYPE "${schema}" enum)
    if(NOT _err AND _ekind STREQUAL "ARRAY")
      string(JSON _n LENGTH "${schema}" enum)
      set(_base "string")
      if(_n GREATER 0)
        math(EXPR _last "${_n} - 1")
        foreach(_k RANGE ${_last})
          string(JSON _ek TYPE "${schema}" enum ${_k})
          if(NOT _ek STREQUAL "STRING")
            set(_base "")
          endif()
        endforeach()
      endif()
    endif()
  endif()
  set(_type "nlohmann::json")
  if(_base STREQUAL "array")
    set(_item "nlohmann::json")
    string(JSON _it ERROR_VARIABLE _err TYPE "${schema}" items type)
    if(NOT _err AND _it STREQUAL "STRING")
      string(JSON _itn GET "${schema}" items type)
      _te_scalar_type("${_itn}" _scalar)
      if(_scalar)
        set(_item "${_scalar}")
      endif()
    endif()
    set(_type "std::vector<${_item}>")
  elseif(_base)
    _te_scalar_type("${_base}" _scalar)
    if(_scalar)
      set(_type "${_scalar}")
    endif()
  endif()
  set(${out_type} "${_type}" PARENT_SCOPE)
  set(${out_nullable} ${_nullable} PARENT_SCOPE)
endfunction()

# Inside a C++ string literal.
function(_te_cpp_string text out)
  string(REPLACE "\\" "\\\\" text "${text}")
  string(REPLACE "\"" "\\\"" text "${text}")
  string(REPLACE "\n" "\\n" text "${text}")
  set(${out} "${text}" PARENT_SCOPE)
endfunction()

# Words a field cannot be named (C++ keywords a metadata key could plausibly be).
set(_te_keywords
    alignas alignof and asm auto bool break case catch char class const constexpr continue
    default delete do double else enum explicit export extern false float for friend goto if
    inline int long mutable namespace new noexcept not nullptr operator or private protected
    public register requires return short signed sizeof static struct switch template this
    throw true try typedef typeid typename union unsigned using virtual void volatile while)

# Appends to <out_var> the struct for event <name> (constant <ident>) with schema <schema>, and
# its metadata() and track() functions.
function(_te_schema_struct name ident schema where out_var)
  _te_struct_name("${name}" _struct)
  set(_fields "")
  set(_emit "")
  set(_field_ids "")
  set(_required "")
  string(JSON _rn ERROR_VARIABLE _err LENGTH "${schema}" required)
  if(NOT _err AND _rn GREATER 0)
    math(EXPR _last "${_rn} - 1")
    foreach(_k RANGE ${_last})
      string(JSON _r GET "${schema}" required ${_k})
      list(APPEND _required "${_r}")
    endforeach()
  endif()
  string(JSON _pn ERROR_VARIABLE _err LENGTH "${schema}" properties)
  if(NOT _err AND _pn GREATER 0)
    math(EXPR _last "${_pn} - 1")
    foreach(_k RANGE ${_last})
      string(JSON _key MEMBER "${schema}" properties ${_k})
      string(JSON _prop GET "${schema}" properties "${_key}")
      string(MAKE_C_IDENTIFIER "${_key}" _id)
      if(_id IN_LIST _te_keywords)
        string(APPEND _id "_")
      endif()
      if(_id IN_LIST _field_ids)
        message(FATAL_ERROR "${where}/properties: key '${_key}' maps to the field '${_id}', already used")
      endif()
      list(APPEND _field_ids "${_id}")
      _te_property_type("${_prop}" _type _nullable)
      _te_cpp_string("${_key}" _lit)
      string(JSON _pdesc ERROR_VARIABLE _err GET "${_prop}" description)
      if(NOT _err AND NOT _pdesc STREQUAL "")
        string(REGEX REPLACE "[\r\n\\]+" " " _pdesc "${_pdesc}")
        string(APPEND _fields "  /// ${_pdesc}\n")
      endif()
      if(_key IN_LIST _required AND NOT _nullable)
        string(APPEND _fields "  ${_type} ${_id}{};\n")
        string(APPEND _emit "  m[\"${_lit}\"] = e.${_id};\n")
      elseif(_key IN_LIST _required)
        string(APPEND _fields "  std::optional<${_type}> ${_id}{};  // null when empty\n")
        string(APPEND _emit
               "  m[\"${_lit}\"] = e.${_id} ? nlohmann::json(*e.${_id}) : nlohmann::json(nullptr);\n")
      else()
        string(APPEND _fields "  std::optional<${_type}> ${_id}{};\n")
        string(APPEND _emit "  if (e.${_id}) m[\"${_lit}\"] = *e.${_id};\n")
      endif()
    endforeach()
  endif()
  set(${out_var} "${${out_var}}
/// The metadata of ${name}, typed by its schema: std::optional for keys that are not required.
struct ${_struct} {
${_fields}};

/// The metadata object of a ${_struct}.
inline nlohmann::json metadata(const ${_struct}& e) {
  nlohmann::json m = nlohmann::json::object();
${_emit}  return m;
}

/// Records ${name} with typed metadata.
inline void track(trackevent::Tracker& tracker, std::int64_t org_id,
                  std::optional<std::int64_t> user_id, const ${_struct}& e) {
  tracker.track(org_id, user_id, ${ident}, metadata(e));
}
" PARENT_SCOPE)
endfunction()

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
set(_typed "")
set(_structs "")
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

    string(JSON _mkind ERROR_VARIABLE _err TYPE "${_json}" events ${_i} metadata)
    if(NOT _err)
      if(NOT _mkind STREQUAL "OBJECT")
        message(FATAL_ERROR "${CATALOG}: /events/${_i}/metadata: expected a schema (a JSON object)")
      endif()
      string(JSON _schema GET "${_json}" events ${_i} metadata)
      _te_schema_struct("${_name}" "${_ident}" "${_schema}" "${CATALOG}: /events/${_i}/metadata" _typed)
      _te_struct_name("${_name}" _sname)
      if(_sname IN_LIST _structs)
        message(FATAL_ERROR "${CATALOG}: events[${_i}]: '${_name}' maps to the struct '${_sname}', already used")
      endif()
      list(APPEND _structs "${_sname}")
    endif()
  endforeach()
endif()

# Typed structs need the library's headers; a catalog without schemas keeps the header bare.
set(_includes "#include <string_view>\n")
if(_typed)
  set(_includes "#include <trackevent/tracker.hpp>\n\n#include <nlohmann/json.hpp>\n\n#include <cstdint>\n#include <optional>\n#include <string>\n#include <string_view>\n#include <vector>\n")
endif()

get_filename_component(_src "${CATALOG}" NAME)
file(WRITE "${OUT}" "// Generated from ${_src} by trackevent_catalog_header(); do not edit.
#pragma once

${_includes}
namespace ${NAMESPACE} {

${_body}${_typed}
}  // namespace ${NAMESPACE}
")

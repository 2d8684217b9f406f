# Script mode: the catalog generator refuses bad catalogs with a message naming the problem.
#   cmake -DGEN=.../TrackeventCatalogGen.cmake -DWORK=<dir> -P catalog_negative.cmake
file(MAKE_DIRECTORY "${WORK}")
set(_failed 0)

function(expect_rejected what json expect)
  file(WRITE "${WORK}/case.json" "${json}")
  execute_process(COMMAND "${CMAKE_COMMAND}" "-DCATALOG=${WORK}/case.json"
                          "-DOUT=${WORK}/case.hpp" -P "${GEN}"
                  RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
  # CMake wraps long messages; compare on one line with single spaces.
  string(REGEX REPLACE "[ \n]+" " " flat "${err}")
  string(FIND "${flat}" "${expect}" pos)
  if(rc EQUAL 0 OR pos EQUAL -1)
    message(SEND_ERROR "${what}: rc=${rc}, expected a failure mentioning '${expect}', got: ${err}")
    math(EXPR _failed "${_failed} + 1")
    set(_failed ${_failed} PARENT_SCOPE)
  else()
    message(STATUS "ok: ${what}")
  endif()
endfunction()

expect_rejected("not JSON" [=[{"events": []=] "failed parsing json")
expect_rejected("no events key" [=[{"names": []}]=] [=[expected {"events"]=])
expect_rejected("events not an array" [=[{"events": {}}]=] "must be an array")
expect_rejected("name missing" [=[{"events": [{"description": "x"}]}]=] [=["name" must be a string]=])
expect_rejected("name not a string" [=[{"events": [{"name": 3}]}]=] [=["name" must be a string]=])
expect_rejected("uppercase name" [=[{"events": [{"name": "User.signed_in"}]}]=] "not a lowercase dotted name")
expect_rejected("undotted name" [=[{"events": [{"name": "signed_in"}]}]=] "not a lowercase dotted name")
expect_rejected("identifier clash" [=[{"events": [{"name": "a.b_c"}, {"name": "a_b.c"}]}]=] "already used")
if(_failed)
  message(FATAL_ERROR "${_failed} case(s) failed")
endif()

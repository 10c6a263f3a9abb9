# Negative compile test, run by ctest:
#   cmake -DCXX=... -DFLAGS_FILE=... -DSOURCE=... -DEXPECT=... -P check_compile_fails.cmake
# SOURCE must fail to compile with a message containing EXPECT, and must compile when
# CLUPY_COMPILE_FAIL_CONTROL is defined (so the failure cannot come from a broken set-up).
include(${FLAGS_FILE})  # sets CLUPY_COMPILE_FLAGS
set(command ${CXX} -std=c++20 -fsyntax-only ${CLUPY_COMPILE_FLAGS} ${SOURCE})

execute_process(COMMAND ${command} -DCLUPY_COMPILE_FAIL_CONTROL
                RESULT_VARIABLE control_rc ERROR_VARIABLE control_err OUTPUT_QUIET)
if(NOT control_rc EQUAL 0)
  message(FATAL_ERROR "the valid twin of ${SOURCE} does not compile:\n${control_err}")
endif()

execute_process(COMMAND ${command} RESULT_VARIABLE rc ERROR_VARIABLE err OUTPUT_QUIET)
if(rc EQUAL 0)
  message(FATAL_ERROR "${SOURCE} compiled, but CluPy should have rejected it")
endif()
string(FIND "${err}" "${EXPECT}" found)
if(found EQUAL -1)
  message(FATAL_ERROR "${SOURCE} failed to compile without the message '${EXPECT}':\n${err}")
endif()
message(STATUS "rejected as expected: ${EXPECT}")

# Warning and sanitizer flags shared by every CluPy target, applied through clupy_warnings.
add_library(clupy_warnings INTERFACE)
target_compile_options(clupy_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wold-style-cast -Wcast-align
  -Woverloaded-virtual -Wimplicit-fallthrough
  $<$<BOOL:${CLUPY_WERROR}>:-Werror>)

if(CLUPY_SANITIZE AND CLUPY_TSAN)
  message(FATAL_ERROR "CLUPY_SANITIZE (ASan+UBSan) and CLUPY_TSAN cannot be combined")
endif()
if(CLUPY_TSAN)
  # -Wno-tsan: GCC warns that TSan does not model std::atomic_thread_fence, which Boost.Asio's
  # fenced blocks use; Asio's queues are guarded by mutexes, which TSan does model.
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer -Wno-tsan)
  add_link_options(-fsanitize=thread)
endif()
if(CLUPY_FUZZ)
  # libFuzzer targets (tests/fuzz): every object carries the fuzzer's coverage hooks, the fuzz
  # binaries alone link libFuzzer's main. Clang only; ASan and UBSan come with it.
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "CLUPY_FUZZ needs Clang (libFuzzer): configure with CMAKE_CXX_COMPILER=clang++-14")
  endif()
  if(CLUPY_SANITIZE OR CLUPY_TSAN)
    message(FATAL_ERROR "CLUPY_FUZZ brings its own sanitizers: leave CLUPY_SANITIZE and CLUPY_TSAN off")
  endif()
  # -fno-sanitize=function: Clang 14 cannot emit that check's prologue data for the split
  # functions of C++20 coroutines together with the coverage hooks ("Cannot represent a
  # difference across sections"); it checks calls through mistyped function pointers only.
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize=function
                      -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()
if(CLUPY_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer
                      -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()

find_program(CCACHE_PROGRAM ccache)
if(CCACHE_PROGRAM)
  set(CMAKE_CXX_COMPILER_LAUNCHER ${CCACHE_PROGRAM})
  set(CMAKE_C_COMPILER_LAUNCHER ${CCACHE_PROGRAM})
endif()

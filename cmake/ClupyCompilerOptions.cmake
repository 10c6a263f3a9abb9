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

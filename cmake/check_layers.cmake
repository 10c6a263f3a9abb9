# Fails the build when a file of one src/ folder includes a header of a folder it may not use.
# Run by the build (cmake -P) before libclupy's folders compile; the arrows are the same ones
# that docs/architecture.md draws ("One library, one target per folder").
#   cmake -DSOURCE_DIR=<project> -DSTAMP=<file> -P check_layers.cmake
cmake_minimum_required(VERSION 3.25)
set(allowed_base base)
set(allowed_common common base)
set(allowed_store store base)
set(allowed_coord coord)
set(allowed_worker worker common base)
set(allowed_deps deps common base)
set(allowed_master master deps common store coord base)
set(allowed_server server worker deps common store coord base)
set(allowed_client client worker master server deps common store coord base)
set(allowed_slurm slurm server common base)
set(folders base common store coord worker deps master server client slurm)

set(violations "")
foreach(folder IN LISTS folders)
  file(GLOB_RECURSE files "${SOURCE_DIR}/src/${folder}/*.cc" "${SOURCE_DIR}/src/${folder}/*.hpp")
  foreach(path IN LISTS files)
    file(STRINGS "${path}" includes REGEX "^#include \"[a-z_]+/")
    foreach(line IN LISTS includes)
      string(REGEX REPLACE "^#include \"([a-z_]+)/.*" "\\1" used "${line}")
      if(used STREQUAL "clupy" OR NOT used IN_LIST folders)
        continue()  # public headers (include/clupy) and the generated schema are for everyone
      endif()
      if(NOT used IN_LIST allowed_${folder})
        file(RELATIVE_PATH shown "${SOURCE_DIR}" "${path}")
        string(APPEND violations "  ${shown}: ${line} (src/${folder} may use: ${allowed_${folder}})\n")
      endif()
    endforeach()
  endforeach()
endforeach()
if(violations)
  message(FATAL_ERROR "includes that cross the folders' layering (docs/architecture.md):\n"
                      "${violations}")
endif()
file(TOUCH "${STAMP}")

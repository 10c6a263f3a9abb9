# Run by CPack on its staging tree before it makes the package: the installed clupy command
# loses its RUNPATH (libclupy is in a directory the dynamic loader searches by default).
file(GLOB_RECURSE _staged LIST_DIRECTORIES false "${CPACK_TEMPORARY_INSTALL_DIRECTORY}/*")
list(FILTER _staged INCLUDE REGEX "/usr/bin/clupy$")
if(NOT _staged)
  message(FATAL_ERROR "no usr/bin/clupy under ${CPACK_TEMPORARY_INSTALL_DIRECTORY}")
endif()
foreach(_command IN LISTS _staged)
  file(RPATH_REMOVE FILE "${_command}")
  message(STATUS "removed the RUNPATH of ${_command}")
endforeach()

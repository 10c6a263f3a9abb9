# `cmake --install` puts libclupy, its headers, the clupy command, a CMake package
# (find_package(clupy) + clupy::clupy) and a pkg-config file (clupy.pc) under the prefix.
include(CMakePackageConfigHelpers)

install(TARGETS clupy EXPORT clupyTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS clupy_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/clupy DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
# libclupy's public templates include msgpack-cxx, which Debian 12 cannot install beside Boost
# 1.81 (docs/SETUP): the header-only package unpacked by tools/install-deps.sh is installed with
# CluPy, headers and CMake package both, so find_package(clupy) finds it.
install(DIRECTORY ${PROJECT_SOURCE_DIR}/.cache/deps/msgpack/usr/include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
# (Its targets file locates the prefix four levels up, so it keeps its multiarch depth.)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/.cache/deps/msgpack/usr/lib/x86_64-linux-gnu/cmake/msgpackc-cxx
        DESTINATION lib/x86_64-linux-gnu/cmake)
install(EXPORT clupyTargets NAMESPACE clupy:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/clupy)

configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/clupyConfig.cmake.in
  ${PROJECT_BINARY_DIR}/clupyConfig.cmake INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/clupy)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/clupyConfigVersion.cmake
  COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/clupyConfig.cmake ${PROJECT_BINARY_DIR}/clupyConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/clupy)

configure_file(${PROJECT_SOURCE_DIR}/cmake/clupy.pc.in ${PROJECT_BINARY_DIR}/clupy.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/clupy.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

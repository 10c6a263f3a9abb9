# `cpack -G DEB` in the build tree makes clupy_<version>_amd64.deb: the clupy command, libclupy
# (with its soname), headers, the CMake package, clupy.pc, systemd units for the master and the
# server, their configuration in /etc/clupy and the clupy system user (packaging/debian/postinst).
# Its Depends come from dpkg-shlibdeps. docs/operations.md says how to install it on machines.
set(_pkg ${PROJECT_SOURCE_DIR}/packaging)

install(FILES ${_pkg}/systemd/clupy-master.service ${_pkg}/systemd/clupy-server.service
        DESTINATION lib/systemd/system COMPONENT system EXCLUDE_FROM_ALL)
# /etc is outside the prefix: only the package installs it (`cmake --install` leaves it alone).
install(FILES ${_pkg}/etc/clupy.master.yaml ${_pkg}/etc/clupy.server.yaml
        DESTINATION /etc/clupy COMPONENT system EXCLUDE_FROM_ALL)
install(FILES ${_pkg}/debian/copyright ${PROJECT_SOURCE_DIR}/docs/operations.md
              ${PROJECT_SOURCE_DIR}/docs/configuration.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR} COMPONENT system EXCLUDE_FROM_ALL)

# The changelog Debian wants of a native package, gzipped reproducibly (no name, no time).
set(CLUPY_DEB_VERSION ${PROJECT_VERSION})
string(TIMESTAMP CLUPY_DEB_DATE "%a, %d %b %Y %H:%M:%S +0000" UTC)
set(CPACK_PACKAGE_CONTACT "CluPy for C++ developers <clupy@example.org>")
configure_file(${_pkg}/debian/changelog.in ${PROJECT_BINARY_DIR}/packaging/changelog @ONLY)
add_custom_command(OUTPUT ${PROJECT_BINARY_DIR}/packaging/changelog.gz
                   COMMAND gzip -n -9 -c changelog > changelog.gz
                   DEPENDS ${PROJECT_BINARY_DIR}/packaging/changelog
                   WORKING_DIRECTORY ${PROJECT_BINARY_DIR}/packaging)
add_custom_target(clupy_deb_changelog ALL DEPENDS ${PROJECT_BINARY_DIR}/packaging/changelog.gz)
install(FILES ${PROJECT_BINARY_DIR}/packaging/changelog.gz DESTINATION ${CMAKE_INSTALL_DOCDIR}
        COMPONENT system EXCLUDE_FROM_ALL)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME clupy)
set(CPACK_PACKAGE_VENDOR "CluPy for C++")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "run C++ functions on a cluster of machines")
set(CPACK_PACKAGE_DESCRIPTION
    "CluPy for C++ runs plain C++ functions and lambdas on the worker processes of a\n\
cluster and returns futures of their results. This package holds the clupy\n\
command (master, server and client tools), libclupy, its headers, CMake package\n\
and pkg-config file, and systemd units for the master and the server.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)  # debug info stays in the build tree; build-ids are kept
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_GROUPING ALL_COMPONENTS_IN_ONE)
set(CPACK_COMPONENTS_ALL Unspecified system)
set(CPACK_DEBIAN_PACKAGE_NAME clupy)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")
set(CPACK_DEBIAN_PACKAGE_DEPENDS "passwd")  # useradd, in postinst
# The bundled msgpack-cxx headers are the same files Debian's package installs.
set(CPACK_DEBIAN_PACKAGE_CONFLICTS "libmsgpack-cxx-dev")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA ${_pkg}/debian/postinst ${_pkg}/debian/prerm
                                       ${_pkg}/debian/postrm ${_pkg}/debian/conffiles
                                       ${_pkg}/debian/triggers)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
# The build tree's RUNPATH ($ORIGIN/../lib) is not wanted under /usr, where libclupy is found
# by its soname.
set(CPACK_PRE_BUILD_SCRIPTS ${PROJECT_SOURCE_DIR}/cmake/ClupyPackagingStrip.cmake)
include(CPack)

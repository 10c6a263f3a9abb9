# Every third-party library CluPy links, found the way that works on Debian 12 (docs/SETUP).
find_package(Threads REQUIRED)
find_package(Boost 1.81 REQUIRED CONFIG)
find_package(Protobuf REQUIRED)
find_package(yaml-cpp 0.7 REQUIRED CONFIG)
find_package(spdlog 1.10 REQUIRED CONFIG)
find_package(OpenSSL 3 REQUIRED)
find_package(CLI11 REQUIRED CONFIG)
find_package(nlohmann_json REQUIRED CONFIG)
find_package(msgpack 4.1 REQUIRED CONFIG)
find_package(PkgConfig REQUIRED)

pkg_check_modules(HIREDIS REQUIRED IMPORTED_TARGET hiredis>=0.14)

find_path(ZOOKEEPER_INCLUDE_DIR zookeeper/zookeeper.h REQUIRED)
find_library(ZOOKEEPER_LIBRARY zookeeper_mt REQUIRED)
add_library(clupy_zookeeper INTERFACE IMPORTED)
target_include_directories(clupy_zookeeper INTERFACE ${ZOOKEEPER_INCLUDE_DIR})
target_link_libraries(clupy_zookeeper INTERFACE ${ZOOKEEPER_LIBRARY})
# The synchronous API (zoo_create, zoo_get) is declared only for the threaded client.
target_compile_definitions(clupy_zookeeper INTERFACE THREADED)

if(CLUPY_BUILD_TESTS)
  find_package(GTest REQUIRED CONFIG)
endif()
if(CLUPY_BUILD_BENCH)
  find_package(benchmark REQUIRED CONFIG)
endif()

# deps.cmake -- find every external dependency; a missing one stops the
# configuration with the Debian package that provides it.
find_package(PkgConfig)
if(NOT PKG_CONFIG_FOUND)
  message(FATAL_ERROR "pkg-config not found: apt-get install pkg-config (or run tools/deps.sh)")
endif()

# dts_need_pkg(VAR module debian-package)
macro(dts_need_pkg var module deb)
  pkg_check_modules(${var} IMPORTED_TARGET ${module})
  if(NOT ${var}_FOUND)
    message(FATAL_ERROR "${module} not found: apt-get install ${deb} (or run tools/deps.sh)")
  endif()
endmacro()

dts_need_pkg(CK ck libck-dev)
dts_need_pkg(CMOCKA cmocka libcmocka-dev)
dts_need_pkg(JEMALLOC jemalloc libjemalloc-dev)
dts_need_pkg(GRPC grpc libgrpc-dev)
dts_need_pkg(PROTOBUFC libprotobuf-c libprotobuf-c-dev)
dts_need_pkg(MHD libmicrohttpd libmicrohttpd-dev)
dts_need_pkg(JANSSON jansson libjansson-dev)

find_path(LEVELDB_INCLUDE_DIR leveldb/c.h)
find_library(LEVELDB_LIBRARY leveldb)
if(NOT LEVELDB_INCLUDE_DIR OR NOT LEVELDB_LIBRARY)
  message(FATAL_ERROR "LevelDB not found: apt-get install libleveldb-dev (or run tools/deps.sh)")
endif()

find_program(PROTOC_C protoc-c)
if(NOT PROTOC_C)
  message(FATAL_ERROR "protoc-c not found: apt-get install protobuf-c-compiler (or run tools/deps.sh)")
endif()
find_path(PROTOBUF_WKT_DIR google/protobuf/timestamp.proto PATHS /usr/include)
if(NOT PROTOBUF_WKT_DIR)
  message(FATAL_ERROR "google/protobuf/*.proto not found: apt-get install libprotobuf-dev (or run tools/deps.sh)")
endif()

find_package(Threads REQUIRED)

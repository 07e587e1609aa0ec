# moeserve_add_test(<name> SOURCES <files...> LIBS <targets...> LABELS <unit|integration|gpu>)
# One executable per test file group; every GoogleTest case becomes a CTest test with the labels,
# so `ctest -L unit` or `ctest -LE gpu` select suites.
#
# OMP_WAIT_POLICY=PASSIVE: `ctest -j $(nproc)` runs one test process per core, each with an
# OpenMP team as large as the machine. libgomp's default waiters spin ~3 ms for a thread that has
# lost its core to another process, so a barrier costs a scheduler slice: an engine test that
# takes 2 s alone took 23-41 s beside a copy of itself on 2 cores, 3 s with passive waiting.
function(moeserve_add_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} moeserve_warnings GTest::gtest GTest::gtest_main)
  target_compile_definitions(${name} PRIVATE
    MOESERVE_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
    MOESERVE_BINARY_DIR="${PROJECT_BINARY_DIR}")
  gtest_discover_tests(${name}
    WORKING_DIRECTORY ${PROJECT_BINARY_DIR}
    PROPERTIES LABELS "${ARG_LABELS}" ENVIRONMENT "OMP_WAIT_POLICY=PASSIVE"
    DISCOVERY_TIMEOUT 60)
endfunction()

# SPDX-License-Identifier: Apache-2.0
# Build helpers shared by every directory: the warning set, the sanitizer
# switch and gw_test(), which registers one ctest per test source.

add_library(gw_warnings INTERFACE)
target_compile_definitions(gw_warnings INTERFACE _GNU_SOURCE)
target_compile_options(gw_warnings INTERFACE
  -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2
  -Wundef -Wwrite-strings -Wpointer-arith
  -Werror=implicit-function-declaration -Werror=incompatible-pointer-types)
if(GW_WERROR)
  target_compile_options(gw_warnings INTERFACE -Werror)
endif()
if(NOT GW_SANITIZER STREQUAL "none")
  target_compile_options(gw_warnings INTERFACE -fsanitize=${GW_SANITIZER} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  target_link_options(gw_warnings INTERFACE -fsanitize=${GW_SANITIZER})
endif()

# gw_test(NAME SOURCE LIBS... [LABELS l...]): one cmocka executable, one ctest.
function(gw_test name source)
  cmake_parse_arguments(T "" "TIMEOUT" "LIBS;LABELS" ${ARGN})
  add_executable(${name} ${source})
  target_link_libraries(${name} PRIVATE ${T_LIBS} PkgConfig::CMOCKA gw_warnings)
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests)
  add_test(NAME ${name} COMMAND ${name})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  if(NOT T_LABELS)
    set(T_LABELS unit)
  endif()
  set_tests_properties(${name} PROPERTIES TIMEOUT ${T_TIMEOUT} LABELS "${T_LABELS}")
endfunction()

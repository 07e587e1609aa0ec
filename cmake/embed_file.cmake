# moeserve_embed_file(<target> <symbol> <file>): compiles <file>'s bytes into <target> as
#   extern const unsigned char <symbol>[]; extern const size_t <symbol>_size;
# so tools carry data (e.g. the default tokenizer) without depending on the source tree.
function(moeserve_embed_file target symbol file)
  set(out ${CMAKE_CURRENT_BINARY_DIR}/embedded_${symbol}.cc)
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -DINPUT=${file} -DOUTPUT=${out} -DSYMBOL=${symbol}
            -P ${PROJECT_SOURCE_DIR}/cmake/embed_file_script.cmake
    DEPENDS ${file} ${PROJECT_SOURCE_DIR}/cmake/embed_file_script.cmake
    COMMENT "Embedding ${file}" VERBATIM)
  target_sources(${target} PRIVATE ${out})
endfunction()

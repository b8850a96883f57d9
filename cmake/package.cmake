# package.cmake -- what `cmake --install` lays out beyond the targets' own
# rules (binaries, libdtsd: server/, tools/dtsctl/), and the Debian package
# CPack builds from it (tools/package.sh; docs/install.md).
#
#   bin/dtsd, bin/dtsctl            the server and the command-line tool
#   lib/, include/dtsd.h, lib/pkgconfig/dtsd.pc    libdtsd (static)
#   share/man/man8/dtsd.8.gz, share/man/man1/dtsctl.1.gz (help2man, from --help)
#   <sysconfdir>/dtsd/dtsd.conf     the settings file (a conffile)
#   lib/systemd/system/dtsd.service the unit: its own user, restart on failure
#   share/bash-completion/completions/dtsctl
#   share/doc/dtsd/                 README and docs/
set(DTS_PKG ${PROJECT_SOURCE_DIR}/tools/package)
set(DTS_CONFIG_FILE ${CMAKE_INSTALL_FULL_SYSCONFDIR}/dtsd/dtsd.conf)
configure_file(${DTS_PKG}/dtsd.service.in ${CMAKE_BINARY_DIR}/dtsd.service @ONLY)

find_program(HELP2MAN help2man)
if(NOT HELP2MAN)
  message(FATAL_ERROR "help2man not found (it writes the man pages): apt-get install help2man (or run tools/deps.sh)")
endif()
foreach(page IN ITEMS "dtsd;8;dtsd" "dtsctl;1;dtsctl")
  list(GET page 0 tgt)
  list(GET page 1 sect)
  add_custom_command(OUTPUT ${CMAKE_BINARY_DIR}/man/${tgt}.${sect}.gz
                     COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/man
                     COMMAND ${HELP2MAN} --no-info --section=${sect} --include=${DTS_PKG}/${tgt}.h2m
                             --output=${CMAKE_BINARY_DIR}/man/${tgt}.${sect} $<TARGET_FILE:${tgt}>
                     COMMAND gzip -9nf ${CMAKE_BINARY_DIR}/man/${tgt}.${sect}
                     DEPENDS ${tgt} ${DTS_PKG}/${tgt}.h2m
                     COMMENT "man page: ${tgt}(${sect})" VERBATIM)
  list(APPEND DTS_MAN_PAGES ${CMAKE_BINARY_DIR}/man/${tgt}.${sect}.gz)
  install(FILES ${CMAKE_BINARY_DIR}/man/${tgt}.${sect}.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man${sect})
endforeach()
add_custom_command(OUTPUT ${CMAKE_BINARY_DIR}/dtsctl.bash
                   COMMAND $<TARGET_FILE:dtsctl> completion bash > ${CMAKE_BINARY_DIR}/dtsctl.bash
                   DEPENDS dtsctl COMMENT "bash completion for dtsctl" VERBATIM)
add_custom_target(dts_install_extras ALL DEPENDS ${DTS_MAN_PAGES} ${CMAKE_BINARY_DIR}/dtsctl.bash)

install(FILES ${DTS_PKG}/dtsd.conf DESTINATION ${CMAKE_INSTALL_FULL_SYSCONFDIR}/dtsd)
install(FILES ${CMAKE_BINARY_DIR}/dtsd.service DESTINATION lib/systemd/system)
install(FILES ${CMAKE_BINARY_DIR}/dtsctl.bash DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions
        RENAME dtsctl)
install(FILES ${PROJECT_SOURCE_DIR}/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/docs/ DESTINATION ${CMAKE_INSTALL_DOCDIR} FILES_MATCHING PATTERN "*.md")

# ---- the Debian package ----------------------------------------------------
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME dtsd)
set(CPACK_PACKAGE_VENDOR "dtsd")
set(CPACK_PACKAGE_CONTACT "dtsd maintainers <dtsd@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Durable Task Scheduler backend: gRPC for the Durable Task SDKs, LevelDB, dashboard")
set(CPACK_PACKAGE_DESCRIPTION "dtsd stores every step of the orchestrations and entities written with the Durable Task SDKs, pushes work to their workers over gRPC, and serves a monitoring dashboard; a drop-in for the DTS emulator. dtsctl manages it from the command line.")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON) # Depends from the binaries' shared libraries
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA "${DTS_PKG}/postinst;${DTS_PKG}/prerm;${DTS_PKG}/postrm;${DTS_PKG}/conffiles")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)

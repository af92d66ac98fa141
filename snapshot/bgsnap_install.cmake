# libbgsnap for other programs: a CMake package (find_package(bgsnap),
# then bgsnap::bgsnap or bgsnap::bgsnap_static) and a pkg-config file, both
# under ${CMAKE_INSTALL_LIBDIR}. Included by snapshot/CMakeLists.txt after
# its install(TARGETS ... EXPORT bgsnapTargets).
include(CMakePackageConfigHelpers)

set(BGSNAP_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/bgsnap)
install(EXPORT bgsnapTargets
	NAMESPACE bgsnap::
	DESTINATION ${BGSNAP_CMAKE_DIR})
configure_package_config_file(bgsnapConfig.cmake.in
	${CMAKE_CURRENT_BINARY_DIR}/bgsnapConfig.cmake
	INSTALL_DESTINATION ${BGSNAP_CMAKE_DIR})
# 0.x: a new minor version may break the API.
write_basic_package_version_file(
	${CMAKE_CURRENT_BINARY_DIR}/bgsnapConfigVersion.cmake
	VERSION ${PROJECT_VERSION}
	COMPATIBILITY SameMinorVersion)
install(FILES
	${CMAKE_CURRENT_BINARY_DIR}/bgsnapConfig.cmake
	${CMAKE_CURRENT_BINARY_DIR}/bgsnapConfigVersion.cmake
	DESTINATION ${BGSNAP_CMAKE_DIR})

# pkg-config: the prefix is only known when installing (cmake --install
# --prefix may choose another), so the file is finished then. Directories
# relative to the prefix are written as ${prefix}/..., as is customary.
foreach(_dir LIBDIR INCLUDEDIR)
	if(IS_ABSOLUTE "${CMAKE_INSTALL_${_dir}}")
		set(BGSNAP_PC_${_dir} "${CMAKE_INSTALL_${_dir}}")
	else()
		set(BGSNAP_PC_${_dir} "\${prefix}/${CMAKE_INSTALL_${_dir}}")
	endif()
endforeach()
set(BGSNAP_PC_PREFIX "@BGSNAP_PC_PREFIX@") # kept for the second pass
configure_file(bgsnap.pc.in ${CMAKE_CURRENT_BINARY_DIR}/bgsnap.pc.tmpl @ONLY)
install(CODE "
	set(BGSNAP_PC_PREFIX \"\${CMAKE_INSTALL_PREFIX}\")
	configure_file(\"${CMAKE_CURRENT_BINARY_DIR}/bgsnap.pc.tmpl\"
		\"${CMAKE_CURRENT_BINARY_DIR}/bgsnap.pc\" @ONLY)")
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/bgsnap.pc
	DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

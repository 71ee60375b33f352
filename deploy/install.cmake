# Runs at `cmake --install` time (see deploy/CMakeLists.txt), when the prefix is final:
#  - the systemd unit, its paths rewritten for this prefix, to <prefix>/lib/systemd/system
#  - the sysusers.d file to <prefix>/lib/sysusers.d/dmsgd.conf
#  - the default config to <sysconfdir>/dmsgd/config.json, only when that file does not exist:
#    an upgrade never overwrites an operator's config (the new default is always in
#    <prefix>/share/dmsgd/dmsgd.json to compare with)
# FHS: sysconfdir is /etc for the prefixes /usr and /, /etc/opt/... for /opt/..., else
# <prefix>/etc; an absolute CMAKE_INSTALL_SYSCONFDIR wins.

function(dmsg_absolute out dir)
  if(IS_ABSOLUTE "${dir}")
    set(${out} "${dir}" PARENT_SCOPE)
  else()
    set(${out} "${CMAKE_INSTALL_PREFIX}/${dir}" PARENT_SCOPE)
  endif()
endfunction()

string(REGEX REPLACE "/+$" "" dmsg_prefix "${CMAKE_INSTALL_PREFIX}")
if(IS_ABSOLUTE "${DMSG_SYSCONFDIR}")
  set(dmsg_etc "${DMSG_SYSCONFDIR}")
elseif(dmsg_prefix STREQUAL "/usr" OR dmsg_prefix STREQUAL "")
  set(dmsg_etc "/${DMSG_SYSCONFDIR}")
elseif(dmsg_prefix MATCHES "^/opt/")
  set(dmsg_etc "/${DMSG_SYSCONFDIR}${dmsg_prefix}")
else()
  set(dmsg_etc "${dmsg_prefix}/${DMSG_SYSCONFDIR}")
endif()
dmsg_absolute(dmsg_bin "${DMSG_BINDIR}")
dmsg_absolute(dmsg_unit_dir "${DMSG_UNIT_DIR}")
dmsg_absolute(dmsg_sysusers_dir "${DMSG_SYSUSERS_DIR}")

# The unit as shipped names /usr/bin and /etc/dmsgd; point it at this install.
file(READ "${DMSG_SOURCE_DIR}/systemd/dmsgd.service" dmsg_unit)
string(REPLACE "/usr/bin/dmsgd " "${dmsg_bin}/dmsgd " dmsg_unit "${dmsg_unit}")
string(REPLACE "/etc/dmsgd/" "${dmsg_etc}/dmsgd/" dmsg_unit "${dmsg_unit}")
string(REPLACE "file:///usr/share/doc/" "file://${dmsg_prefix}/share/doc/" dmsg_unit
       "${dmsg_unit}")
set(dmsg_stage "${DMSG_BINARY_DIR}/install-stage")
file(MAKE_DIRECTORY "${dmsg_stage}")
file(WRITE "${dmsg_stage}/dmsgd.service" "${dmsg_unit}")
file(INSTALL "${dmsg_stage}/dmsgd.service" DESTINATION "${dmsg_unit_dir}"
     FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
file(INSTALL "${DMSG_SOURCE_DIR}/systemd/dmsgd.sysusers" DESTINATION "${dmsg_sysusers_dir}"
     RENAME dmsgd.conf FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)

if(EXISTS "$ENV{DESTDIR}${dmsg_etc}/dmsgd/config.json")
  message(STATUS "Keeping: $ENV{DESTDIR}${dmsg_etc}/dmsgd/config.json (the new default is "
                 "share/dmsgd/dmsgd.json)")
else()
  file(INSTALL "${DMSG_SOURCE_DIR}/dmsgd.json" DESTINATION "${dmsg_etc}/dmsgd"
       RENAME config.json FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
endif()

#!/bin/sh
# @PKG@: before removal (deb prerm / rpm %preun): stop and disable on a real removal, not on upgrade.
set -e
case "${1:-}" in
    remove|0)
        if [ -d /run/systemd/system ]; then
            systemctl stop @PKG@.service >/dev/null 2>&1 || true
        fi
        systemctl disable @PKG@.service >/dev/null 2>&1 || true
        ;;
esac
exit 0

#!/bin/sh
# @PKG@: after removal (deb postrm / rpm %postun). Purge (deb) removes the state directory and the
# configuration directory, as Debian policy expects; the system user stays (its uid may own files
# elsewhere).
set -e
case "${1:-}" in
    purge)
        rm -rf /var/lib/@PKG@ /var/lib/private/@PKG@ /etc/@PKG@
        ;;
esac
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0

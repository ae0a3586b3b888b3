#!/bin/sh
# @PKG@: create the service user and group before any file lands (deb preinst / rpm %pre).
# groupadd/useradd (shadow utilities) exist on Debian, Ubuntu and RHEL alike.
set -e
if ! getent group @PKG@ >/dev/null; then
    groupadd --system @PKG@
fi
if ! getent passwd @PKG@ >/dev/null; then
    useradd --system --gid @PKG@ --home-dir /var/lib/@PKG@ --no-create-home \
        --shell /usr/sbin/nologin --comment "@PKG@ service" @PKG@
fi
exit 0

#!/bin/sh
# @PKG@: create the service user and group before any file lands (deb preinst / rpm %pre).
set -e
if ! getent group @PKG@ >/dev/null; then
    if command -v addgroup >/dev/null 2>&1; then
        addgroup --system --quiet @PKG@
    else
        groupadd --system @PKG@
    fi
fi
if ! getent passwd @PKG@ >/dev/null; then
    if command -v adduser >/dev/null 2>&1; then
        adduser --system --quiet --ingroup @PKG@ --home /var/lib/@PKG@ --no-create-home \
            --shell /usr/sbin/nologin --gecos "@PKG@ service" @PKG@
    else
        useradd --system --gid @PKG@ --home-dir /var/lib/@PKG@ --no-create-home \
            --shell /sbin/nologin --comment "@PKG@ service" @PKG@
    fi
fi
exit 0

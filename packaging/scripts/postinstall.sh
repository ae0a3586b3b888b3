#!/bin/sh
# @PKG@: after install or upgrade (deb postinst / rpm %post). The service is never enabled
# automatically; an upgrade restarts it only if it was running (try-restart).
set -e
# The configuration holds the deployment's secrets: readable by root and the service group only.
for f in /etc/@PKG@/*.yaml; do
    [ -e "$f" ] || continue
    chown root:@PKG@ "$f"
    chmod 0640 "$f"
done
chown root:@PKG@ /etc/@PKG@
chmod 0750 /etc/@PKG@
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
    # deb: "configure <old-version>" on upgrade; rpm: $1 >= 2 on upgrade.
    if [ -n "${2:-}" ] || [ "${1:-0}" -ge 2 ] 2>/dev/null; then
        systemctl try-restart @PKG@.service >/dev/null 2>&1 || true
    fi
fi
exit 0

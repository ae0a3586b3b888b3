#!/usr/bin/env bash
# scripts/salt-peer.sh - SaltStack in its own venv, cached outside the repository, for the
# command-latency peer benchmark (bench/salt_peer.py). Salt is never a dependency of the project.
#
#   scripts/salt-peer.sh            create the venv if missing, print its python
#   scripts/salt-peer.sh --force    recreate it
#
# $SALT_VENV overrides the location (default ~/.cache/monitord/salt-venv); $SALT_VERSION the pin.
set -euo pipefail

SALT_VERSION=${SALT_VERSION:-3007.8}
SALT_VENV=${SALT_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/monitord/salt-venv}
PYTHON=${SALT_PYTHON:-python3.11}
# The salt sdist on the registry declares no dependencies at all (its requirements/*.txt are not in
# the metadata), so the runtime ones a master + minion + LocalClient import are pinned here; these
# are the versions checked to work with it on Python 3.11.
EXTRA_PINS=(
    tornado==6.4.2 pyzmq==26.4.0 msgpack==1.1.0 "PyYAML==6.0.2" "Jinja2==3.1.6" "MarkupSafe==3.0.2"
    looseversion==1.3.0 packaging==24.0 distro==1.9.0 jmespath==1.0.1 psutil==6.1.1
    "requests==2.32.3" "cryptography==44.0.2" pycryptodomex==3.21.0 "aiohttp==3.11.18"
    "setuptools<80"
)

wanted="salt==$SALT_VERSION ${EXTRA_PINS[*]}"
marker=$SALT_VENV/.monitord-salt-peer
remove_venv() {
    # Only ever delete something that is a venv (never whatever $SALT_VENV happens to name).
    if [[ -e $SALT_VENV ]]; then
        [[ -f $SALT_VENV/pyvenv.cfg ]] || { echo "$SALT_VENV exists and is not a venv; not touching it" >&2; exit 1; }
        rm -rf "$SALT_VENV"
    fi
}
if [[ ${1:-} == --force ]]; then remove_venv; fi
if [[ ! -f $marker || $(cat "$marker") != "$wanted" ]]; then
    remove_venv
    mkdir -p "$(dirname "$SALT_VENV")"
    "$PYTHON" -m venv "$SALT_VENV" >&2
    "$SALT_VENV/bin/pip" install --quiet --disable-pip-version-check --upgrade pip wheel "setuptools<80" >&2
    "$SALT_VENV/bin/pip" install --quiet --disable-pip-version-check "salt==$SALT_VERSION" "${EXTRA_PINS[@]}" >&2
    "$SALT_VENV/bin/python" -c 'import salt.version, salt.client; print("salt", salt.version.__version__)' >&2
    echo "$wanted" >"$marker"
fi
echo "$SALT_VENV/bin/python"

#!/bin/sh
# Re-render the golden files with the real Helm (see helm-golden.py).
# Installs helm-python-sdk (Helm v4's Go library in a wheel) into a venv.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
venv=${HELM_VENV:-/tmp/tollway-helm-venv}
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q helm-python-sdk==0.2.2
fi
exec "$venv/bin/python" "$here/helm-golden.py"

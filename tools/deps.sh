#!/bin/sh
# Install what dtsd needs on Debian 12, and nothing that is already there.
# Needs root (or sudo). Safe to run repeatedly.
set -eu

PKGS="build-essential cmake ninja-build pkg-config \
libgrpc-dev libprotobuf-dev protobuf-compiler \
libprotobuf-c-dev protobuf-c-compiler \
libleveldb-dev libck-dev libjemalloc-dev libcmocka-dev \
libmicrohttpd-dev libjansson-dev libssl-dev libcurl4-openssl-dev libgnutls28-dev \
clang libclang-rt-14-dev llvm help2man \
nodejs npm"
# `deps.sh test`: and what only the tests need (the dashboard's browser tests)
if [ "${1:-}" = "test" ]; then PKGS="$PKGS chromium openssl"; fi

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

# Node.js and npm may come from elsewhere (nvm, nodesource); accept them if they run.
case "$missing" in
    *nodejs*|*npm*)
        if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
            missing=$(echo "$missing" | sed -e 's/ nodejs//' -e 's/ npm//')
        fi ;;
esac

if [ -n "$missing" ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
            echo "deps: need root or sudo to install:$missing" >&2; exit 1
        fi
    fi
    echo "deps: installing$missing"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
    # shellcheck disable=SC2086  # word splitting of the package list is intended
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
fi

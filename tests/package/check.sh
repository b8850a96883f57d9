#!/bin/sh
# check.sh <dtsd_*.deb> -- checks the Debian package tools/package.sh built,
# installed into a throwaway root (dpkg-deb -x): its metadata and maintainer
# scripts, every file an admin expects where Debian puts it, the systemd
# unit, the man pages; then runs what it installed: dtsd with the packaged
# settings file (flags over it, so it binds free ports in a temp dir),
# dtsctl against it, and a program built against the packaged libdtsd
# through its pkg-config file.
set -eu
DEB=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
HERE=$(cd "$(dirname "$0")" && pwd)
T=$(mktemp -d /tmp/dtsd-pkgcheck-XXXXXX)
R="$T/root"
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
fail() { echo "package check: $*" >&2; exit 1; }

# metadata
info=$(dpkg-deb -I "$DEB")
for want in "Package: dtsd" "adduser" "libgrpc29" "libleveldb1d" "libjemalloc2" "libmicrohttpd12"; do
    echo "$info" | grep -q "$want" || fail "control lacks '$want'"
done
mkdir -p "$T/ctl"
dpkg-deb -e "$DEB" "$T/ctl"
grep -qx "/etc/dtsd/dtsd.conf" "$T/ctl/conffiles" || fail "dtsd.conf is not a conffile"
for s in postinst prerm postrm; do sh -n "$T/ctl/$s" || fail "$s does not parse"; done
grep -q "adduser --system" "$T/ctl/postinst" || fail "postinst makes no system user"

# files
dpkg-deb -x "$DEB" "$R"
ML=$(ls -d "$R"/usr/lib/*-linux-gnu | head -1)
for f in usr/bin/dtsd usr/bin/dtsctl usr/include/dtsd.h etc/dtsd/dtsd.conf usr/lib/systemd/system/dtsd.service \
         usr/share/man/man8/dtsd.8.gz usr/share/man/man1/dtsctl.1.gz usr/share/bash-completion/completions/dtsctl \
         usr/share/doc/dtsd/README.md usr/share/doc/dtsd/schedules.md; do
    [ -s "$R/$f" ] || fail "missing /$f"
done
[ -s "$ML/libdtsd.a" ] && [ -s "$ML/pkgconfig/dtsd.pc" ] || fail "libdtsd or its pkg-config file missing"
gzip -dc "$R/usr/share/man/man8/dtsd.8.gz" | grep -q '^\.TH DTSD "8"' || fail "dtsd.8 is not a man page"
gzip -dc "$R/usr/share/man/man8/dtsd.8.gz" | grep -q 'data\\-dir' || fail "dtsd.8 lacks the flags"
gzip -dc "$R/usr/share/man/man1/dtsctl.1.gz" | grep -q '^\.TH DTSCTL "1"' || fail "dtsctl.1 is not a man page"
bash -n "$R/usr/share/bash-completion/completions/dtsctl" || fail "the completion script does not parse"

# the unit
U="$R/usr/lib/systemd/system/dtsd.service"
for want in "ExecStart=/usr/bin/dtsd --config /etc/dtsd/dtsd.conf" "User=dtsd" "Restart=on-failure" "LimitNOFILE=" \
            "StateDirectory=dtsd" "NoNewPrivileges=yes" "ProtectSystem=strict" "WantedBy=multi-user.target"; do
    grep -q "^$want" "$U" || fail "the unit lacks '$want'"
done
if command -v systemd-analyze >/dev/null 2>&1; then
    # verify against the extracted tree: ExecStart's binary must exist there
    mkdir -p "$T/verify/usr/bin"
    cp "$R/usr/bin/dtsd" "$T/verify/usr/bin/"
    sed "s#/usr/bin/dtsd#$T/verify/usr/bin/dtsd#" "$U" > "$T/verify/dtsd.service"
    out=$(systemd-analyze verify "$T/verify/dtsd.service" 2>&1 | grep -v -e "Failed to connect" -e "bus" -e "Command 'man " || true) # the man pages are in the root, not installed
    [ -z "$out" ] || fail "systemd-analyze verify: $out"
fi

# run it: the packaged settings file, with flags over it
"$R/usr/bin/dtsd" --version | grep -q "^dtsd " || fail "dtsd --version"
"$R/usr/bin/dtsd" --config "$R/etc/dtsd/dtsd.conf" --data-dir "$T/data" --address 127.0.0.1:0 \
    --http-address off --health-address off --port-file "$T/port" --log-level warn &
PID=$!
i=0
while [ ! -s "$T/port" ]; do
    i=$((i + 1)); [ $i -lt 200 ] || fail "dtsd did not start"
    kill -0 "$PID" 2>/dev/null || fail "dtsd exited at start"
    sleep 0.05
done
hubs=$(DTSD_ENDPOINT="127.0.0.1:$(cat "$T/port")" "$R/usr/bin/dtsctl" hubs list)
[ "$hubs" = "default" ] || fail "dtsctl hubs list answered '$hubs'"
kill "$PID"; wait "$PID" || fail "dtsd did not stop cleanly"; PID=""
[ -s "$T/data/CURRENT" ] || fail "the data directory from the flag was not used"

# libdtsd through its pkg-config file
export PKG_CONFIG_SYSROOT_DIR="$R" PKG_CONFIG_PATH="$ML/pkgconfig"
# shellcheck disable=SC2046  # pkg-config's output is a list of words
cc -o "$T/embed" "$HERE/embed.c" $(pkg-config --cflags dtsd) $(pkg-config --libs dtsd) \
    || fail "a program does not build against libdtsd"
"$T/embed" | grep -q '^[0-9][0-9]*$' || fail "the program built against libdtsd did not serve"
echo "package check: $(basename "$DEB") passed"

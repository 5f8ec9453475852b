#!/bin/bash
# Build Debian bookworm's QEMU 7.2 (x86_64-softmmu only, KVM only, minimal
# features) with the patch series in userspace/qemu/patches linked against
# libdirtybatch.
#
#   userspace/qemu/build.sh [--no-deps] [--no-lib] [--force-configure]
#                           [--without-dirtybatch]
#
# --without-dirtybatch builds the same patched tree without libdirtybatch
# (CONFIG_DIRTYBATCH unset) into build/qemu-nolib, to check that the
# series then compiles to upstream's behaviour.
#
# Idempotent and incremental: every step is skipped when its output is up
# to date; a changed patch rewrites only the files whose patched content
# changed (others keep their timestamps), so ninja recompiles only those.
#
#   build/qemu-dl/      apt-get source download (.dsc, .orig.tar.xz, ...)
#   build/qemu-src/     unpacked source, Debian patches + our series applied
#   build/qemu-orig/    pristine copies of the files our series touches
#   build/qemu/         meson/ninja build; qemu-system-x86_64 is here
#   build/qemu/dirtybatch/  libdirtybatch installed for pkg-config (+rpath)
#
# Environment: QEMU_VERSION (default: the bookworm version), BUILD_DIR
# (default: <repo>/build), NICE (default: "nice -n 10"), JOBS (default:
# nproc).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
B=${BUILD_DIR:-$TOP/build}
DL=$B/qemu-dl
SRC=$B/qemu-src
ORIG=$B/qemu-orig
OUT=$B/qemu
DBPREFIX=$OUT/dirtybatch
NICE=${NICE-nice -n 10}
JOBS=${JOBS:-$(nproc)}
PATCHES=$HERE/patches
SERIES=$PATCHES/series

DEPS=1 LIB=1 FORCE_CONF=0 WITH_DB=1
for a in "$@"; do
	case $a in
	--no-deps) DEPS=0 ;;
	--no-lib) LIB=0 ;;
	--force-configure) FORCE_CONF=1 ;;
	--without-dirtybatch) WITH_DB=0 LIB=0; OUT=$B/qemu-nolib ;;
	-h|--help) sed -n '2,26p' "$0"; exit 0 ;;
	*) echo "build.sh: unknown option $a" >&2; exit 2 ;;
	esac
done

step() { echo "== qemu: $*"; }

# ---------------------------------------------------------------- deps
SRCLIST=/etc/apt/sources.list.d/kvm-dirtybatch-bookworm-src.sources
PKGS="dpkg-dev ninja-build meson pkg-config python3 libglib2.0-dev
      libpixman-1-dev zlib1g-dev libfdt-dev gcc make binutils"
if [ "$DEPS" = 1 ]; then
	if [ ! -e "$SRCLIST" ]; then
		step "adding deb-src for bookworm ($SRCLIST)"
		cat > "$SRCLIST" <<-'EOF'
		# kvm-dirtybatch: QEMU 7.2 source for userspace/qemu (apt-get source qemu)
		Types: deb-src
		URIs: http://deb.debian.org/debian
		Suites: bookworm
		Components: main
		Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
		EOF
		apt-get update -qq
	fi
	missing=
	for p in $PKGS; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
			missing="$missing $p"
	done
	if [ -n "${missing// /}" ]; then
		step "installing build dependencies:" $missing
		# shellcheck disable=SC2086
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
	fi
fi

# ---------------------------------------------------------------- source
if [ ! -e "$SRC/.dirtybatch-unpacked" ]; then
	mkdir -p "$DL"
	if [ -z "${QEMU_VERSION:-}" ]; then
		QEMU_VERSION=$(apt-cache showsrc qemu |
			awk '/^Version:/ {print $2}' | sort -V | grep '^1:7\.2' | tail -1)
	fi
	[ -n "$QEMU_VERSION" ] || { echo "build.sh: no qemu 7.2 source in apt (deb-src?)" >&2; exit 1; }
	dsc=$(ls "$DL"/qemu_*.dsc 2>/dev/null | head -1 || true)
	if [ -z "$dsc" ]; then
		step "apt-get source qemu=$QEMU_VERSION"
		(cd "$DL" && apt-get source --download-only -qq "qemu=$QEMU_VERSION")
		dsc=$(ls "$DL"/qemu_*.dsc | head -1)
	fi
	step "unpacking $(basename "$dsc") into $SRC"
	rm -rf "$SRC" "$ORIG"
	dpkg-source --no-check -x "$dsc" "$SRC" >/dev/null
	touch "$SRC/.dirtybatch-unpacked"
fi

# ---------------------------------------------------------------- series
# Files a patch touches ("+++ b/path", or "--- a/path" for deletions).
patch_files() {
	awk '/^\+\+\+ / { f = $2; sub(/^b\//, "", f); if (f != "/dev/null") print f }
	     /^--- / { f = $2; sub(/^a\//, "", f); if (f != "/dev/null") print f }' "$@" |
		sort -u
}
series_patches() {
	sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$SERIES" | while read -r p _; do
		echo "$PATCHES/$p"
	done
}

mkdir -p "$ORIG"
touch "$ORIG/.touched"
mapfile -t plist < <(series_patches)
cur_files=$(patch_files "${plist[@]}")
# Save pristine copies before we ever modify a file ("-" = did not exist).
for f in $cur_files; do
	grep -qxF "$f" "$ORIG/.touched" && continue
	if [ -e "$SRC/$f" ]; then
		mkdir -p "$ORIG/$(dirname "$f")"
		cp -p "$SRC/$f" "$ORIG/$f"
	fi
	echo "$f" >> "$ORIG/.touched"
done
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
while read -r f; do
	[ -n "$f" ] || continue
	if [ -e "$ORIG/$f" ]; then
		mkdir -p "$stage/$(dirname "$f")"
		cp -p "$ORIG/$f" "$stage/$f"
	fi
done < "$ORIG/.touched"
for p in "${plist[@]}"; do
	if ! patch -p1 -d "$stage" -s -f --no-backup-if-mismatch < "$p"; then
		echo "build.sh: $(basename "$p") does not apply to QEMU $(<"$SRC/VERSION")" >&2
		exit 1
	fi
done
changed=0
while read -r f; do
	[ -n "$f" ] || continue
	if [ -e "$stage/$f" ]; then
		if ! cmp -s "$stage/$f" "$SRC/$f"; then
			mkdir -p "$SRC/$(dirname "$f")"
			cp "$stage/$f" "$SRC/$f"
			changed=$((changed + 1))
		fi
	elif [ -e "$SRC/$f" ]; then
		rm -f "$SRC/$f"
		changed=$((changed + 1))
	fi
done < "$ORIG/.touched"
step "series: ${#plist[@]} patches applied, $changed file(s) updated"

# ---------------------------------------------------------------- library
if [ "$LIB" = 1 ]; then
	step "libdirtybatch -> $DBPREFIX"
	make -s -C "$TOP/userspace" O="$B" lib >/dev/null
	# Install into a staging dir and copy only what changed, so that an
	# unchanged library does not relink QEMU.
	dbstage=$(mktemp -d)
	make -s -C "$TOP/userspace" O="$B" install PREFIX="$DBPREFIX" \
		DESTDIR="$dbstage" >/dev/null
	(cd "$dbstage$DBPREFIX" && find . ! -type d) | while read -r f; do
		if [ -L "$dbstage$DBPREFIX/$f" ] ||
		   ! cmp -s "$dbstage$DBPREFIX/$f" "$DBPREFIX/$f"; then
			mkdir -p "$(dirname "$DBPREFIX/$f")"
			cp -Pp "$dbstage$DBPREFIX/$f" "$DBPREFIX/$f.new" &&
				mv -f "$DBPREFIX/$f.new" "$DBPREFIX/$f"
		fi
	done
	rm -rf "$dbstage"
fi
if [ "$WITH_DB" = 1 ]; then
	export PKG_CONFIG_PATH="$DBPREFIX/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
elif pkg-config --exists dirtybatch 2>/dev/null; then
	echo "build.sh: --without-dirtybatch, but pkg-config finds dirtybatch" >&2
	exit 1
fi

# ---------------------------------------------------------------- configure
CONF=(
	--prefix="$OUT/install"
	--target-list=x86_64-softmmu
	--without-default-features
	--without-default-devices
	--with-devices-x86_64=dirtybatch
	--enable-kvm --disable-tcg
	--disable-docs --disable-tools --disable-user --disable-guest-agent
	--audio-drv-list=
	--disable-debug-info --disable-werror
)
[ "$WITH_DB" = 1 ] && CONF+=(--extra-ldflags="-Wl,-rpath,$DBPREFIX/lib")
confhash=$( { printf '%s\n' "${CONF[@]}"; cat "$HERE/devices.mak"; } | sha1sum | cut -c1-12)
if ! cmp -s "$HERE/devices.mak" "$SRC/configs/devices/x86_64-softmmu/dirtybatch.mak"; then
	cp "$HERE/devices.mak" "$SRC/configs/devices/x86_64-softmmu/dirtybatch.mak"
fi
if [ "$FORCE_CONF" = 1 ] || [ ! -e "$OUT/build.ninja" ] ||
   [ "$(cat "$OUT/.dirtybatch-conf" 2>/dev/null)" != "$confhash" ]; then
	step "configure (x86_64-softmmu, KVM only, minimal)"
	rm -rf "$OUT/meson-private" "$OUT/build.ninja"
	mkdir -p "$OUT"
	(cd "$OUT" && $NICE "$SRC/configure" "${CONF[@]}" > "$OUT/configure.log" 2>&1) || {
		tail -30 "$OUT/configure.log" >&2; exit 1; }
	echo "$confhash" > "$OUT/.dirtybatch-conf"
	grep -i 'libdirtybatch' "$OUT/configure.log" | sed 's/^/   /' || true
fi

# ---------------------------------------------------------------- build
step "ninja qemu-system-x86_64 (-j$JOBS${NICE:+, $NICE})"
filter() {
	# progress: one line every 10% of the ninja steps, plus diagnostics
	local last=-1 l n d t pct
	while IFS= read -r l; do
		case $l in
		\[*/*\]*)
			n=${l#[}; n=${n%%]*}; d=${n%/*}; t=${n#*/}
			pct=$((d * 100 / t / 10))
			if [ "$pct" != "$last" ]; then echo "   [$d/$t]"; last=$pct; fi ;;
		*error*|*Error*|*warning:*|FAILED*) echo "$l" ;;
		esac
	done
}
# shellcheck disable=SC2086
if ! $NICE ninja -C "$OUT" -j "$JOBS" qemu-system-x86_64 | filter; then
	echo "build.sh: ninja failed (rerun: ninja -C $OUT)" >&2
	exit 1
fi
step "done: $OUT/qemu-system-x86_64"

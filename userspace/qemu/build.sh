#!/bin/bash
# Build one of Debian's QEMUs (x86_64-softmmu only, KVM only, minimal
# features, the devices of devices.mak) with the series of
# userspace/qemu/<version>/ applied, linked against libdirtybatch.
#
#   userspace/qemu/build.sh [VERSION] [--no-deps] [--no-lib]
#                           [--force-configure] [--without-dirtybatch]
#                           [--without-fix]
#
# VERSION is 7.2 (bookworm, the default), 10.0 (trixie) or 10.2 (sid);
# the exact Debian source versions are in scripts/qemu-deps.sh, which
# also fetches them (apt-get source) and provides trixie's meson 1.7 for
# 10.x (bookworm's meson 1.0 builds 7.2).
# --without-dirtybatch builds the same patched tree without libdirtybatch
# (CONFIG_DIRTYBATCH unset) into <dir>/build-nolib, to check that the
# series then compiles to upstream's behaviour.
# --without-fix leaves out the series' patches marked "upstream-fix"
# (10.2: the backport of e8a6d158dbfa) into its own tree <version>-nofix:
# QEMU 10.2 as Debian ships it, plus the library patches.
#
# Idempotent and incremental: every step is skipped when its output is up
# to date; a changed patch rewrites only the files whose patched content
# changed (others keep their timestamps), so ninja recompiles only those.
# Under $QEMU_BUILD/<version>[-nofix]/:
#
#   src/            unpacked source, Debian patches + our series applied
#   orig/           pristine copies of the files our series touches
#   build/          meson/ninja build; qemu-system-x86_64 is here
#   dirtybatch/     libdirtybatch installed for pkg-config (+rpath)
#
# Environment: QEMU_CACHE (default /var/cache/kvm-dirtybatch/qemu),
# QEMU_BUILD (default $QEMU_CACHE/build), NICE (default "nice -n 10"),
# JOBS (default: 2).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
QEMU_CACHE=${QEMU_CACHE:-/var/cache/kvm-dirtybatch/qemu}
QB=${QEMU_BUILD:-$QEMU_CACHE/build}
NICE=${NICE-nice -n 10}
JOBS=${JOBS:-2}

V=7.2
DEPS=1 LIB=1 FORCE_CONF=0 WITH_DB=1 FIX=1
for a in "$@"; do
	case $a in
	7.2|10.0|10.2) V=$a ;;
	--no-deps) DEPS=0 ;;
	--no-lib) LIB=0 ;;
	--force-configure) FORCE_CONF=1 ;;
	--without-dirtybatch) WITH_DB=0 LIB=0 ;;
	--without-fix) FIX=0 ;;
	-h|--help) sed -n '2,40p' "$0"; exit 0 ;;
	*) echo "build.sh: unknown option $a" >&2; exit 2 ;;
	esac
done
PATCHES=$HERE/$V
SERIES=$PATCHES/series
TREE=$QB/$V
[ "$FIX" = 1 ] || TREE=$QB/$V-nofix
SRC=$TREE/src
ORIG=$TREE/orig
OUT=$TREE/build
[ "$WITH_DB" = 1 ] || OUT=$TREE/build-nolib
DBPREFIX=$TREE/dirtybatch

step() { echo "== qemu $V: $*"; }

# ---------------------------------------------------------------- deps
PKGS="dpkg-dev ninja-build meson pkg-config python3 libglib2.0-dev
      libpixman-1-dev zlib1g-dev libfdt-dev gcc make binutils"
MESON=
if [ "$DEPS" = 1 ]; then
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
	want="$V"
	[ "$V" = 7.2 ] || want="$V meson"
	# shellcheck disable=SC2086
	deps=$("$TOP/scripts/qemu-deps.sh" $want)
else
	deps=$("$TOP/scripts/qemu-deps.sh" --print "$V")
fi
dsc=$(awk -v v="$V" '$1 == "qemu" && $2 == v {print $3}' <<<"$deps")
[ "$V" = 7.2 ] || MESON=$QEMU_CACHE/meson-1.7.0-1/meson-run
if [ -n "$MESON" ]; then
	# configure's venv finds meson >= 1.5 among the system site packages
	# only through PYTHONPATH (Debian's +ds tarball has no bundled one).
	mpy=$(sed -n 's/^PYTHONPATH=\([^$]*\).*/\1/p' "$MESON")
	export PYTHONPATH=$mpy${PYTHONPATH:+:$PYTHONPATH}
fi

# ---------------------------------------------------------------- source
if [ ! -e "$SRC/.dirtybatch-unpacked" ]; then
	[ -e "$dsc" ] || { echo "build.sh: no source for QEMU $V (scripts/qemu-deps.sh $V)" >&2; exit 1; }
	step "unpacking $(basename "$dsc") into $SRC"
	rm -rf "$SRC" "$ORIG"
	mkdir -p "$TREE"
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
# Patches of the series, in order; a line may name a patch of another
# version's directory (../10.2/NNNN-x.patch).  "# upstream-fix" after a
# patch marks it for --without-fix.
series_patches() {
	local l p
	while IFS= read -r l; do
		if [ "$FIX" = 0 ] && [[ $l == *"# upstream-fix"* ]]; then
			continue
		fi
		p=${l%%#*}
		p=${p%%[[:space:]]*}
		[ -n "$p" ] && echo "$PATCHES/$p"
	done < "$SERIES"
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
	make -s -C "$TOP/userspace" O="$TREE/lib-obj" lib >/dev/null
	# Install into a staging dir and copy only what changed, so that an
	# unchanged library does not relink QEMU.
	dbstage=$(mktemp -d)
	make -s -C "$TOP/userspace" O="$TREE/lib-obj" install PREFIX="$DBPREFIX" \
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
# Nothing is installed: the prefix only names where firmware would be.
CONF=(
	--prefix=/opt/kvm-dirtybatch-qemu
	--target-list=x86_64-softmmu
	--without-default-features
	--without-default-devices
	--with-devices-x86_64=dirtybatch
	--enable-kvm --disable-tcg
	--disable-docs --disable-tools --disable-user --disable-guest-agent
	--audio-drv-list=
	--disable-debug-info --disable-werror
	--disable-install-blobs
)
# Debian's python3 (and so the system's meson) even if another is first
# in PATH; 7.2's configure takes --python only with its embedded meson.
export PATH=/usr/bin:$PATH
# 10.x: never download subprojects (Debian's tarball has what it needs)
[ "$V" = 7.2 ] || CONF+=(--python=/usr/bin/python3 --disable-download)
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
	# shellcheck disable=SC2086
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

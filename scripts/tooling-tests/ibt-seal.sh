#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Can the module call the KVM functions it resolves through kallsyms on a
# host that enforces IBT (Intel Tiger Lake, Sapphire Rapids and later)?
# With CONFIG_X86_KERNEL_IBT=y objtool lists in .ibt_endbr_seal every
# ENDBR64 of a function whose address is never taken, and the kernel
# overwrites those with a NOP when it loads the module (apply_seal_endbr(),
# on every CPU); where IBT is enforced an indirect call to such a function
# traps, so module/symbols.c refuses to load when one lacks its ENDBR64.
# The emulator has no CET, so this is read from the binaries, for every
# installed kernel's kvm.ko (/lib/modules/<rel>/kernel/arch/x86/kvm/kvm.ko
# or .ko.xz/.ko.zst/.ko.gz, decompressed to a temporary directory):
#   - CONFIG_X86_KERNEL_IBT from /boot/config-<rel> (or <moddir>/config);
#   - readelf -rW of .rela.ibt_endbr_seal: each entry is an R_X86_64_PC32
#     against a section (or symbol) plus an addend, mapped to the function
#     that starts there (readelf -sW); every one must map to a function and
#     be an ENDBR64 in the file, or the parsing is wrong;
#   - for each of the four functions the module resolves
#     (kvm_arch_mmu_enable_log_dirty_pt_masked, kvm_arch_sync_dirty_log,
#     file_is_kvm, kvm_flush_remote_tlbs): sealed or not, its first bytes,
#     and whether it is linked (exported with no namespace: __ksymtab_ and
#     an empty __kstrtabns_) or resolved through kallsyms;
#   - if the kernel's vmlinux with symbols is there (linux-image-<rel>-dbg:
#     /usr/lib/debug/boot/vmlinux-<rel>), whether kallsyms_lookup_name,
#     which the module calls through a pointer first, is sealed too.
# One test point per kernel.  It fails if the analysis did not work (IBT=y
# but no seal section, an entry not parsed or not on an ENDBR64, one of the
# four not found) or contradicts what is known: 6.1 is built without IBT
# (nothing sealed, no ENDBR64); 6.12 and 7.3 with IBT, sealing exactly
# kvm_arch_mmu_enable_log_dirty_pt_masked and kvm_arch_sync_dirty_log, so
# the module cannot load on an IBT-enforcing host; on 7.3 file_is_kvm and
# kvm_flush_remote_tlbs are exported to kvm-amd/kvm-intel only (kallsyms).
#
# Environment: IBT_SEAL_ROOTS, directories holding unpacked kernel packages
# (dpkg-deb -x) to check as well; IBT_SEAL_FETCH, kernel series (e.g. "7.3")
# whose newest amd64 kernel is downloaded (apt-get download, a private apt
# state in a temporary directory, nothing installed) from IBT_SEAL_SUITE
# (default trixie-backports) and checked; IBT_SEAL_FETCH_DBG=1 also fetches
# its -dbg package for vmlinux (over 1 GB).  Loads nothing.  Needs readelf
# and perl.  TAP; exit 0 pass, 1 fail, 4 skip (no kernel with kvm.ko).
set -u
cd "$(dirname "$0")/../.." || exit 1
tmp=$(mktemp -d /tmp/kvm-dirtybatch-ibt.XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT

n=0 failed=0
ok() { n=$((n + 1)) && echo "ok $n - $*"; }
not_ok() { n=$((n + 1)) failed=1 && echo "not ok $n - $*"; }
finish() { echo "1..$n" && exit "$failed"; }

# The functions module/symbols.c resolves, in its order.
syms="kvm_arch_mmu_enable_log_dirty_pt_masked kvm_arch_sync_dirty_log file_is_kvm kvm_flush_remote_tlbs"
ibt_sealed="kvm_arch_mmu_enable_log_dirty_pt_masked kvm_arch_sync_dirty_log"

# What is known per series: IBT (y/n), the functions among the four that
# are sealed, and those resolved through kallsyms rather than linked.
expect() { # series -> "ibt|sealed|kallsyms", or nothing
	case $1 in
	6.1) echo "n||kvm_arch_mmu_enable_log_dirty_pt_masked kvm_arch_sync_dirty_log" ;;
	6.12) echo "y|$ibt_sealed|kvm_arch_mmu_enable_log_dirty_pt_masked kvm_arch_sync_dirty_log" ;;
	7.3) echo "y|$ibt_sealed|$syms" ;;
	esac
}

# Fetch the newest kernel of a series into $tmp/fetch-<series>/root without
# installing it: a private apt state that knows only IBT_SEAL_SUITE.
fetch() { # series; prints the root
	local s=$1 a=$tmp/apt-$1 r=$tmp/fetch-$1 img abi p pkgs=()
	local suite=${IBT_SEAL_SUITE:-trixie-backports}
	mkdir -p "$a/lists/partial" "$a/cache/archives/partial" "$a/etc/sources.list.d" \
		"$a/etc/preferences.d" "$r/debs" "$r/root" || return 1
	echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $suite main" \
		>"$a/etc/sources.list"
	: >"$a/status"
	cat >"$a/apt.conf" <<-EOF
		Dir::State "$a";
		Dir::State::Lists "$a/lists";
		Dir::State::status "$a/status";
		Dir::Cache "$a/cache";
		Dir::Etc::sourcelist "$a/etc/sources.list";
		Dir::Etc::sourceparts "$a/etc/sources.list.d";
		Dir::Etc::preferences "$a/etc/preferences";
		Dir::Etc::preferencesparts "$a/etc/preferences.d";
		APT::Architectures { "amd64"; };
		APT::Sandbox::User "root";
	EOF
	export APT_CONFIG=$a/apt.conf
	apt-get -qq update >"$r/log" 2>&1 || { sed 's/^/#   /' "$r/log" >&2; return 1; }
	img=$(apt-cache search --names-only "^linux-image-${s//./\\.}\\.[0-9]+\\+deb[0-9]+-amd64\$" |
		awk '{print $1}' | sort -V | tail -n1)
	[ -n "$img" ] || { echo "# fetch $s: $suite has no linux-image-$s.*-amd64" >&2; return 1; }
	abi=${img#linux-image-}
	# 7.x splits the image: modules and config in linux-modules/-base.
	if apt-cache show "linux-modules-$abi" >/dev/null 2>&1; then
		pkgs=("linux-modules-$abi" "linux-base-$abi")
	else
		pkgs=("linux-image-$abi-unsigned")
	fi
	[ "${IBT_SEAL_FETCH_DBG:-0}" = 1 ] && pkgs+=("linux-image-$abi-dbg")
	(cd "$r/debs" && apt-get -qq download "${pkgs[@]}") >>"$r/log" 2>&1 ||
		{ sed 's/^/#   /' "$r/log" >&2; return 1; }
	for p in "$r"/debs/*.deb; do
		case $p in
		*-dbg_*) dpkg-deb --fsys-tarfile "$p" |
			tar -x -C "$r/root" --wildcards './usr/lib/debug/boot/vmlinux-*' \
				'./usr/lib/debug/lib/modules/*/vmlinux' 2>/dev/null ;;
		*) dpkg-deb -x "$p" "$r/root" ;;
		esac || return 1
		echo "# fetch $s: ${p##*/} (downloaded from $suite, not installed)" >&2
		rm -f "$p"
	done
	unset APT_CONFIG
	echo "$r/root"
}

# The first existing file among the arguments.
first() { local f; for f in "$@"; do [ -e "$f" ] && { echo "$f"; return 0; }; done; return 1; }

# Bytes at file offsets (read on stdin, one a line) as hex, one a line.
bytes_at() { # file len
	perl -e 'open my $f, "<:raw", $ARGV[0] or die; while (<STDIN>) { chomp; seek $f, $_, 0;
		read $f, my $b, $ARGV[1]; print unpack("H*", $b), "\n" }' "$1" "$2"
}
# The NUL-terminated string at a file offset.
string_at() { # file offset
	perl -e 'open my $f, "<:raw", $ARGV[0] or die; seek $f, $ARGV[1], 0; read $f, my $b, 256;
		print +(split /\0/, $b, 2)[0] // ""' "$1" "$2"
}

# readelf -SW, -sW and -rW of a kvm.ko -> records (see the END block).
analyze_ko() { # ko
	readelf -SW "$1" >"$tmp/S" && readelf -sW "$1" >"$tmp/s" && readelf -rW "$1" >"$tmp/r" || return 1
	awk -v want="$syms" '
	function hex(s,   v, i, c) {
		s = tolower(s); sub(/^0x/, "", s); v = 0
		for (i = 1; i <= length(s); i++) {
			c = index("0123456789abcdef", substr(s, i, 1))
			if (!c) return -1
			v = v * 16 + c - 1
		}
		return v
	}
	BEGIN { nw = split(want, w, " "); for (i = 1; i <= nw; i++) wanted[w[i]] = 1 }
	FILENAME == ARGV[1] {	# "  [Nr] Name Type Address Off Size ..."
		if (!match($0, /^ *\[ *[0-9]+\] /)) next
		h = substr($0, RSTART, RLENGTH); gsub(/[^0-9]/, "", h)
		split(substr($0, RSTART + RLENGTH), f, " ")
		secname[h + 0] = f[1]; secidx[f[1]] = h + 0; secoff[h + 0] = hex(f[4])
		next
	}
	FILENAME == ARGV[2] {	# "Num: Value Size Type Bind Vis Ndx Name"
		if ($1 !~ /^[0-9]+:$/ || NF < 8 || $(NF - 1) !~ /^[0-9]+$/) next
		name = $NF; symndx[name] = $(NF - 1) + 0; symval[name] = hex($2)
		if (name in wanted && $4 == "FUNC") rawsym[name] = $0
		if (name ~ /^__ksymtab_/) ksymtab[substr(name, 11)] = 1
		if (name ~ /^__kstrtabns_/) kstrtabns[substr(name, 13)] = secoff[$(NF - 1) + 0] + hex($2)
		if ($4 == "FUNC" && name !~ /^__pfx_/) {
			nf++; fname[nf] = name; fsec[nf] = $(NF - 1) + 0; fval[nf] = hex($2)
			fsize[nf] = ($3 ~ /^0x/) ? hex($3) : $3 + 0
			if (!(name in wanted)) next
			wsec[name] = fsec[nf]; wval[name] = fval[nf]
		}
		next
	}
	/^Relocation section / { inseal = ($0 ~ /\047\.rela\.ibt_endbr_seal\047/); if (inseal) found = $0; next }
	!inseal || $1 !~ /^[0-9a-f]+$/ { next }
	{	# "Offset Info Type Sym.Value Sym.Name + Addend"
		entries++
		if (NF != 7 || $3 != "R_X86_64_PC32" || ($6 != "+" && $6 != "-") ||
		    !($5 in secidx || $5 in symndx)) {
			bad++; print "BADREL " $0; next
		}
		sec = ($5 in secidx) ? secidx[$5] : symndx[$5]
		off = (($5 in secidx) ? 0 : symval[$5]) + ($6 == "+" ? 1 : -1) * hex($7)
		ns++; ssec[ns] = sec; soff[ns] = off; sraw[ns] = $0
	}
	END {
		print "SECTION " (found ? found : "none")
		print "ENTRIES " entries + 0 " BAD " bad + 0
		for (i = 1; i <= ns; i++) {
			at = ""
			for (j = 1; j <= nf; j++)
				if (fsec[j] == ssec[i] && fval[j] == soff[i]) { at = fname[j]; break }
			if (at == "") { print "UNMAPPED " sraw[i]; continue }
			print "ENDBRAT " secoff[ssec[i]] + soff[i]
			if (at in wanted) { sealed[at] = 1; print "RAWREL " at " " sraw[i] }
		}
		for (i = 1; i <= nw; i++) {
			s = w[i]
			if (!(s in wsec)) { print "MISSING " s; continue }
			printf "FUNC %s %s %x %d %d %s\n", s, secname[wsec[s]], wval[s], secoff[wsec[s]] + wval[s],
				(s in sealed), (s in ksymtab) ? ((s in kstrtabns) ? kstrtabns[s] : -1) : "-"
			print "RAWSYM " s " " rawsym[s]
		}
	}' "$tmp/S" "$tmp/s" "$tmp/r"
}

# Is FUNC sealed in VMLINUX?  Prints "sealed|open BYTES", or "noseal".
vmlinux_sealed() { # vmlinux func
	local addr
	addr=$(readelf -sW "$1" | awk -v f="$2" '$4 == "FUNC" && $NF == f {print $2; exit}')
	[ -n "$addr" ] || return 1
	readelf -SW "$1" | awk 'match($0, /^ *\[ *[0-9]+\] /) {
		split(substr($0, RSTART + RLENGTH), f, " ")
		if (f[2] == "PROGBITS" && f[3] ~ /^ffffffff/) print f[1], f[3], f[4], f[5] }' >"$tmp/vsec"
	perl -e 'use strict; no warnings "portable";
		my ($vml, $secs, $addr) = @ARGV; my (%s, @all);
		open my $S, "<", $secs or die; while (<$S>) { my ($n, @v) = split; $s{$n} = [map { hex } @v]; push @all, $s{$n} }
		my $seal = $s{".ibt_endbr_seal"} or do { print "noseal\n"; exit 0 };
		open my $F, "<:raw", $vml or die;
		my $at = sub { my $a = shift; for (@all) { if ($a >= $_->[0] && $a < $_->[0] + $_->[2]) {
			seek $F, $_->[1] + $a - $_->[0], 0; read $F, my $b, 4; return $b } } return "" };
		seek $F, $seal->[1], 0; read $F, my $b, $seal->[2];
		my ($hit, $bad) = (0, 0);
		for my $i (0 .. $seal->[2] / 4 - 1) {
			my $t = $seal->[0] + 4 * $i + unpack("l<", substr($b, 4 * $i, 4));
			$hit = 1 if $t == hex $addr;
			$bad++ if $at->($t) ne "\xf3\x0f\x1e\xfa";
		}
		# A seal list that is not all ENDBR64s was misread.
		exit 2 if $bad;
		printf "%s %s\n", $hit ? "sealed" : "open", unpack("H8", $at->(hex $addr));' \
		"$1" "$tmp/vsec" "$addr"
}

echo "TAP version 13"

# Roots to look in: this system, then unpacked or fetched packages.
roots=(/)
declare -A label=()
for r in ${IBT_SEAL_ROOTS:-}; do roots+=("$r") && label[$r]="from $r, not installed"; done
for s in ${IBT_SEAL_FETCH:-}; do
	if r=$(fetch "$s"); then
		roots+=("$r")
		label[$r]="downloaded from ${IBT_SEAL_SUITE:-trixie-backports}, not installed"
	else
		not_ok "fetch the newest $s kernel from ${IBT_SEAL_SUITE:-trixie-backports} (apt-get download)"
	fi
done

declare -A seen=()
kernels=()
for r in "${roots[@]}"; do
	for ko in "${r%/}"/lib/modules/*/kernel/arch/x86/kvm/kvm.ko* \
		"${r%/}"/usr/lib/modules/*/kernel/arch/x86/kvm/kvm.ko*; do
		[ -f "$ko" ] || continue
		rel=${ko%/kernel/arch/x86/kvm/*} rel=${rel##*/}
		[ -n "${seen[$rel]:-}" ] && continue
		seen[$rel]=1
		kernels+=("$rel|$r|$ko")
	done
done
if [ ${#kernels[@]} -eq 0 ]; then
	[ "$n" -eq 0 ] || finish
	echo "1..0 # SKIP no installed kernel with kvm.ko (make deps)"
	exit 4
fi
for t in readelf perl; do
	command -v "$t" >/dev/null || { not_ok "$t is installed (binutils, perl-base)" && finish; }
done

for k in "${kernels[@]}"; do
	IFS='|' read -r rel root ko <<<"$k"
	series=$(echo "$rel" | sed -nE 's/^([0-9]+\.[0-9]+)\..*/\1/p')
	r=${root%/}
	where=
	[ "$root" = / ] || where=" (${label[$root]})"
	echo "# $rel$where: $ko"
	bad=()

	ibt=
	cfg=$(first "$r/boot/config-$rel" "$r/lib/modules/$rel/config" "$r/usr/lib/modules/$rel/config" \
		"/boot/config-$rel")
	if [ -n "$cfg" ]; then
		line=$(grep -E '^(# )?CONFIG_X86_KERNEL_IBT[= ]' "$cfg")
		echo "#   $cfg: ${line:-no CONFIG_X86_KERNEL_IBT line}"
		case $line in
		CONFIG_X86_KERNEL_IBT=y) ibt=y ;;
		"# CONFIG_X86_KERNEL_IBT is not set" | "") ibt=n ;;
		esac
	else
		bad+=("no kernel config found")
	fi

	case $ko in
	*.ko) f=$ko ;;
	*.ko.xz) f=$tmp/kvm.ko && xz -dc "$ko" >"$f" ;;
	*.ko.zst) f=$tmp/kvm.ko && zstd -qdc "$ko" >"$f" ;;
	*.ko.gz) f=$tmp/kvm.ko && gzip -dc "$ko" >"$f" ;;
	*) f= ;;
	esac || f=
	if [ -z "$f" ] || ! analyze_ko "$f" >"$tmp/an"; then
		not_ok "$rel: could not decompress or read $ko"
		continue
	fi
	sed -n "s/^SECTION /#   seal section: /p" "$tmp/an"
	sed -n 's/^\(BADREL\|UNMAPPED\) /#   \1: /p' "$tmp/an"
	section=$(sed -n 's/^SECTION //p' "$tmp/an")
	read -r _ entries _ nbad < <(grep '^ENTRIES ' "$tmp/an")
	unmapped=$(grep -c '^UNMAPPED ' "$tmp/an")
	[ "$nbad" -eq 0 ] || bad+=("$nbad seal entries not parsed")
	[ "$unmapped" -eq 0 ] || bad+=("$unmapped seal entries not at a function's start")
	if [ "$section" = none ]; then
		[ "$ibt" = n ] || bad+=("IBT=${ibt:-?} but no .rela.ibt_endbr_seal")
	else
		[ "$ibt" = y ] || bad+=("IBT=${ibt:-?} but a .rela.ibt_endbr_seal")
		[ "$entries" -gt 0 ] || bad+=("an empty .rela.ibt_endbr_seal")
		notendbr=$(sed -n 's/^ENDBRAT //p' "$tmp/an" | bytes_at "$f" 4 | grep -vcx f30f1efa)
		echo "#   seal entries mapped to a function start: $((entries - nbad - unmapped)) of $entries; not on an ENDBR64 in the file: $notendbr"
		[ "$notendbr" -eq 0 ] || bad+=("$notendbr seal entries not on an ENDBR64")
	fi
	sed -n 's/^RAWREL \([^ ]*\) /#   sealed (readelf -rW): \1: /p' "$tmp/an"

	sealed=() kallsyms=() notes=()
	while read -r s; do bad+=("$s not in kvm.ko's symbols"); done < <(sed -n 's/^MISSING //p' "$tmp/an")
	while read -r _ s sec soff off is_sealed ns; do
		grep "^RAWSYM $s " "$tmp/an" | sed "s/^RAWSYM $s /#   symbol (readelf -sW): /"
		insn=$(echo "$off" | bytes_at "$f" 5)
		how=kallsyms
		if [ "$ns" = - ]; then
			nsdesc="not exported"
		elif [ "$ns" = -1 ]; then
			nsdesc="exported, namespace unknown"
		else
			nsn=$(string_at "$f" "$ns")
			nsdesc="exported to ${nsn:-every module}"
			# The module links what is exported to every module.
			[ -z "$nsn" ] && how=linked
		fi
		[ "$how" = kallsyms ] && kallsyms+=("$s")
		[ "$is_sealed" = 1 ] && sealed+=("$s")
		endbr=no
		[ "${insn:0:8}" = f30f1efa ] && endbr=yes
		echo "#   $s: $sec+0x$soff, first bytes $insn (ENDBR64: $endbr), sealed: $([ "$is_sealed" = 1 ] && echo yes || echo no), $nsdesc -> $how"
		[ "$ibt" = y ] && [ "$endbr" = no ] && bad+=("$s has no ENDBR64 in an IBT=y kvm.ko")
		[ "$ibt" = n ] && [ "$endbr" = yes ] && bad+=("$s has an ENDBR64 in an IBT=n kvm.ko")
	done < <(grep '^FUNC ' "$tmp/an")

	# 6.1 does not mask X86_FEATURE_IBT when built without IBT (6.12 does,
	# DISABLE_IBT): code that reads the CPU feature as "IBT enforced" is
	# wrong there on IBT-capable CPUs.
	df=/usr/src/linux-headers-${rel%-amd64}-common/arch/x86/include/asm/disabled-features.h
	if [ "$ibt" = n ] && [ -f "$df" ] && ! grep -q DISABLE_IBT "$df"; then
		notes+=("note: $df does not mask X86_FEATURE_IBT ($(grep -m1 'define DISABLED_MASK18' "$df" | tr -s ' \t' ' ')): on a CPU with IBT, cpu_feature_enabled(X86_FEATURE_IBT) is true under this kernel although it never enforces IBT")
	fi

	# kallsyms_lookup_name, from the vmlinux if it is here.
	vml=
	for vr in "$r" "${roots[@]}"; do
		vml=$(first "${vr%/}/usr/lib/debug/boot/vmlinux-$rel" \
			"${vr%/}/usr/lib/debug/lib/modules/$rel/vmlinux") && break
	done
	klp=
	if [ "$ibt" = y ] && [ -n "$vml" ]; then
		if out=$(vmlinux_sealed "$vml" kallsyms_lookup_name); then
			klp=${out%% *}
			echo "#   kallsyms_lookup_name in $vml: $out"
			[ "$klp" = noseal ] && bad+=("no .ibt_endbr_seal in an IBT=y vmlinux")
		else
			bad+=("could not read the seal list of $vml")
		fi
	elif [ "$ibt" = y ]; then
		notes+=("kallsyms_lookup_name not checked: no vmlinux (linux-image-$rel-dbg)")
	fi

	# The verdict for a host that enforces IBT.
	blocked=()
	for s in "${kallsyms[@]}"; do
		for x in "${sealed[@]}"; do [ "$x" = "$s" ] && blocked+=("$s"); done
	done
	[ "$klp" = sealed ] && blocked=(kallsyms_lookup_name "${blocked[@]}")
	if [ "$ibt" = n ]; then
		verdict="n/a (built without IBT: never enforced)"
	elif [ ${#blocked[@]} -gt 0 ]; then
		verdict="no (sealed: ${blocked[*]})"
	else
		verdict="yes"
	fi

	e=$(expect "$series")
	if [ -n "$e" ]; then
		IFS='|' read -r eibt esealed ekall <<<"$e"
		[ "$ibt" = "$eibt" ] || bad+=("known: $series has IBT=$eibt, found ${ibt:-?}")
		[ "${sealed[*]}" = "$esealed" ] || bad+=("known: $series seals '$esealed', found '${sealed[*]}'")
		[ "${kallsyms[*]}" = "$ekall" ] ||
			bad+=("known: $series resolves '$ekall' through kallsyms, found '${kallsyms[*]}'")
		if [ "$eibt" = y ]; then
			case $verdict in no*) ;; *) bad+=("known: the module cannot load on an IBT-enforcing $series host") ;; esac
			[ -z "$klp" ] || [ "$klp" = sealed ] || bad+=("known: kallsyms_lookup_name is sealed in $series")
		fi
	else
		notes+=("no known facts for series ${series:-?}: analysis only")
	fi
	for x in "${notes[@]}"; do echo "#   $x"; done

	desc="$rel$where: IBT=${ibt:-?}, sealed: ${sealed[*]:-none}; shim loads on an IBT-enforcing host: $verdict"
	if [ ${#bad[@]} -eq 0 ]; then
		ok "$desc"
	else
		not_ok "$desc: $(printf '%s; ' "${bad[@]}" | sed 's/; $//')"
	fi
done
finish

# SPDX-License-Identifier: GPL-2.0
#
# kvm-dirtybatch top-level Makefile.
#
#   make              userspace library, tools, tests; the module for KDIR
#   make check        install dependencies, build everything, run the host
#                     tests and the kselftests in 6.1, 6.12 and 7.3 guests
#   make bench        the migration-sync benchmark (BENCH_ARGS=--help)
#   make fuzz         the long fuzzing run of the batch ioctl, every test kernel
#   make check-debug  the guest tests on a lockdep/KASAN/KFENCE kernel (built
#                     once, cached in /var/lib/kvm-dirtybatch)
#   make module       the module for one kernel: KDIR=/path/to/headers
#   make modules-all  the module for every installed Debian kernel
#   make deps         install build/test dependencies (apt, idempotent)
#
# Everything is built out of tree under $(O) (default: ./build).

O ?= $(CURDIR)/build
override O := $(abspath $(O))
KDIR ?= /lib/modules/$(shell uname -r)/build
KERNELS ?= $(sort $(notdir $(patsubst %/,%,$(dir $(wildcard /usr/src/linux-headers-*-amd64/Module.symvers)))))

MODULE_SRCS := Kbuild dkms.conf $(wildcard module/*.c module/*.h module/Kbuild) \
	       include/uapi/linux/kvm_dirtybatch.h

# W=1 for every module build; no BTF (headers packages ship no vmlinux).
KBUILD_ARGS := W=1 CONFIG_DEBUG_INFO_BTF_MODULES=

.PHONY: all deps userspace selftests module modules-all check bench fuzz check-debug \
	clean install uninstall help dkms-check dkms-source dkms-install \
	dkms-remove

all: userspace selftests

help:
	@sed -n '3,16p' Makefile | sed 's/^# \{0,1\}//'

deps:
	@scripts/deps.sh

userspace:
	$(MAKE) -C userspace O=$(O)

selftests:
	$(MAKE) -C selftests O=$(O)

# Build a copy of the sources per kernel, so that several kernels' objects
# never mix: $(O)/module/<release>/kvm_dirtybatch.ko.  RELEASE defaults to
# the headers folder name (linux-headers-<release>) or KDIR's kernelrelease.
RELEASE ?= $(or $(patsubst linux-headers-%,%,$(filter linux-headers-%,$(notdir $(realpath $(KDIR))))),\
	$(shell $(MAKE) -s -C $(KDIR) kernelrelease 2>/dev/null))
MDIR = $(O)/module/$(RELEASE)
# kbuild's O, given so that ours (O=build on our command line) does not
# reach it: the headers' own directory.  Not empty: from 6.13 on, O= sends
# an external module's build to the source tree, and Debian's 7.x headers
# (their own Makefile sets KBUILD_OUTPUT) then find no configuration.
KBUILD_O = $(realpath $(KDIR))
HIDE_SYMBOL_SRCS := $(wildcard selftests/kvm_dirtybatch/hide_symbol/*)

module:
	@test -n "$(RELEASE)" || { echo "cannot tell the kernel release of $(KDIR)"; exit 1; }
	@mkdir -p $(MDIR)/src
	@cp -a --parents $(MODULE_SRCS) $(MDIR)/src/
	$(MAKE) -C $(KDIR) M=$(MDIR)/src O=$(KBUILD_O) $(KBUILD_ARGS) modules
	@cp $(MDIR)/src/module/kvm_dirtybatch.ko $(MDIR)/
	@echo "  MODULE  $(MDIR)/kvm_dirtybatch.ko"
	@# the selftests' helper module (refused_load_guest.sh); never installed
	@mkdir -p $(MDIR)/hide_symbol
	@cp -a $(HIDE_SYMBOL_SRCS) $(MDIR)/hide_symbol/
	$(MAKE) -C $(KDIR) M=$(MDIR)/hide_symbol O=$(KBUILD_O) $(KBUILD_ARGS) modules
	@cp $(MDIR)/hide_symbol/hide_symbol.ko $(MDIR)/
	@echo "  MODULE  $(MDIR)/hide_symbol.ko (selftests only)"

# The kernels whose headers are in the trixie root (Debian's 7.x, see
# scripts/trixie-root.sh) are built in it, by scripts/trixie-build.sh
# (root only: skipped with a note otherwise).
TRIXIE_KERNELS = $(shell scripts/trixie-build.sh --list 2>/dev/null)

modules-all:
	@test -n "$(KERNELS)" || { echo "no /usr/src/linux-headers-*-amd64: run 'make deps'"; exit 1; }
	@set -e; for k in $(KERNELS); do \
		$(MAKE) --no-print-directory module KDIR=/usr/src/$$k RELEASE=$${k#linux-headers-}; \
	done
	@set -e; for r in $(TRIXIE_KERNELS); do \
		if [ "$$(id -u)" -ne 0 ]; then echo "  SKIP    $$r (trixie root: needs root)"; continue; fi; \
		O=$(O) scripts/trixie-build.sh $$r; \
	done

check:
	@scripts/deps.sh
	@scripts/check.sh

bench:
	@scripts/deps.sh
	@scripts/bench.sh $(BENCH_ARGS)

fuzz:
	@scripts/deps.sh
	@scripts/fuzz.sh $(FUZZ_ARGS)

# The guest kselftests, a fuzzing run and the module lifetime test on a
# debug kernel built from linux-source-6.12 (scripts/debug-kernel.config),
# cached outside $(O) (DEBUG_KERNEL_CACHE, default /var/lib/kvm-dirtybatch).
check-debug:
	@scripts/deps.sh
	@scripts/check-debug.sh $(CHECK_DEBUG_ARGS)

# ---------------------------------------------------------------- native
# KVM_CLEAR_DIRTY_LOG_BATCH in KVM itself (module/native/patches/<base>/,
# Documentation/kvm_dirtybatch.rst "Native backend"):
# make kvm-modules [KVM_RELEASES="<release>..."]: kvm.ko, kvm-amd.ko and
#   kvm-intel.ko with the series, for every installed Debian kernel (or
#   the ones named), from the exact Debian source of each, in
#   $(O)/kvm-modules/<release>/ (sources cached in /var/cache/kvm-dirtybatch).
# make check-native [NATIVE_KERNELS="6.1 6.12 7.3"]: boot each kernel, load
#   the patched KVM there and run the upstream KVM selftests against it.
.PHONY: kvm-modules check-native
kvm-modules:
	@O=$(O) scripts/kvm-modules.sh $(KVM_RELEASES)

check-native:
	@O=$(O) scripts/native-guest-tests.sh $(NATIVE_KERNELS)

# ---------------------------------------------------------------- install
# make install [PREFIX=/usr/local] [DESTDIR=]: libdirtybatch (libraries,
# dirtybatch.h, dirtybatch.pc, man pages: userspace/Makefile, which also
# takes LIBDIR, MANDIR, PKGCONFIGDIR), the UAPI header, the udev rule and a
# modules-load.d example.  udev reads no rules under /usr/local, so the rule
# goes to /etc/udev/rules.d unless PREFIX=/usr (a distribution package:
# udev's own directory).  The modules-load.d file is only an example (under
# DOCDIR): loading the module at boot is the operator's choice, and only
# works once the module is installed (make dkms-install).  make uninstall
# removes exactly what make install wrote.
PREFIX ?= /usr/local
INCLUDEDIR ?= $(PREFIX)/include
DOCDIR ?= $(PREFIX)/share/doc/kvm-dirtybatch
UDEVRULESDIR ?= $(if $(filter /usr,$(PREFIX)),$(or $(shell pkg-config \
	--variable=udevdir udev 2>/dev/null),/lib/udev)/rules.d,/etc/udev/rules.d)
UDEV_RULE := 60-kvm-dirtybatch.rules
MODLOAD_EXAMPLE := $(DOCDIR)/examples/modules-load.d/kvm_dirtybatch.conf

install:
	$(MAKE) -C userspace O=$(O) PREFIX=$(PREFIX) INCLUDEDIR=$(INCLUDEDIR) install
	install -d $(DESTDIR)$(INCLUDEDIR)/linux $(DESTDIR)$(UDEVRULESDIR) \
		$(dir $(DESTDIR)$(MODLOAD_EXAMPLE))
	install -m 0644 include/uapi/linux/kvm_dirtybatch.h \
		$(DESTDIR)$(INCLUDEDIR)/linux/kvm_dirtybatch.h
	install -m 0644 module/$(UDEV_RULE) $(DESTDIR)$(UDEVRULESDIR)/$(UDEV_RULE)
	install -m 0644 module/modules-load.d/kvm_dirtybatch.conf \
		$(DESTDIR)$(MODLOAD_EXAMPLE)

uninstall:
	$(MAKE) -C userspace O=$(O) PREFIX=$(PREFIX) INCLUDEDIR=$(INCLUDEDIR) uninstall
	rm -f $(DESTDIR)$(INCLUDEDIR)/linux/kvm_dirtybatch.h \
		$(DESTDIR)$(UDEVRULESDIR)/$(UDEV_RULE) $(DESTDIR)$(MODLOAD_EXAMPLE)
	rmdir $(DESTDIR)$(DOCDIR)/examples/modules-load.d \
		$(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(DOCDIR) 2>/dev/null || true

# ---------------------------------------------------------------- DKMS
# sudo make dkms-install [DKMS_KERNELS="<release>..."]: copy the module's
# sources and dkms.conf to /usr/src/kvm-dirtybatch-<version>, then
# dkms add, build and install for each kernel (default: the running one).
# Any kvm-dirtybatch already registered with DKMS is removed first, so the
# installed module is this tree's.  DKMS rebuilds it for new kernels.
# sudo make dkms-remove: dkms remove every version, delete the sources.
# The version comes from dkms.conf; debian/changelog and dirtybatch.h say
# the same (make check: scripts/tooling-tests/install.sh checks both).
VERSION := $(shell sed -n 's/^PACKAGE_VERSION="\([^"]*\)"$$/\1/p' $(CURDIR)/dkms.conf)
DKMS_SRCDIR = /usr/src/kvm-dirtybatch-$(VERSION)
DKMS_KERNELS ?= $(shell uname -r)
# The versions of kvm-dirtybatch DKMS knows about.
dkms_versions = dkms status kvm-dirtybatch | sed -n 's|^kvm-dirtybatch/\([^,:]*\).*|\1|p' | sort -u

dkms-check:
	@command -v dkms >/dev/null || { echo "dkms is not installed: apt-get install dkms"; exit 1; }
	@test -n "$(VERSION)" || { echo "no PACKAGE_VERSION in dkms.conf"; exit 1; }
	@if dpkg -S $(DKMS_SRCDIR) >/dev/null 2>&1; then \
		echo "$(DKMS_SRCDIR) belongs to a package (kvm-dirtybatch-dkms): use apt"; exit 1; fi

# The sources DKMS builds from, alone (make dkms-source DESTDIR=... stages
# them for a package: debian/rules).
dkms-source:
	@test -n "$(VERSION)" || { echo "no PACKAGE_VERSION in dkms.conf"; exit 1; }
	rm -rf $(DESTDIR)$(DKMS_SRCDIR)
	@for f in $(MODULE_SRCS); do \
		install -D -m 0644 $$f $(DESTDIR)$(DKMS_SRCDIR)/$$f || exit 1; done

dkms-install: dkms-remove
	$(MAKE) --no-print-directory dkms-source DESTDIR=
	dkms add -m kvm-dirtybatch -v $(VERSION)
	@set -e; for k in $(DKMS_KERNELS); do \
		echo "dkms build -m kvm-dirtybatch -v $(VERSION) -k $$k"; \
		dkms build -m kvm-dirtybatch -v $(VERSION) -k $$k; \
		echo "dkms install -m kvm-dirtybatch -v $(VERSION) -k $$k"; \
		dkms install -m kvm-dirtybatch -v $(VERSION) -k $$k; \
	done
	dkms status kvm-dirtybatch

dkms-remove: dkms-check
	@set -e; for v in $$($(dkms_versions)); do \
		echo "dkms remove kvm-dirtybatch/$$v --all"; \
		dkms remove kvm-dirtybatch/$$v --all; \
		rm -rf /usr/src/kvm-dirtybatch-$$v; \
	done
	rm -rf $(DKMS_SRCDIR)

# sudo make dkms-native-install [DKMS_KERNELS="<release>..."]: the same for
# KVM's own modules with the KVM_CLEAR_DIRTY_LOG_BATCH series
# (module/native/dkms/): /usr/src/kvm-dirtybatch-native-<version> holds
# dkms.conf, build.sh, kvm-build.sh and the series ($(NATIVE_FORCE) lets
# DKMS put them ahead of the kernel's own); DKMS builds them from
# the kernel's exact linux-source (installed, or a .deb in
# /var/cache/kvm-dirtybatch/debs) and installs them in updates/dkms, ahead
# of Debian's.  Every kernel's build comes before any install, so that a
# failed build installs nothing.  Nothing is loaded: see
# Documentation/install.md.
# sudo make dkms-native-remove: dkms remove every version (Debian's KVM is
# modprobe's again), delete the sources.
NATIVE_DKMS := module/native/dkms
NATIVE_VERSION := $(shell sed -n 's/^PACKAGE_VERSION="\([^"]*\)"$$/\1/p' $(CURDIR)/$(NATIVE_DKMS)/dkms.conf)
NATIVE_SRCDIR = /usr/src/kvm-dirtybatch-native-$(VERSION)
# DKMS refuses to install a module over an in-kernel one of the same
# version (kvm has none, nor has ours: "exactly matches what is already
# found in kernel"); this file tells dkms install and autoinstall to skip
# that check for this package only (dkms's force_installation).
NATIVE_FORCE = /usr/share/dkms/modules_to_force_install/kvm-dirtybatch-native
NATIVE_SERIES := $(notdir $(patsubst %/series,%,$(wildcard module/native/patches/*/series)))
native_versions = dkms status kvm-dirtybatch-native | sed -n 's|^kvm-dirtybatch-native/\([^,:]*\).*|\1|p' | sort -u
.PHONY: dkms-native-check dkms-native-source dkms-native-install dkms-native-remove

# Not dkms-check: the module's package (kvm-dirtybatch-dkms) may well be
# installed beside this one.
dkms-native-check:
	@command -v dkms >/dev/null || { echo "dkms is not installed: apt-get install dkms"; exit 1; }
	@test -n "$(VERSION)" || { echo "no PACKAGE_VERSION in dkms.conf"; exit 1; }
	@test "$(NATIVE_VERSION)" = "$(VERSION)" || { echo "$(NATIVE_DKMS)/dkms.conf: PACKAGE_VERSION $(NATIVE_VERSION), dkms.conf $(VERSION)"; exit 1; }
	@if dpkg -S $(NATIVE_SRCDIR) >/dev/null 2>&1; then \
		echo "$(NATIVE_SRCDIR) belongs to a package (kvm-dirtybatch-native-dkms): use apt"; exit 1; fi

# The series files: each series file and the patches it names.
dkms-native-source:
	@test "$(NATIVE_VERSION)" = "$(VERSION)" || { echo "$(NATIVE_DKMS)/dkms.conf: PACKAGE_VERSION $(NATIVE_VERSION), dkms.conf $(VERSION)"; exit 1; }
	rm -rf $(DESTDIR)$(NATIVE_SRCDIR)
	install -D -m 0644 $(NATIVE_DKMS)/dkms.conf $(DESTDIR)$(NATIVE_SRCDIR)/dkms.conf
	install -D -m 0755 $(NATIVE_DKMS)/build.sh $(DESTDIR)$(NATIVE_SRCDIR)/build.sh
	install -D -m 0644 module/native/kvm-build.sh $(DESTDIR)$(NATIVE_SRCDIR)/kvm-build.sh
	install -d $(DESTDIR)$(dir $(NATIVE_FORCE))
	echo kvm-dirtybatch-native_version-override >$(DESTDIR)$(NATIVE_FORCE)
	@set -e; for s in $(NATIVE_SERIES); do \
		d=module/native/patches/$$s; \
		for p in series $$(sed '/^#/d; /^$$/d' $$d/series); do \
			install -D -m 0644 $$d/$$p $(DESTDIR)$(NATIVE_SRCDIR)/patches/$$s/$$p; done; done

dkms-native-install: dkms-native-remove
	$(MAKE) --no-print-directory dkms-native-source DESTDIR=
	dkms add -m kvm-dirtybatch-native -v $(VERSION)
	@set -e; for k in $(DKMS_KERNELS); do \
		echo "dkms build -m kvm-dirtybatch-native -v $(VERSION) -k $$k"; \
		dkms build -m kvm-dirtybatch-native -v $(VERSION) -k $$k; done; \
	for k in $(DKMS_KERNELS); do \
		echo "dkms install -m kvm-dirtybatch-native -v $(VERSION) -k $$k"; \
		dkms install -m kvm-dirtybatch-native -v $(VERSION) -k $$k; \
	done
	dkms status kvm-dirtybatch-native

dkms-native-remove: dkms-native-check
	@set -e; for v in $$($(native_versions)); do \
		echo "dkms remove kvm-dirtybatch-native/$$v --all"; \
		dkms remove kvm-dirtybatch-native/$$v --all; \
		rm -rf /usr/src/kvm-dirtybatch-native-$$v; \
	done
	rm -rf $(NATIVE_SRCDIR) $(NATIVE_FORCE)
	@[ ! -d $(dir $(NATIVE_FORCE)) ] || rmdir -p --ignore-fail-on-non-empty $(dir $(NATIVE_FORCE))

clean:
	rm -rf $(O)
	rm -rf module/*.o module/*.ko module/*.mod* module/.*.cmd module/modules.order \
		.*.cmd Module.symvers modules.order

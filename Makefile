# SPDX-License-Identifier: GPL-2.0
#
# kvm-dirtybatch top-level Makefile.
#
#   make              userspace library, tools, tests; the module for KDIR
#   make check        install dependencies, build everything, run the host
#                     tests and the kselftests in a 6.1 and a 6.12 guest
#   make bench        the migration-sync benchmark (BENCH_ARGS=--help)
#   make fuzz         the long fuzzing run of the batch ioctl, both kernels
#   make module       the module for one kernel: KDIR=/path/to/headers
#   make modules-all  the module for every installed Debian kernel
#   make deps         install build/test dependencies (apt, idempotent)
#
# Everything is built out of tree under $(O) (default: ./build).

O ?= $(CURDIR)/build
override O := $(abspath $(O))
KDIR ?= /lib/modules/$(shell uname -r)/build
KERNELS ?= $(sort $(notdir $(patsubst %/,%,$(dir $(wildcard /usr/src/linux-headers-*-amd64/Module.symvers)))))

MODULE_SRCS := Kbuild $(wildcard module/*.c module/*.h module/Kbuild) \
	       include/uapi/linux/kvm_dirtybatch.h

# W=1 for every module build; no BTF (headers packages ship no vmlinux).
KBUILD_ARGS := W=1 CONFIG_DEBUG_INFO_BTF_MODULES=

.PHONY: all deps userspace selftests module modules-all check bench fuzz \
	clean install uninstall help

all: userspace selftests

help:
	@sed -n '3,14p' Makefile | sed 's/^# \{0,1\}//'

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

module:
	@test -n "$(RELEASE)" || { echo "cannot tell the kernel release of $(KDIR)"; exit 1; }
	@mkdir -p $(MDIR)/src
	@cp -a --parents $(MODULE_SRCS) $(MDIR)/src/
	$(MAKE) -C $(KDIR) M=$(MDIR)/src O= $(KBUILD_ARGS) modules
	@cp $(MDIR)/src/module/kvm_dirtybatch.ko $(MDIR)/
	@echo "  MODULE  $(MDIR)/kvm_dirtybatch.ko"

modules-all:
	@test -n "$(KERNELS)" || { echo "no /usr/src/linux-headers-*-amd64: run 'make deps'"; exit 1; }
	@set -e; for k in $(KERNELS); do \
		$(MAKE) --no-print-directory module KDIR=/usr/src/$$k RELEASE=$${k#linux-headers-}; \
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

install uninstall:
	$(MAKE) -C userspace O=$(O) $@

clean:
	rm -rf $(O)
	rm -rf module/*.o module/*.ko module/*.mod* module/.*.cmd module/modules.order \
		.*.cmd Module.symvers modules.order

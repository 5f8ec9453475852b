#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# with-patched-kvm.sh MODDIR SHIM_KO CMD...: in a guest (selftests/runner/vm-run,
# without --module), replace Debian's KVM by the patched modules in MODDIR,
# load the kvm_dirtybatch module SHIM_KO on top of them, and run CMD; for
# what needs both backends side by side (make bench's batched and native
# strategies).  Exits with CMD's status, or 1 if the modules do not load.
set -u
moddir=${1:?usage: with-patched-kvm.sh MODDIR SHIM_KO CMD...}
shim=${2:?usage: with-patched-kvm.sh MODDIR SHIM_KO CMD...}
shift 2
# shellcheck source=patched-kvm.sh
. "$(dirname "$0")/patched-kvm.sh"
use_patched_kvm "$moddir" || exit 1
insmod "$shim" || { echo "# insmod $shim on the patched KVM failed"; exit 1; }
"$@"

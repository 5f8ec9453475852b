#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# The guest runner's plain-QEMU fallback (busybox initramfs, 9p root) must
# keep working even where virtme-ng is installed: run its self-test there.
cd "$(dirname "$0")/../.." || exit 1
exec selftests/runner/vm-run-selftest.sh --backend qemu --kernel 6.12

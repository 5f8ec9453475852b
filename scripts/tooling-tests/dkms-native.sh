#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# kvm-dirtybatch-native through DKMS: scripts/tooling-tests/dkms.sh native.
exec bash "$(dirname "$0")/dkms.sh" native

# Devices for the kvm-dirtybatch QEMU build (--without-default-devices
# --with-devices-x86_64=dirtybatch): the q35 machine and what it selects
# (ICH9 LPC, AHCI, pflash, pc-dimm, ISA serial).  Nothing else.
CONFIG_PCI_DEVICES=n
CONFIG_Q35=y

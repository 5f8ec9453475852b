/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Tiny L2 guest for the QEMU migration test: it is the firmware.
 *
 * The image (64 KiB, linked at 0xffff0000) is placed at the end of a
 * pflash image, so the CPU's reset vector (0xfffffff0) lands in it.  It
 * switches to flat 32-bit protected mode (no paging: regions must lie
 * below 4 GiB), then dirties the memory regions listed in the parameter
 * block at a steady rate, forever:
 *
 *   for (gen = 1;; gen++)
 *       for each region r, for each page p of r (page stride "stride"):
 *           *(u32 *)(p + (gen * 64) % 4096) = gen ^ p;   then spin "delay"
 *
 * The parameter block at 0xffff0000 is filled in by the test script
 * (migrate-test.py) after linking.  Progress: the payload writes 'P' on
 * the serial port when it starts and '.' after each full pass; the pass
 * counter is also kept at guest physical address 0x9000 (PASS_COUNTER).
 *
 * Memory the payload uses itself (guest-physical): stack below 0x8000,
 * counters at 0x9000.  Regions to dirty must not overlap these.
 */
	.set PARAM_MAGIC,	0x59425244	/* "DRBY" */
	.set MAX_REGIONS,	8
	.set PASS_COUNTER,	0x9000
	.set COM1,		0x3f8

	.text
	.code16
	.globl params
/* ------------------------------------------------------ parameter block */
params:					/* 0xffff0000 */
	.long PARAM_MAGIC
	.long 0				/* nr_regions */
	.long 1				/* stride, in pages */
	.long 0				/* delay: pause loops after each store */
	/* MAX_REGIONS x { u64 guest-physical base (< 4 GiB), u64 size } */
	.fill MAX_REGIONS * 16, 1, 0
	.set P_NR,	4
	.set P_STRIDE,	8
	.set P_DELAY,	12
	.set P_REGIONS,	16

	.p2align 3
gdt:
	.quad 0
	.quad 0x00cf9b000000ffff	/* 0x08: code, flat 32-bit */
	.quad 0x00cf93000000ffff	/* 0x10: data, flat 32-bit */
gdt_end:
gdt_desc:
	.word gdt_end - gdt - 1
	.long gdt			/* linear: linked at 0xffff0000 */

/* ---------------------------------------------------- 16-bit entry */
start16:
	cli
	cld
	/* CS base is 0xffff0000 after reset: offsets are image offsets. */
	lgdtl %cs:(gdt_desc - params)
	movl %cr0, %eax
	orl $1, %eax
	movl %eax, %cr0
	ljmpl $0x08, $start32

/* ---------------------------------------------------- 32-bit code */
	.code32
start32:
	movw $0x10, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	movw %ax, %fs
	movw %ax, %gs
	movl $0x8000, %esp

	movb $'P', %al
	movw $COM1, %dx
	outb %al, %dx

	movl $0, PASS_COUNTER
	movl $1, %ebp				/* gen */

pass:
	movl $params, %esi
	movl P_NR(%esi), %ebx			/* regions left */
	leal P_REGIONS(%esi), %esi
region:
	testl %ebx, %ebx
	jz pass_done
	movl (%esi), %edi			/* base (below 4 GiB) */
	movl 8(%esi), %ecx			/* size in bytes */
	addl %edi, %ecx				/* end (virtual) */
page:
	cmpl %ecx, %edi
	jae region_done
	movl %ebp, %eax
	shll $6, %eax
	andl $0xfff, %eax			/* (gen * 64) % 4096 */
	movl %ebp, %edx
	xorl %edi, %edx
	movl %edx, (%edi,%eax)
	movl params + P_DELAY, %eax
4:	testl %eax, %eax
	jz 5f
	pause
	decl %eax
	jmp 4b
5:	movl params + P_STRIDE, %eax
	shll $12, %eax
	addl %eax, %edi
	jmp page
region_done:
	addl $16, %esi
	decl %ebx
	jmp region
pass_done:
	incl PASS_COUNTER
	incl %ebp
	movb $'.', %al
	movw $COM1, %dx
	outb %al, %dx
	jmp pass

/* ---------------------------------------------------- reset vector */
	.code16
	.org 0xfff0
reset:
	jmp start16
	.org 0x10000

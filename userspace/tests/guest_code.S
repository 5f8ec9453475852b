/* SPDX-License-Identifier: LGPL-2.1 OR MIT */
/*
 * Guest code for the libdirtybatch real-KVM tests: 32-bit protected mode,
 * flat segments, no paging.  Copied into guest memory by kvm_vm.c; never
 * executed on the host.
 *
 * Registers on entry:
 *   %esi  guest-physical base of the region to write
 *   %ebx  number of 4 KiB pages in that region
 *   %edi  control page: +0 generation, +4 stop flag, +8 ack (last
 *         generation read), +12 number of writes, +16 delay iterations
 *   %ebp  random seed
 *
 * Loop: read the generation, write it to the first dword of a random page
 * of the region, count, spin a little; halt when the stop flag is set.
 */
	.text
	.code32
	.globl	dirtybatch_guest_code_start
	.globl	dirtybatch_guest_code_end
dirtybatch_guest_code_start:
1:	movl	4(%edi), %ecx		/* stop? */
	testl	%ecx, %ecx
	jnz	3f
	movl	(%edi), %ecx		/* generation */
	movl	%ecx, 8(%edi)		/* ack */
	imull	$1103515245, %ebp, %ebp	/* LCG */
	addl	$12345, %ebp
	movl	%ebp, %eax
	mull	%ebx			/* %edx = page in [0, npages) */
	shll	$12, %edx
	movl	%ecx, (%esi,%edx)	/* dirty the page with the stamp */
	incl	12(%edi)
	movl	16(%edi), %eax		/* delay */
	testl	%eax, %eax
	jz	1b
2:	decl	%eax
	jnz	2b
	jmp	1b
3:	hlt
	jmp	1b
dirtybatch_guest_code_end:
	.code64

	.section .note.GNU-stack,"",@progbits

/* SPDX-License-Identifier: LGPL-2.1 OR MIT */
/*
 * Guest code for the libdirtybatch real-KVM tests: 32-bit protected mode,
 * flat segments, no paging.  Copied into guest memory by kvm_vm.c; never
 * executed on the host.
 *
 * Registers on entry:
 *   %esi  guest-physical base of the region to write
 *   %ebx  number of 4 KiB pages in that region
 *   %edi  control page: +0 generation, +4 stop flag, +8 ack, +12 number
 *         of writes, +16 delay iterations, +20 sweep mode
 *   %ebp  random seed
 *
 * Random mode (sweep 0): read the generation, ack it, write it to the
 * first dword of a random page of the region, count, spin a little.
 * Sweep mode: for each new generation, write it to every page of the
 * region in order, then ack it (all those writes are done) and wait for
 * the next.  Either way, halt when the stop flag is set.
 */
	.text
	.code32
	.globl	dirtybatch_guest_code_start
	.globl	dirtybatch_guest_code_end
dirtybatch_guest_code_start:
1:	movl	4(%edi), %ecx		/* stop? */
	testl	%ecx, %ecx
	jnz	3f
	cmpl	$0, 20(%edi)
	jnz	4f
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
4:	movl	(%edi), %ecx		/* sweep mode: generation */
	cmpl	%ecx, 8(%edi)
	je	6f			/* swept already */
	xorl	%edx, %edx
5:	movl	%edx, %eax
	shll	$12, %eax
	movl	%ecx, (%esi,%eax)	/* dirty page %edx */
	incl	12(%edi)
	incl	%edx
	cmpl	%ebx, %edx
	jb	5b
	movl	%ecx, 8(%edi)		/* ack: every page written */
6:	pause
	jmp	1b
dirtybatch_guest_code_end:
	.code64

	.section .note.GNU-stack,"",@progbits

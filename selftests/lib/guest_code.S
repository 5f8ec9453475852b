/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Guest payload: 32-bit flat protected mode, no paging, no stack needed.
 * Position independent (only relative branches), copied into guest
 * memory by vm.c.  %esi = guest-physical address of struct guest_ctrl.
 *
 * Registers: %ebx = sequence number, %ecx = list index, %edx = list base.
 */
#include "guest.h"

	.text
	.code32
	.globl guest_code_start
	.globl guest_code_end
guest_code_start:
	movl	GUEST_CTRL_SEQ(%esi), %ebx
pass:
	xorl	%ecx, %ecx
next:
	cmpl	$0, GUEST_CTRL_STOP(%esi)
	jne	stop
	movl	GUEST_CTRL_PAUSE_GEN(%esi), %eax
	testl	$1, %eax
	jz	run
	/* Pause requested: acknowledge (all earlier stores are visible
	 * before this one on x86) and spin until the host changes pause_gen. */
	movl	%eax, GUEST_CTRL_PAUSE_ACK(%esi)
1:	pause
	cmpl	$0, GUEST_CTRL_STOP(%esi)
	jne	stop
	cmpl	%eax, GUEST_CTRL_PAUSE_GEN(%esi)
	je	1b
	movl	GUEST_CTRL_PAUSE_GEN(%esi), %eax
	movl	%eax, GUEST_CTRL_PAUSE_ACK(%esi)
	jmp	next
run:
	cmpl	GUEST_CTRL_NR(%esi), %ecx
	jae	pass_done
	movl	GUEST_CTRL_LIST(%esi), %edx
	movl	(%edx,%ecx,4), %edi		/* page GPA */
	incl	%ebx
	movl	%ebx, %eax
	andl	$511, %eax
	movl	%ebx, (%edi,%eax,8)		/* the tracked store */
	movl	%ebx, GUEST_CTRL_SEQ(%esi)
	incl	%ecx
	movl	GUEST_CTRL_DELAY(%esi), %eax	/* throttle, if asked */
	testl	%eax, %eax
	jz	next
2:	decl	%eax
	jnz	2b
	jmp	next
pass_done:
	incl	GUEST_CTRL_DONE(%esi)
	movl	GUEST_CTRL_PASSES(%esi), %eax
	testl	%eax, %eax
	jz	pass
	cmpl	GUEST_CTRL_DONE(%esi), %eax
	ja	pass
stop:
	movl	%ebx, GUEST_CTRL_SEQ(%esi)
	movb	$1, %al
	outb	%al, $GUEST_EXIT_PORT
	hlt
	jmp	stop
guest_code_end:

	.code64
	.section .note.GNU-stack,"",@progbits

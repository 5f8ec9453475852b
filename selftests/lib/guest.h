/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Layout shared by the host side of the tests and guest_code.S.
 *
 * The guest runs 32-bit flat protected mode without paging.  ESI holds
 * the guest-physical address of struct guest_ctrl.  The guest walks the
 * page list (guest-physical page addresses) and stores a unique, strictly
 * increasing sequence number at offset (seq % 512) * 8 of each page, so
 * every store changes the content of the page it hits.
 */
#ifndef KVM_DIRTYBATCH_GUEST_H
#define KVM_DIRTYBATCH_GUEST_H

#define GUEST_CTRL_STOP		0	/* host: non-zero -> guest exits */
#define GUEST_CTRL_PAUSE_GEN	4	/* host: odd value = pause request */
#define GUEST_CTRL_PAUSE_ACK	8	/* guest: last pause_gen it saw */
#define GUEST_CTRL_SEQ		12	/* guest: last sequence number used */
#define GUEST_CTRL_NR		16	/* host: entries in the page list */
#define GUEST_CTRL_LIST		20	/* host: GPA of the page list (u32[]) */
#define GUEST_CTRL_PASSES	24	/* host: passes over the list, 0 = loop */
#define GUEST_CTRL_DONE		28	/* guest: passes completed */
#define GUEST_CTRL_DELAY	32	/* host: spin iterations after each store */

/* I/O port the guest writes to when it is done. */
#define GUEST_EXIT_PORT		0x10

#ifndef __ASSEMBLER__
#include <stdint.h>

struct guest_ctrl {
	volatile uint32_t stop;
	volatile uint32_t pause_gen;
	volatile uint32_t pause_ack;
	volatile uint32_t seq;
	volatile uint32_t nr;
	volatile uint32_t list_gpa;
	volatile uint32_t passes;
	volatile uint32_t done;
	volatile uint32_t delay;
};

_Static_assert(__builtin_offsetof(struct guest_ctrl, pause_ack) == GUEST_CTRL_PAUSE_ACK, "ctrl");
_Static_assert(__builtin_offsetof(struct guest_ctrl, done) == GUEST_CTRL_DONE, "ctrl");
_Static_assert(__builtin_offsetof(struct guest_ctrl, delay) == GUEST_CTRL_DELAY, "ctrl");

extern const unsigned char guest_code_start[], guest_code_end[];
#endif

#endif

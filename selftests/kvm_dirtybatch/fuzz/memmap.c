// SPDX-License-Identifier: GPL-2.0
/*
 * fuzz/memmap.c: the memory map of the process as the kernel will see
 * it: what it can read and write, and the flap page's fixed content.
 */
#include <sys/uio.h>
#include <unistd.h>

#include "fuzz.h"

static bool in_regions(const struct region *reg, int n, uintptr_t a, uintptr_t *end)
{
	int i;

	for (i = 0; i < n; i++)
		if (a >= reg[i].start && a < reg[i].end) {
			*end = reg[i].end;
			return true;
		}
	return false;
}

/*
 * Is the page of addr mapped readable?  For addresses outside the
 * buffers the fuzzer made (a pointer with random bytes can land in any
 * mapping of the process): ask the kernel, as the module's copy will.
 */
static bool probe_page(uint64_t addr)
{
	static __thread uint8_t byte;
	struct iovec l = { &byte, 1 }, r = { (void *)(uintptr_t)addr, 1 };

	if (addr < 65536 || addr >= 0x00007ffffffff000ULL)
		return false;
	return process_vm_readv(getpid(), &l, 1, &r, 1, 0) == 1;
}

/* Could the kernel read [addr, addr + len) of this process? */
bool readable(struct fctx *x, uint64_t addr, uint64_t len)
{
	uint64_t a = addr, stop;
	uintptr_t end;

	if (!len)
		return true;
	if (addr + len < addr || addr + len > 0x00007ffffffff000ULL)
		return false;
	stop = addr + len;
	while (a < stop) {
		if (g.flap && a >= (uintptr_t)g.flap && a < (uintptr_t)g.flap + PAGE_SIZE) {
			if (x->flap_state != 1)
				return false;
			end = (uintptr_t)g.flap + PAGE_SIZE;
		} else if (!in_regions(g.reg, g.nreg, a, &end) &&
			   !in_regions(x->reg, x->nreg, a, &end)) {
			if (!probe_page(a))
				return false;
			end = (a | (PAGE_SIZE - 1)) + 1;
		}
		a = end;
	}
	return true;
}

/* Only the argument page is ever writable for the kernel. */
bool writable(struct fctx *x, uint64_t addr, uint64_t len)
{
	uintptr_t pg = (uintptr_t)x->argpg;

	return addr >= pg && addr <= pg + PAGE_SIZE - len;
}

bool touches_flap(uint64_t addr, uint64_t len)
{
	uintptr_t f = (uintptr_t)g.flap;

	return g.flap && len && addr < f + PAGE_SIZE && addr + len > f;
}

/* The flap page has a fixed content: read it through this copy. */
uint8_t flap_shadow[PAGE_SIZE];

const void *peek(uint64_t addr)
{
	uintptr_t f = (uintptr_t)g.flap;

	if (g.flap && addr >= f && addr < f + PAGE_SIZE)
		return flap_shadow + (addr - f);
	return (const void *)(uintptr_t)addr;
}

void get_range(const struct kvm_dirtybatch_clear *c, uint32_t i,
	       struct kvm_dirtybatch_range *r)
{
	memcpy(r, peek(c->ranges + (uint64_t)i * c->range_size), sizeof(*r));
}

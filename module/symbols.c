// SPDX-License-Identifier: GPL-2.0
/*
 * Symbol resolution.  file_is_kvm and kvm_flush_remote_tlbs are linked
 * where KVM exports them to every module (up to 6.17; module/Kbuild probes
 * Module.symvers).  The KVM internals that KVM_CLEAR_DIRTY_LOG uses and that
 * are not exported to this module are looked up once at load time through
 * kallsyms_lookup_name, itself found with a kprobe.  Loading fails with one
 * clear message naming what is missing; a successful load logs one line
 * saying how each function was found.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kallsyms.h>
#include <linux/kernel.h>
#include <linux/kprobes.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <asm/cpufeature.h>

#include "kvm_dirtybatch.h"

struct dirtybatch_syms dirtybatch_syms;

typedef unsigned long (*kallsyms_lookup_name_t)(const char *name);

#define ENDBR64_INSN	0xfa1e0ff3U	/* f3 0f 1e fa, little endian */

/*
 * IBT is enforced only by a kernel built with it: 6.1 does not mask the CPU
 * feature when CONFIG_X86_KERNEL_IBT is off, and its functions have no
 * ENDBR64 at all (built with -fcf-protection=none).
 */
static bool ibt_enabled(void)
{
#if defined(X86_FEATURE_IBT) && defined(CONFIG_X86_KERNEL_IBT)
	return cpu_feature_enabled(X86_FEATURE_IBT);
#else
	return false;
#endif
}

/*
 * With IBT enforced, an indirect call must land on ENDBR64.  objtool seals
 * (turns into a NOP) the ENDBR of functions whose address is never taken,
 * and calling such a function through a pointer would trap.
 */
static bool callable_indirectly(unsigned long addr)
{
	u32 insn;

	if (!ibt_enabled())
		return true;
	if (get_kernel_nofault(insn, (u32 *)addr))
		return false;
	return insn == ENDBR64_INSN;
}

static kallsyms_lookup_name_t find_kallsyms_lookup_name(void)
{
	struct kprobe kp = { .symbol_name = "kallsyms_lookup_name" };
	unsigned long addr;
	u32 insn;

	if (register_kprobe(&kp) < 0)
		return NULL;
	addr = (unsigned long)kp.addr;
	unregister_kprobe(&kp);

	/* With IBT, kprobes place the probe after the function's ENDBR64. */
	if (ibt_enabled() && !get_kernel_nofault(insn, (u32 *)(addr - 4)) &&
	    insn == ENDBR64_INSN)
		addr -= 4;
	if (!callable_indirectly(addr))
		return NULL;
	return (kallsyms_lookup_name_t)addr;
}

/*
 * The module that defines @addr, as printed by sprint_symbol() ("[kvm]"),
 * or "" for the core kernel.  Copied into @mod (size KSYM_NAME_LEN).
 */
static void owner_of(unsigned long addr, char *mod)
{
	char buf[KSYM_SYMBOL_LEN];
	char *open, *close;

	mod[0] = '\0';
	sprint_symbol(buf, addr);
	open = strchr(buf, '[');
	close = open ? strchr(open, ']') : NULL;
	if (open && close)
		strscpy(mod, open + 1, min_t(size_t, close - open, KSYM_NAME_LEN));
}

#ifdef DIRTYBATCH_LINK_FILE_IS_KVM
#define DIRTYBATCH_FILE_IS_KVM		file_is_kvm
#else
#define DIRTYBATCH_FILE_IS_KVM		NULL
#endif
#ifdef DIRTYBATCH_LINK_FLUSH_REMOTE_TLBS
#define DIRTYBATCH_FLUSH_REMOTE_TLBS	kvm_flush_remote_tlbs
#else
#define DIRTYBATCH_FLUSH_REMOTE_TLBS	NULL
#endif

/**
 * dirtybatch_resolve_symbols() - find every KVM function the module calls
 *
 * A function KVM exports to this module is linked.  Any other must exist in
 * kallsyms, be callable through a pointer (IBT) and live in the core kernel
 * or in the module that exports kvm_get_kvm(): this module links against
 * kvm_get_kvm(), so that module cannot be unloaded under us.
 *
 * Return: 0 after logging how each function was found, or -ENOENT after
 * logging the first one that cannot be used.
 */
int dirtybatch_resolve_symbols(void)
{
	static const struct {
		const char *name;
		size_t offset;
		void *linked;
	} table[] = {
#define SYM(field, name, linked) \
	{ name, offsetof(struct dirtybatch_syms, field), linked }
		SYM(enable_log_dirty_pt_masked, "kvm_arch_mmu_enable_log_dirty_pt_masked", NULL),
		SYM(sync_dirty_log, "kvm_arch_sync_dirty_log", NULL),
		SYM(file_is_kvm, "file_is_kvm", DIRTYBATCH_FILE_IS_KVM),
		SYM(flush_remote_tlbs, "kvm_flush_remote_tlbs", DIRTYBATCH_FLUSH_REMOTE_TLBS),
#undef SYM
	};
	char kvm_mod[KSYM_NAME_LEN], mod[KSYM_NAME_LEN];
	char linked[128] = "", looked_up[128] = "";
	size_t nlinked = 0, nlooked_up = 0;
	kallsyms_lookup_name_t lookup = NULL;
	unsigned long addr;
	size_t i;

	owner_of((unsigned long)kvm_get_kvm, kvm_mod);
	for (i = 0; i < ARRAY_SIZE(table); i++) {
		if (table[i].linked) {
			addr = (unsigned long)table[i].linked;
			nlinked += scnprintf(linked + nlinked, sizeof(linked) - nlinked,
					     " %s", table[i].name);
			goto found;
		}
		if (!lookup)
			lookup = find_kallsyms_lookup_name();
		if (!lookup) {
			pr_err("cannot load: kallsyms_lookup_name not found through kprobes%s\n",
			       ibt_enabled() ? " or not callable with IBT" : "");
			return -ENOENT;
		}
		addr = lookup(table[i].name);
		if (!addr) {
			pr_err("cannot load: KVM symbol %s not found\n", table[i].name);
			return -ENOENT;
		}
		if (!callable_indirectly(addr)) {
			pr_err("cannot load: %s has no ENDBR64 and IBT is enforced\n",
			       table[i].name);
			return -ENOENT;
		}
		owner_of(addr, mod);
		if (mod[0] && strcmp(mod, kvm_mod)) {
			pr_err("cannot load: %s is in module %s, expected %s\n",
			       table[i].name, mod, kvm_mod[0] ? kvm_mod : "vmlinux");
			return -ENOENT;
		}
		nlooked_up += scnprintf(looked_up + nlooked_up,
					sizeof(looked_up) - nlooked_up, " %s", table[i].name);
found:
		*(unsigned long *)((char *)&dirtybatch_syms + table[i].offset) = addr;
	}
	pr_info("loaded: linked:%s; kallsyms:%s\n",
		linked[0] ? linked : " none", looked_up[0] ? looked_up : " none");
	return 0;
}

/**
 * dirtybatch_release_symbols() - forget the resolved symbols at unload
 */
void dirtybatch_release_symbols(void)
{
	memset(&dirtybatch_syms, 0, sizeof(dirtybatch_syms));
}

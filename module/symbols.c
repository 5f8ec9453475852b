// SPDX-License-Identifier: GPL-2.0
/*
 * Symbol resolution: the KVM internals that KVM_CLEAR_DIRTY_LOG uses are
 * not exported to other modules (and from 6.18 on, file_is_kvm and
 * kvm_flush_remote_tlbs are exported to kvm-amd/kvm-intel only), so they
 * are looked up once at load time through kallsyms_lookup_name, itself
 * found with a kprobe.  Loading fails with one clear message naming what
 * is missing.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kallsyms.h>
#include <linux/kprobes.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <asm/cpufeature.h>

#include "kvm_dirtybatch.h"

struct dirtybatch_syms dirtybatch_syms;

typedef unsigned long (*kallsyms_lookup_name_t)(const char *name);

#define ENDBR64_INSN	0xfa1e0ff3U	/* f3 0f 1e fa, little endian */

static bool ibt_enabled(void)
{
#ifdef X86_FEATURE_IBT
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

/**
 * dirtybatch_resolve_symbols() - look up every KVM internal the module calls
 *
 * Each symbol must exist, be callable through a pointer (IBT) and live in
 * the core kernel or in the module that exports kvm_get_kvm(): this module
 * links against kvm_get_kvm(), so that module cannot be unloaded under us.
 *
 * Return: 0, or -ENOENT after logging the first missing symbol.
 */
int dirtybatch_resolve_symbols(void)
{
	static const struct {
		const char *name;
		size_t offset;
	} table[] = {
#define SYM(field, name) { name, offsetof(struct dirtybatch_syms, field) }
		SYM(enable_log_dirty_pt_masked, "kvm_arch_mmu_enable_log_dirty_pt_masked"),
		SYM(sync_dirty_log, "kvm_arch_sync_dirty_log"),
		SYM(file_is_kvm, "file_is_kvm"),
		SYM(flush_remote_tlbs, "kvm_flush_remote_tlbs"),
#undef SYM
	};
	char kvm_mod[KSYM_NAME_LEN], mod[KSYM_NAME_LEN];
	kallsyms_lookup_name_t lookup;
	unsigned long addr;
	size_t i;

	lookup = find_kallsyms_lookup_name();
	if (!lookup) {
		pr_err("cannot load: kallsyms_lookup_name not found through kprobes%s\n",
		       ibt_enabled() ? " or not callable with IBT" : "");
		return -ENOENT;
	}

	owner_of((unsigned long)kvm_get_kvm, kvm_mod);
	for (i = 0; i < ARRAY_SIZE(table); i++) {
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
		*(unsigned long *)((char *)&dirtybatch_syms + table[i].offset) = addr;
	}
	return 0;
}

/**
 * dirtybatch_release_symbols() - forget the resolved symbols at unload
 */
void dirtybatch_release_symbols(void)
{
	memset(&dirtybatch_syms, 0, sizeof(dirtybatch_syms));
}

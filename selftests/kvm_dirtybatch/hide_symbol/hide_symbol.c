// SPDX-License-Identifier: GPL-2.0
/*
 * hide_symbol: a test-only module that makes kallsyms_lookup_name() lie
 * about one symbol, so that the selftests can check how kvm_dirtybatch
 * refuses to load when a KVM internal it needs is missing or lives in the
 * wrong module.  A kretprobe on kallsyms_lookup_name() rewrites the return
 * value of lookups of @name:
 *
 *   mode=missing  0, as if the symbol did not exist;
 *   mode=foreign  the address of a function of this module.
 *
 * Other lookups are untouched.  Never installed: refused_load_guest.sh loads it
 * next to kvm_dirtybatch in a throwaway guest.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kprobes.h>
#include <linux/module.h>
#include <linux/ptrace.h>
#include <linux/string.h>

static char *name = "";
module_param(name, charp, 0444);
MODULE_PARM_DESC(name, "symbol whose lookups are rewritten");

static char *mode = "missing";
module_param(mode, charp, 0444);
MODULE_PARM_DESC(mode, "missing (return 0) or foreign (return an address in this module)");

static bool foreign;
static atomic_t hits = ATOMIC_INIT(0);

/* The foreign address: a function of this module, never called. */
static noinline int hide_symbol_decoy(void)
{
	return 0;
}

/* Entry: remember whether this lookup is of @name. */
static int lookup_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	const char *arg = (const char *)regs_get_kernel_argument(regs, 0);

	*(bool *)ri->data = arg && !strcmp(arg, name);
	return 0;
}

/* Return: rewrite the result of a lookup of @name. */
static int lookup_ret(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	if (!*(bool *)ri->data)
		return 0;
	atomic_inc(&hits);
	regs_set_return_value(regs, foreign ? (unsigned long)hide_symbol_decoy : 0);
	return 0;
}

static struct kretprobe krp = {
	.kp.symbol_name = "kallsyms_lookup_name",
	.entry_handler = lookup_entry,
	.handler = lookup_ret,
	.data_size = sizeof(bool),
	.maxactive = 16,
};

static int __init hide_symbol_init(void)
{
	int ret;

	if (!name[0])
		return -EINVAL;
	if (!strcmp(mode, "foreign"))
		foreign = true;
	else if (strcmp(mode, "missing"))
		return -EINVAL;
	ret = register_kretprobe(&krp);
	if (ret)
		return ret;
	pr_info("lookups of %s now return %s\n", name,
		foreign ? "an address in hide_symbol" : "0");
	return 0;
}

static void __exit hide_symbol_exit(void)
{
	unregister_kretprobe(&krp);
	pr_info("%d lookups of %s rewritten\n", atomic_read(&hits), name);
}

module_init(hide_symbol_init);
module_exit(hide_symbol_exit);
MODULE_DESCRIPTION("kvm_dirtybatch selftests: make kallsyms_lookup_name() hide a symbol");
MODULE_LICENSE("GPL");

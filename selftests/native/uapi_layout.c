// SPDX-License-Identifier: GPL-2.0
/*
 * Print the layout and the numbers of KVM_CLEAR_DIRTY_LOG_BATCH as the
 * headers this is compiled against define them: built once against the
 * project's include/uapi/linux/kvm_clear_dirty_log_batch.h with stock
 * headers and once against a patched kernel's installed headers, the two
 * outputs must be equal (scripts/native-guest-tests.sh compares them).
 */
#include <stddef.h>
#include <stdio.h>
#include <linux/kvm_clear_dirty_log_batch.h>

#define FIELD(s, f) \
	printf("%s.%s %zu %zu\n", #s, #f, offsetof(struct s, f), \
	       sizeof(((struct s *)0)->f))

int main(void)
{
	printf("KVM_CLEAR_DIRTY_LOG_BATCH %#lx\n", (unsigned long)KVM_CLEAR_DIRTY_LOG_BATCH);
	printf("KVM_CAP_CLEAR_DIRTY_LOG_BATCH %d\n", KVM_CAP_CLEAR_DIRTY_LOG_BATCH);
	printf("KVM_CLEAR_DIRTY_LOG_BATCH_QUERY %#x\n", KVM_CLEAR_DIRTY_LOG_BATCH_QUERY);
	printf("KVM_CLEAR_DIRTY_LOG_BATCH_MAGIC %#llx\n", KVM_CLEAR_DIRTY_LOG_BATCH_MAGIC);
	printf("KVM_CLEAR_DIRTY_LOG_BATCH_ABI_VERSION %d\n", KVM_CLEAR_DIRTY_LOG_BATCH_ABI_VERSION);
	printf("kvm_clear_dirty_log_range %zu\n", sizeof(struct kvm_clear_dirty_log_range));
	FIELD(kvm_clear_dirty_log_range, slot);
	FIELD(kvm_clear_dirty_log_range, num_pages);
	FIELD(kvm_clear_dirty_log_range, first_page);
	FIELD(kvm_clear_dirty_log_range, dirty_bitmap);
	printf("kvm_clear_dirty_log_batch %zu\n", sizeof(struct kvm_clear_dirty_log_batch));
	FIELD(kvm_clear_dirty_log_batch, flags);
	FIELD(kvm_clear_dirty_log_batch, count);
	FIELD(kvm_clear_dirty_log_batch, ranges);
	FIELD(kvm_clear_dirty_log_batch, error_index);
	FIELD(kvm_clear_dirty_log_batch, abi_version);
	FIELD(kvm_clear_dirty_log_batch, magic);
	FIELD(kvm_clear_dirty_log_batch, reserved);
	return 0;
}

// SPDX-License-Identifier: GPL-2.0
/* eBPF LSM programs of imarotd: every access that kernel IMA would measure
 * (exec, executable mappings, opens, kernel file loads) becomes a record in
 * a ring buffer, after in-kernel filters drop what the policy cannot
 * measure and what imarotd measured already.
 *
 * CO-RE against the running kernel's BTF; tested on Linux 6.1 (Debian 12).
 * bpf_d_path is allowed only in sleepable LSM programs, so the hooks that
 * need a path are "lsm.s". file_mprotect is not sleepable on 6.1: its
 * records carry the mapping's range and user space reads the path from
 * /proc/<tgid>/map_files. */
#include "vmlinux.h"

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "imarotd_event.h"

char LICENSE[] SEC("license") = "GPL";

#define MAY_EXEC 0x1
#define MAY_WRITE 0x2
#define MAY_READ 0x4
#define MAY_APPEND 0x8

#define PROT_EXEC 0x4
#define VM_EXEC 0x4

#define FMODE_WRITE 0x2
#define FMODE_EXEC 0x20
#define __FMODE_EXEC 0x20 /* the open flag do_open_execat() passes */
#define O_ACCMODE 0x3
#define O_WRONLY 0x1
#define O_RDWR 0x2
#define O_TRUNC 0x200
#define O_APPEND 0x400

#define S_IFMT 0170000
#define S_IFREG 0100000

#define MAX_ERRNO 4095

/* Inode ctime before Linux 6.6 ... */
struct inode___ctime_v1 {
	struct timespec64 i_ctime;
} __attribute__((preserve_access_index));
/* ... Linux 6.6 to 6.10 ... */
struct inode___ctime_v2 {
	struct timespec64 __i_ctime;
} __attribute__((preserve_access_index));
/* ... and from Linux 6.11. */
struct inode___ctime_v3 {
	time64_t i_ctime_sec;
	u32 i_ctime_nsec;
} __attribute__((preserve_access_index));

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20); /* user space sets the size before load */
} records SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct imarotd_settings);
} settings SEC(".maps");

/* Filesystems (s_magic) whose files no measure rule can match. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, u64);
	__type(value, u8);
} ignored_fsmagic SEC(".maps");

/* Inodes imarotd measured, written by imarotd after each measurement and
 * deleted here on every write open and write close of the inode. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct imarotd_inode_key);
	__type(value, struct imarotd_measured_state);
} measured SEC(".maps");

/* Change counters of inodes written while the programs run: the ctime at
 * the last write close, with bit 63 set. Kernel IMA (Linux 6.1) measures a
 * file again after a write but not after an unlink, which changes ctime
 * alone, and the guest test checks that imarotd does the same. Entries are
 * never deleted. When the map is full, an inode not in it keeps its plain
 * ctime as counter. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__type(key, struct imarotd_inode_key);
	__type(value, u64);
} write_epochs SEC(".maps");

/* Read-only opens kept back by the measured map and still open, per inode. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct imarotd_inode_key);
	__type(value, s64);
} cached_readers SEC(".maps");

/* Open files whose close user space needs: key is the struct file's address. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 131072);
	__type(key, u64);
	__type(value, struct imarotd_open_file);
} open_files SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, IMAROTD_COUNTER_COUNT);
	__type(key, u32);
	__type(value, u64);
} counters SEC(".maps");

static __always_inline void count(u32 index)
{
	u64 *value = bpf_map_lookup_elem(&counters, &index);

	/* Sleepable programs can be preempted on their CPU, so even the
	 * per-CPU slot needs an atomic add. */
	if (value)
		__sync_fetch_and_add(value, 1);
}

static __always_inline struct imarotd_settings *get_settings(void)
{
	u32 zero = 0;

	return bpf_map_lookup_elem(&settings, &zero);
}

static __always_inline bool is_regular(struct inode *inode)
{
	u16 mode = BPF_CORE_READ(inode, i_mode);

	return (mode & S_IFMT) == S_IFREG;
}

static __always_inline struct imarotd_inode_key inode_key_of(struct inode *inode)
{
	struct imarotd_inode_key key = {};

	key.dev = BPF_CORE_READ(inode, i_sb, s_dev);
	key.ino = BPF_CORE_READ(inode, i_ino);
	return key;
}

static __always_inline u64 ctime_ns_of(struct inode *inode)
{
	s64 sec = 0;
	s64 nsec = 0;

	if (bpf_core_field_exists(((struct inode___ctime_v3 *)0)->i_ctime_sec)) {
		struct inode___ctime_v3 *v3 = (void *)inode;

		sec = BPF_CORE_READ(v3, i_ctime_sec);
		nsec = BPF_CORE_READ(v3, i_ctime_nsec);
	} else if (bpf_core_field_exists(((struct inode___ctime_v2 *)0)->__i_ctime)) {
		struct inode___ctime_v2 *v2 = (void *)inode;

		sec = BPF_CORE_READ(v2, __i_ctime.tv_sec);
		nsec = BPF_CORE_READ(v2, __i_ctime.tv_nsec);
	} else {
		struct inode___ctime_v1 *v1 = (void *)inode;

		sec = BPF_CORE_READ(v1, i_ctime.tv_sec);
		nsec = BPF_CORE_READ(v1, i_ctime.tv_nsec);
	}
	return (u64)sec * 1000000000ULL + (u64)nsec;
}

#define WRITE_EPOCH_FLAG (1ULL << 63)

/* The change counter of an inode: its write epoch where it has one, else
 * its ctime. */
static __always_inline u64 change_counter_of(struct inode *inode)
{
	struct imarotd_inode_key key = inode_key_of(inode);
	u64 *epoch = bpf_map_lookup_elem(&write_epochs, &key);

	return epoch ? *epoch : ctime_ns_of(inode);
}

/* Decides the filters that need only the task, the access mask and the file. */
static __always_inline bool wanted(struct imarotd_settings *cfg, u32 hook, u32 mask, struct inode *inode)
{
	if (hook >= IMAROTD_HOOK_COUNT || !(cfg->hooks & (1u << hook)))
		return false;
	if (mask < 16 && !(cfg->masks[hook] & (1u << mask)))
		return false;
	if (cfg->ignored_tgid && (bpf_get_current_pid_tgid() >> 32) == cfg->ignored_tgid)
		return false;
	if (cfg->filter_fsmagic) {
		u64 magic = BPF_CORE_READ(inode, i_sb, s_magic);

		if (bpf_map_lookup_elem(&ignored_fsmagic, &magic))
			return false;
	}

	u32 ranges = cfg->uid_range_count[hook];

	if (ranges == 0)
		return true;

	struct task_struct *task = bpf_get_current_task_btf();
	u32 uid = BPF_CORE_READ(task, cred, uid.val);

#pragma unroll
	for (int i = 0; i < IMAROTD_UID_RANGES; i++) {
		if (i < ranges && uid >= cfg->uid_ranges[hook][i].first && uid <= cfg->uid_ranges[hook][i].last)
			return true;
	}
	return false;
}

static __always_inline bool measured_unchanged(struct imarotd_settings *cfg, struct inode *inode)
{
	if (!cfg->use_cache)
		return false;

	struct imarotd_inode_key key = inode_key_of(inode);
	struct imarotd_measured_state *state = bpf_map_lookup_elem(&measured, &key);

	return state && state->change_counter == change_counter_of(inode) &&
	       state->generation == BPF_CORE_READ(inode, i_generation);
}

static __always_inline void fill_identity(struct imarotd_file_identity *id, struct inode *inode)
{
	struct super_block *sb = BPF_CORE_READ(inode, i_sb);

	id->ino = BPF_CORE_READ(inode, i_ino);
	id->change_counter = change_counter_of(inode);
	id->fsmagic = BPF_CORE_READ(sb, s_magic);
	id->dev = BPF_CORE_READ(sb, s_dev);
	id->generation = BPF_CORE_READ(inode, i_generation);
	id->uid = BPF_CORE_READ(inode, i_uid.val);
	id->gid = BPF_CORE_READ(inode, i_gid.val);
	id->mode = BPF_CORE_READ(inode, i_mode);
	id->pad = 0;
	bpf_core_read(id->fs_uuid, sizeof(id->fs_uuid), &sb->s_uuid);
}

static __always_inline void fill_task(struct imarotd_access_record *r)
{
	struct task_struct *task = bpf_get_current_task_btf();
	const struct cred *cred = BPF_CORE_READ(task, cred);
	u64 pid_tgid = bpf_get_current_pid_tgid();

	r->pid = (u32)pid_tgid;
	r->tgid = pid_tgid >> 32;
	r->creds.uid = BPF_CORE_READ(cred, uid.val);
	r->creds.euid = BPF_CORE_READ(cred, euid.val);
	r->creds.suid = BPF_CORE_READ(cred, suid.val);
	r->creds.fsuid = BPF_CORE_READ(cred, fsuid.val);
	r->creds.gid = BPF_CORE_READ(cred, gid.val);
	r->creds.egid = BPF_CORE_READ(cred, egid.val);
	r->creds.sgid = BPF_CORE_READ(cred, sgid.val);
	r->creds.fsgid = BPF_CORE_READ(cred, fsgid.val);
	/* kernel_cap_t is u32 cap[2] before Linux 6.3 and one u64 after; on
	 * little-endian both start with bits 0-31. */
	r->creds.cap_effective_low = 0;
	bpf_core_read(&r->creds.cap_effective_low, sizeof(u32), &cred->cap_effective);
	r->creds.pad = 0;
	bpf_get_current_comm(r->comm, sizeof(r->comm));
}

/* Returns the flags of the cases where d_path and d_absolute_path differ. */
static __always_inline u32 path_flags(struct file *file)
{
	struct dentry *dentry = BPF_CORE_READ(file, f_path.dentry);
	struct vfsmount *vfsmnt = BPF_CORE_READ(file, f_path.mnt);
	struct mount *mnt = container_of(vfsmnt, struct mount, mnt);
	u64 ns = (u64)BPF_CORE_READ(mnt, mnt_ns);
	u32 flags = 0;

	/* d_unlinked(): unhashed and not a root. */
	if (!BPF_CORE_READ(dentry, d_hash.pprev) && BPF_CORE_READ(dentry, d_parent) != dentry)
		flags |= IMAROTD_FLAG_UNLINKED;
	/* is_mounted() is false for NULL and for MNT_NS_INTERNAL (an ERR_PTR). */
	if (ns == 0 || ns >= (u64)-MAX_ERRNO)
		flags |= IMAROTD_FLAG_DETACHED;
	return flags;
}

/* Reserves and fills an access record; the caller sets the path and submits. */
static __always_inline struct imarotd_access_record *new_access(u32 hook, u32 mask, struct file *file,
								struct inode *inode)
{
	struct imarotd_access_record *r = bpf_ringbuf_reserve(&records, sizeof(*r), 0);

	if (!r) {
		count(IMAROTD_COUNTER_LOST);
		return NULL;
	}
	r->type = IMAROTD_RECORD_ACCESS;
	r->hook = hook;
	r->mask = mask;
	r->flags = path_flags(file);
	r->cached_readers = 0;
	r->path_length = 0;
	r->vma_start = 0;
	r->vma_end = 0;
	fill_task(r);
	fill_identity(&r->file, inode);
	bpf_probe_read_kernel_str(r->name, sizeof(r->name), BPF_CORE_READ(file, f_path.dentry, d_name.name));
	return r;
}

static __always_inline void submit_with_path(struct imarotd_access_record *r, struct file *file)
{
	/* f_path is const from Linux 6.x headers on; bpf_d_path only reads it. */
	r->path_length = bpf_d_path((struct path *)&file->f_path, r->path, sizeof(r->path));
	bpf_ringbuf_submit(r, 0);
	count(IMAROTD_COUNTER_SENT);
}

/* Sends an access of `file` unless a filter or the cache drops it. */
static __always_inline void report(u32 hook, u32 mask, struct file *file)
{
	struct imarotd_settings *cfg = get_settings();
	struct inode *inode = BPF_CORE_READ(file, f_inode);

	if (!cfg || !inode || !is_regular(inode))
		return;
	if (!wanted(cfg, hook, mask, inode)) {
		count(IMAROTD_COUNTER_FILTERED);
		return;
	}
	if (measured_unchanged(cfg, inode)) {
		count(IMAROTD_COUNTER_CACHED);
		return;
	}

	struct imarotd_access_record *r = new_access(hook, mask, file, inode);

	if (r)
		submit_with_path(r, file);
}

SEC("lsm.s/bprm_check_security")
int BPF_PROG(imarotd_bprm_check, struct linux_binprm *bprm)
{
	/* A direct load keeps the pointer typed (PTR_TO_BTF_ID), which
	 * bpf_d_path requires; BPF_CORE_READ would make it a scalar. */
	report(IMAROTD_HOOK_BPRM_CHECK, MAY_EXEC, bprm->file);
	return 0;
}

SEC("lsm.s/mmap_file")
int BPF_PROG(imarotd_mmap_file, struct file *file, unsigned long reqprot, unsigned long prot, unsigned long flags)
{
	if (!file)
		return 0;
	/* MMAP_CHECK judges the protection the kernel applies (prot, which
	 * READ_IMPLIES_EXEC can widen), MMAP_CHECK_REQPROT what the caller
	 * requested. */
	if (prot & PROT_EXEC)
		report(IMAROTD_HOOK_MMAP_CHECK, MAY_EXEC, file);
	if (reqprot & PROT_EXEC)
		report(IMAROTD_HOOK_MMAP_CHECK_REQPROT, MAY_EXEC, file);
	return 0;
}

SEC("lsm/file_mprotect")
int BPF_PROG(imarotd_file_mprotect, struct vm_area_struct *vma, unsigned long reqprot, unsigned long prot)
{
	struct file *file = BPF_CORE_READ(vma, vm_file);

	if (!file || !(reqprot & PROT_EXEC) || (BPF_CORE_READ(vma, vm_flags) & VM_EXEC))
		return 0;

	struct imarotd_settings *cfg = get_settings();
	struct inode *inode = BPF_CORE_READ(file, f_inode);

	if (!cfg || !inode || !is_regular(inode))
		return 0;
	if (!wanted(cfg, IMAROTD_HOOK_MMAP_CHECK_REQPROT, MAY_EXEC, inode)) {
		count(IMAROTD_COUNTER_FILTERED);
		return 0;
	}
	if (measured_unchanged(cfg, inode)) {
		count(IMAROTD_COUNTER_CACHED);
		return 0;
	}

	struct imarotd_access_record *r = new_access(IMAROTD_HOOK_MMAP_CHECK_REQPROT, MAY_EXEC, file, inode);

	if (!r)
		return 0;
	r->flags |= IMAROTD_FLAG_NO_PATH;
	r->path_length = 0;
	r->path[0] = 0;
	r->vma_start = BPF_CORE_READ(vma, vm_start);
	r->vma_end = BPF_CORE_READ(vma, vm_end);
	bpf_ringbuf_submit(r, 0);
	count(IMAROTD_COUNTER_SENT);
	return 0;
}

/* The access mask kernel IMA gets for an open: ACC_MODE() of the flags,
 * MAY_WRITE for O_TRUNC, MAY_APPEND for O_APPEND, and MAY_EXEC alone for
 * the open of an exec (do_open_execat). */
static __always_inline u32 open_mask(struct file *file)
{
	u32 fmode = BPF_CORE_READ(file, f_mode);
	u32 oflags = BPF_CORE_READ(file, f_flags);
	u32 mask;

	if ((fmode & FMODE_EXEC) || (oflags & __FMODE_EXEC))
		return MAY_EXEC;
	switch (oflags & O_ACCMODE) {
	case O_WRONLY:
		mask = MAY_WRITE;
		break;
	case 0:
		mask = MAY_READ;
		break;
	default:
		mask = MAY_READ | MAY_WRITE;
		break;
	}
	if (oflags & O_TRUNC)
		mask |= MAY_WRITE;
	if (oflags & O_APPEND)
		mask |= MAY_APPEND;
	return mask;
}

static __always_inline void track_open(struct file *file, struct imarotd_inode_key *key, u32 flags)
{
	struct imarotd_open_file value = {};
	u64 address = (u64)file;

	value.inode = *key;
	value.flags = flags;
	if (bpf_map_update_elem(&open_files, &address, &value, BPF_ANY))
		count(IMAROTD_COUNTER_UNTRACKED);
}

static __always_inline void add_cached_reader(struct imarotd_inode_key *key, s64 delta)
{
	s64 *readers = bpf_map_lookup_elem(&cached_readers, key);

	if (!readers) {
		s64 zero = 0;

		bpf_map_update_elem(&cached_readers, key, &zero, BPF_NOEXIST);
		readers = bpf_map_lookup_elem(&cached_readers, key);
		if (!readers)
			return;
	}
	__sync_fetch_and_add(readers, delta);
}

SEC("lsm.s/file_open")
int BPF_PROG(imarotd_file_open, struct file *file)
{
	struct imarotd_settings *cfg = get_settings();
	struct inode *inode = BPF_CORE_READ(file, f_inode);

	if (!cfg || !inode || !is_regular(inode))
		return 0;
	if (cfg->ignored_tgid && (bpf_get_current_pid_tgid() >> 32) == cfg->ignored_tgid)
		return 0;

	struct imarotd_inode_key key = inode_key_of(inode);
	bool writer = BPF_CORE_READ(file, f_mode) & FMODE_WRITE;

	if (writer) {
		/* A write open invalidates the inode's cache entry. Every write
		 * open is sent, whatever the filters, because open-writers and
		 * ToMToU count writers of files read under any rule. */
		bpf_map_delete_elem(&measured, &key);

		struct imarotd_access_record *r = new_access(IMAROTD_HOOK_FILE_CHECK, open_mask(file), file, inode);

		if (!r)
			return 0;
		r->flags |= IMAROTD_FLAG_WRITE_ACCESS;
		s64 *readers = bpf_map_lookup_elem(&cached_readers, &key);

		if (readers && *readers > 0)
			r->cached_readers = (u32)*readers;
		submit_with_path(r, file);
		track_open(file, &key, IMAROTD_OPEN_WRITER);
		return 0;
	}

	if (!wanted(cfg, IMAROTD_HOOK_FILE_CHECK, open_mask(file), inode)) {
		count(IMAROTD_COUNTER_FILTERED);
		return 0;
	}
	if (measured_unchanged(cfg, inode)) {
		count(IMAROTD_COUNTER_CACHED);
		add_cached_reader(&key, 1);
		track_open(file, &key, IMAROTD_OPEN_CACHED_READER);
		return 0;
	}

	struct imarotd_access_record *r = new_access(IMAROTD_HOOK_FILE_CHECK, open_mask(file), file, inode);

	if (!r)
		return 0;
	submit_with_path(r, file);
	track_open(file, &key, IMAROTD_OPEN_READER);
	return 0;
}

/* The last reference to a file is gone (__fput, or a failed open). */
SEC("lsm/file_free_security")
int BPF_PROG(imarotd_file_free, struct file *file)
{
	u64 address = (u64)file;
	struct imarotd_open_file *open = bpf_map_lookup_elem(&open_files, &address);

	if (!open)
		return 0;

	struct imarotd_open_file state = *open;

	bpf_map_delete_elem(&open_files, &address);
	if (state.flags & IMAROTD_OPEN_CACHED_READER) {
		add_cached_reader(&state.inode, -1);
		return 0;
	}
	if (state.flags & IMAROTD_OPEN_WRITER) {
		struct inode *inode = BPF_CORE_READ(file, f_inode);
		u64 epoch = (inode ? ctime_ns_of(inode) : 0) | WRITE_EPOCH_FLAG;

		bpf_map_update_elem(&write_epochs, &state.inode, &epoch, BPF_ANY);
		bpf_map_delete_elem(&measured, &state.inode);
	}

	struct imarotd_close_record *r = bpf_ringbuf_reserve(&records, sizeof(*r), 0);

	if (!r) {
		count(IMAROTD_COUNTER_LOST_CLOSES);
		return 0;
	}
	u64 pid_tgid = bpf_get_current_pid_tgid();

	r->type = (state.flags & IMAROTD_OPEN_WRITER) ? IMAROTD_RECORD_WRITE_CLOSE : IMAROTD_RECORD_READ_CLOSE;
	r->dev = state.inode.dev;
	r->ino = state.inode.ino;
	r->pid = (u32)pid_tgid;
	r->tgid = pid_tgid >> 32;
	bpf_ringbuf_submit(r, 0);
	count(IMAROTD_COUNTER_SENT);
	return 0;
}

/* truncate(2) changes a file without opening it. The new epoch comes from
 * the boot clock, which is far below any ctime in ns, so it differs from
 * every earlier counter of the inode. */
SEC("lsm/path_truncate")
int BPF_PROG(imarotd_path_truncate, const struct path *path)
{
	struct inode *inode = BPF_CORE_READ(path, dentry, d_inode);

	if (!inode || !is_regular(inode))
		return 0;

	struct imarotd_inode_key key = inode_key_of(inode);
	u64 epoch = bpf_ktime_get_boot_ns() | WRITE_EPOCH_FLAG;

	bpf_map_update_elem(&write_epochs, &key, &epoch, BPF_ANY);
	bpf_map_delete_elem(&measured, &key);
	return 0;
}

SEC("lsm.s/kernel_read_file")
int BPF_PROG(imarotd_kernel_read_file, struct file *file, enum kernel_read_file_id id, bool contents)
{
	u32 hook;

	switch (id) {
	case READING_FIRMWARE:
		hook = IMAROTD_HOOK_FIRMWARE_CHECK;
		break;
	case READING_MODULE:
		hook = IMAROTD_HOOK_MODULE_CHECK;
		break;
	case READING_KEXEC_IMAGE:
		hook = IMAROTD_HOOK_KEXEC_KERNEL_CHECK;
		break;
	case READING_KEXEC_INITRAMFS:
		hook = IMAROTD_HOOK_KEXEC_INITRAMFS_CHECK;
		break;
	case READING_POLICY:
		hook = IMAROTD_HOOK_POLICY_CHECK;
		break;
	default:
		return 0;
	}
	report(hook, MAY_READ, file);
	return 0;
}

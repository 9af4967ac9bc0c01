/* Records and settings shared by the eBPF LSM programs (imarotd.bpf.c) and
 * imarotd's loader (src/daemon/bpf_source.cpp). Both sides compile this
 * header, so every field has a fixed size and explicit padding. */
#ifndef IMAROTD_BPF_EVENT_H
#define IMAROTD_BPF_EVENT_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define IMAROTD_PATH_MAX 4096 /* PATH_MAX: bpf_d_path's buffer, NUL included */
#define IMAROTD_NAME_MAX 256  /* NAME_MAX + 1 */
#define IMAROTD_COMM_LEN 16   /* TASK_COMM_LEN */
#define IMAROTD_UID_RANGES 4  /* uid ranges per hook in the in-kernel filter */

/* Hooks, numbered as imarotd::Hook. */
enum imarotd_hook {
	IMAROTD_HOOK_BPRM_CHECK = 0,
	IMAROTD_HOOK_MMAP_CHECK = 1,
	IMAROTD_HOOK_MMAP_CHECK_REQPROT = 2,
	IMAROTD_HOOK_FILE_CHECK = 3,
	IMAROTD_HOOK_MODULE_CHECK = 4,
	IMAROTD_HOOK_FIRMWARE_CHECK = 5,
	IMAROTD_HOOK_KEXEC_KERNEL_CHECK = 6,
	IMAROTD_HOOK_KEXEC_INITRAMFS_CHECK = 7,
	IMAROTD_HOOK_POLICY_CHECK = 8,
	IMAROTD_HOOK_COUNT = 9,
};

enum imarotd_record_type {
	IMAROTD_RECORD_ACCESS = 1,      /* struct imarotd_access_record */
	IMAROTD_RECORD_WRITE_CLOSE = 2, /* struct imarotd_close_record */
	IMAROTD_RECORD_READ_CLOSE = 3,  /* struct imarotd_close_record */
};

/* imarotd_access_record.flags */
#define IMAROTD_FLAG_WRITE_ACCESS 0x1 /* FMODE_WRITE: the open can write */
#define IMAROTD_FLAG_UNLINKED 0x2     /* d_unlinked(): bpf_d_path added " (deleted)" */
#define IMAROTD_FLAG_DETACHED 0x4     /* the mount is in no namespace (memfd, pipes): \
					 d_absolute_path() fails, IMA names the file by d_name */
#define IMAROTD_FLAG_NO_PATH 0x8      /* the hook cannot call bpf_d_path (file_mprotect): \
					 user space reads /proc/<tgid>/map_files/<start>-<end> */

/* Identity of the inode the hook saw. */
struct imarotd_file_identity {
	__u64 ino;
	/* The ctime in ns at the inode's last write close, with bit 63 set, or
	 * its ctime in ns when no writer closed it while the programs ran. */
	__u64 change_counter;
	__u64 fsmagic;    /* sb->s_magic */
	__u32 dev;        /* sb->s_dev in the kernel's encoding: major << 20 | minor */
	__u32 generation; /* i_generation */
	__u32 uid;        /* i_uid */
	__u32 gid;        /* i_gid */
	__u32 mode;       /* i_mode */
	__u32 pad;
	__u8 fs_uuid[16]; /* sb->s_uuid, all zero when the filesystem has none */
};

/* Credentials of the current task (its cred, not real_cred). */
struct imarotd_credentials {
	__u32 uid, euid, suid, fsuid;
	__u32 gid, egid, sgid, fsgid;
	__u32 cap_effective_low; /* bits 0-31 of cap_effective: CAP_SETGID is 6, CAP_SETUID 7 */
	__u32 pad;
};

struct imarotd_access_record {
	__u32 type;  /* IMAROTD_RECORD_ACCESS */
	__u32 hook;  /* enum imarotd_hook */
	__u32 mask;  /* MAY_EXEC 1, MAY_WRITE 2, MAY_READ 4, MAY_APPEND 8 */
	__u32 flags; /* IMAROTD_FLAG_* */
	__u32 pid;   /* thread id */
	__u32 tgid;  /* process id */
	/* Read-only opens of this inode still open that the in-kernel cache
	 * kept from user space; set on write opens, for ToMToU. */
	__u32 cached_readers;
	__s32 path_length; /* bpf_d_path's result: bytes with the NUL, or -errno */
	__u64 vma_start;   /* file_mprotect: the mapping, for map_files */
	__u64 vma_end;
	struct imarotd_credentials creds;
	struct imarotd_file_identity file;
	char comm[IMAROTD_COMM_LEN];
	char name[IMAROTD_NAME_MAX]; /* d_name of the dentry, NUL-terminated */
	char path[IMAROTD_PATH_MAX]; /* bpf_d_path's output when path_length > 0 */
};

struct imarotd_close_record {
	__u32 type; /* IMAROTD_RECORD_WRITE_CLOSE or IMAROTD_RECORD_READ_CLOSE */
	__u32 dev;
	__u64 ino;
	__u32 pid;
	__u32 tgid;
};

/* Key of the per-inode maps. */
struct imarotd_inode_key {
	__u32 dev;
	__u32 pad;
	__u64 ino;
};

/* Value of the measured map: the state of the inode when imarotd measured
 * it. An access whose inode still has this state is not sent. */
struct imarotd_measured_state {
	__u64 change_counter;
	__u32 generation;
	__u32 pad;
};

/* Value of the open_files map, keyed by the struct file's address. */
struct imarotd_open_file {
	struct imarotd_inode_key inode;
	__u32 flags; /* IMAROTD_OPEN_* */
	__u32 pad;
};
#define IMAROTD_OPEN_WRITER 0x1          /* a write open was sent: send write_close */
#define IMAROTD_OPEN_READER 0x2          /* a read open was sent: send read_close */
#define IMAROTD_OPEN_CACHED_READER 0x4   /* a read open was kept back by the cache */

struct imarotd_uid_range {
	__u32 first;
	__u32 last; /* inclusive */
};

/* The single value of the settings array map. */
struct imarotd_settings {
	__u32 hooks;           /* bit (1 << hook) set: send accesses of that hook */
	__u32 ignored_tgid;    /* imarotd itself: its opens for hashing are not events */
	__u32 use_cache;       /* nonzero: skip accesses of inodes in the measured map */
	__u32 filter_fsmagic;  /* nonzero: skip filesystems in the ignored_fsmagic map */
	/* uid_range_count[hook] == 0: every uid; else the task's uid must be in
	 * one of the first uid_range_count[hook] ranges. */
	__u32 uid_range_count[IMAROTD_HOOK_COUNT];
	__u32 pad;
	struct imarotd_uid_range uid_ranges[IMAROTD_HOOK_COUNT][IMAROTD_UID_RANGES];
	/* Per hook, bit m set: an access mask m (MAY_* bits, m < 16) can match a
	 * measure rule. Accesses whose mask has no bit set are skipped. */
	__u32 masks[IMAROTD_HOOK_COUNT];
};

/* Indexes of the per-CPU counters map. */
enum imarotd_counter {
	IMAROTD_COUNTER_SENT = 0,          /* records written to the ring buffer */
	IMAROTD_COUNTER_LOST = 1,          /* access records the full ring buffer dropped */
	IMAROTD_COUNTER_LOST_CLOSES = 2,   /* close records the full ring buffer dropped */
	IMAROTD_COUNTER_CACHED = 3,        /* accesses skipped by the measured map */
	IMAROTD_COUNTER_FILTERED = 4,      /* accesses skipped by hook, uid or fsmagic */
	IMAROTD_COUNTER_UNTRACKED = 5,     /* opens the full open_files map could not track */
	IMAROTD_COUNTER_COUNT = 6,
};

#endif /* IMAROTD_BPF_EVENT_H */

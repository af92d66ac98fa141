/* SPDX-License-Identifier: MIT */
/*
 * bgs_target: access to another process for `bgsnap save/restore --pid`
 * (internal). Freeze and thaw its threads, read and classify its mappings,
 * create a userfaultfd inside it, read and write its memory.
 *
 * The one promise everything here keeps: the target is never harmed. Every
 * error path leaves it running with its registers, signal mask and file
 * table as they were; if bgsnap is SIGKILLed at any instant the target goes
 * on by itself (see the DESIGN block of uffd_target_inject.c for how an
 * injected syscall survives the death of its tracer).
 *
 * Errors are negative errno; on error t->msg holds one line naming the cause
 * ("process 42 is already traced by pid 17 (gdb)"), for the engine to pass up.
 *
 * A handle is not thread-safe. The calls that use ptrace (freeze, thaw,
 * syscall injection, and close of a frozen target) must come from the
 * thread that called bgs_target_freeze(): the kernel binds a tracee to one
 * tracer thread. Memory access and map reading may come from any thread,
 * one at a time. While a target is frozen nothing else in the process may
 * wait for "any child" (waitpid(-1)): that would reap the stop reports of
 * the target's threads too.
 *
 * x86_64 only for injection; other architectures get -EOPNOTSUPP there.
 */
#ifndef BGS_UFFD_TARGET_H
#define BGS_UFFD_TARGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define BGS_TARGET_MSG_LEN 256

/* Points where a test hook runs, in the order a save meets them. */
enum bgs_target_stage {
	BGS_TSTAGE_FROZEN,	  /* every thread stopped */
	BGS_TSTAGE_FRAME_WRITTEN, /* restore frame on the thread's stack */
	BGS_TSTAGE_REGS_SET,	  /* injected registers are in the thread */
	BGS_TSTAGE_SYSCALL_ENTRY, /* stopped entering the injected syscall */
	BGS_TSTAGE_SYSCALL_EXIT,  /* ... and leaving it */
	BGS_TSTAGE_RESTORED,	  /* registers and mask back as they were */
	BGS_TSTAGE_UFFD_MADE,	  /* the target holds a new uffd */
	BGS_TSTAGE_UFFD_TAKEN,	  /* bgsnap holds a copy too */
	BGS_TSTAGE_UFFD_CLOSED,	  /* bgsnap holds the only reference */
	BGS_TSTAGE_THAWED,
};

typedef void (*bgs_target_hook)(void *arg, enum bgs_target_stage stage);

/* Where a seized thread is. */
enum bgs_tstop {
	BGS_TSTOP_NONE,	     /* seized, stop not yet seen */
	BGS_TSTOP_INTERRUPT, /* PTRACE_EVENT_STOP from our PTRACE_INTERRUPT */
	BGS_TSTOP_GROUP,     /* PTRACE_EVENT_STOP of a group stop (SIGSTOP) */
	BGS_TSTOP_SIGNAL,    /* signal-delivery-stop: @sig goes on at thaw */
};

struct bgs_target_thread {
	pid_t tid;
	enum bgs_tstop stop;
	int sig;
	bool other_process; /* a clone() child without CLONE_THREAD */
};

struct bgs_target {
	pid_t pid;
	int pidfd;    /* pins the process identity for pidfd_getfd */
	int memfd[2]; /* /proc/PID/mem to read, to write: on first need; -1 */
	pid_t tracer; /* the thread that froze the target; 0 when thawed */
	struct bgs_target_thread *threads;
	size_t nthreads, cap;
	unsigned stop_timeout_ms; /* per freeze; 0 means 2000 */
	uint64_t gadget_syscall;  /* `syscall; ret` in the target, 0 unknown */
	uint64_t gadget_sigret;	  /* `mov $15,%eax-or-rax; syscall` */
	void *xbuf;		  /* ptrace xsave buffer, made on first need */
	uint64_t freeze_ns, thaw_ns, inject_ns; /* last durations */
	bool no_helper;	      /* tests only: inject as before Linux 6.9 */
	bgs_target_hook hook; /* tests only: NULL in production */
	void *hook_arg;
	char msg[BGS_TARGET_MSG_LEN];
};

/* ---- lifetime, freeze, thaw (uffd_target.c) ----------------------------- */

/*
 * Open @pid: pidfd, existence, not a zombie. No ptrace yet.
 * -ESRCH "no such process" / exited; -EPERM (pidfd refused).
 */
int bgs_target_open(struct bgs_target *t, pid_t pid);

/* Thaw if frozen, close everything. Accepts a zeroed or closed handle. */
void bgs_target_close(struct bgs_target *t);

/*
 * Stop every thread: PTRACE_SEIZE (TRACECLONE, so threads born meanwhile are
 * caught) + PTRACE_INTERRUPT over /proc/PID/task, waiting until all are
 * stopped, repeated until a pass finds nothing new and the process counts
 * no thread besides those stopped and its zombies. On error nothing stays
 * attached. -EPERM with the cause in t->msg (Yama ptrace_scope, another
 * user, already traced by pid N), -ESRCH (gone or exiting), -ETIMEDOUT (a
 * thread did not stop within stop_timeout_ms: uninterruptible sleep; or
 * threads kept changing that long).
 */
int bgs_target_freeze(struct bgs_target *t);

/* Detach every thread; each resumes, a signal that stopped it is delivered.
 * Threads killed while stopped are reaped instead, so that the process's
 * parent can reap it. Returns 0 or the first error (the rest are still
 * detached). */
int bgs_target_thaw(struct bgs_target *t);

bool bgs_target_frozen(const struct bgs_target *t);

/* True once the whole process has exited (its pidfd says so), waiting up to
 * @timeout_ms for that: whatever failed meanwhile failed because it is
 * gone. */
bool bgs_target_exited(const struct bgs_target *t, unsigned timeout_ms);

/* Thread ids of a frozen target, for tests and reports. */
size_t bgs_target_tids(const struct bgs_target *t, pid_t *tids, size_t max);

/*
 * Why ptrace of a process is refused, from facts gathered beforehand, so the
 * reasoning can be tested without the situations (Yama is absent on the
 * reference machine). Writes one line into @buf.
 */
struct bgs_target_facts {
	pid_t pid;
	char comm[32];
	char state;   /* /proc status State letter; 0 unknown */
	pid_t tracer; /* TracerPid */
	char tracer_comm[32];
	uid_t uid[3];	 /* target real, effective, saved */
	uid_t my_uid;	 /* our real uid */
	bool cap_ptrace; /* we have CAP_SYS_PTRACE */
	int yama;	 /* kernel.yama.ptrace_scope, -1 when no Yama */
	bool descendant; /* the target descends from us */
};
void bgs_target_explain_eperm(const struct bgs_target_facts *f, char *buf,
			      size_t len);

/* Gather the facts for @pid (a process or thread id) as they are now. */
void bgs_target_gather_facts(pid_t pid, struct bgs_target_facts *f);

/* Does process @pid hold a userfaultfd among its descriptors? (Another
 * bgsnap's uffd lives in that bgsnap, not in the process.) */
bool bgs_target_has_uffd(pid_t pid);

/* ---- syscall injection, uffd creation (uffd_target_inject.c) ------------ */

/* Find the code the injection needs in the target (reads its text: ~1 ms).
 * Optional: call it before freezing to keep that out of the blackout. */
int bgs_target_inject_prepare(struct bgs_target *t);

/*
 * Run syscall @nr(@args) in stopped thread @tid (0: pick the best one) of a
 * frozen target; *@ret gets the raw result (-errno on failure in the target).
 * The thread ends stopped exactly as it was. Returns 0 or -errno (of our
 * side: -ESRCH target gone, -EBUSY no usable thread, -EOPNOTSUPP not x86_64
 * or shadow stacks).
 */
int bgs_target_syscall(struct bgs_target *t, pid_t tid, long nr,
		       const uint64_t args[6], int64_t *ret);

struct bgs_target_uffd {
	int fd;	      /* the uffd, in this process; UFFDIO_API not yet done */
	bool via_dev; /* made with /dev/userfaultfd passed in (non-root) */
	pid_t tid;    /* the thread that ran the injected calls */
};

/*
 * Create a uffd in a frozen target: inject userfaultfd(O_CLOEXEC|O_NONBLOCK)
 * (never UFFD_USER_MODE_ONLY); on EPERM pass a /dev/userfaultfd descriptor in
 * and inject USERFAULTFD_IOC_NEW. On Linux 6.9+ this happens in a helper
 * thread of the target with a descriptor table of its own, which exits when
 * the uffd is taken (with CAP_SYS_PTRACE the target is non-dumpable for the
 * helper's life, so no other process of its user can take what root passed
 * in); before 6.9, in the target's own table, closed again after, and root
 * refuses the /dev/userfaultfd path. Either way bgsnap ends holding the only
 * reference: if bgsnap dies, the kernel releases the uffd, clears all
 * protection and wakes the target. Hand out->fd to bgs_uffd_adopt(). @tid as
 * for bgs_target_syscall. -EPERM with the reason in t->msg when the target
 * may not have a uffd this way (another user namespace, old kernel).
 */
int bgs_target_inject_uffd(struct bgs_target *t, pid_t tid,
			   struct bgs_target_uffd *out);

/* ---- mappings (uffd_target_maps.c) ------------------------------------- */

/* What the memory is. */
enum bgs_target_kind {
	BGS_TKIND_ANON,	   /* private anonymous: heap, stacks, mmaps */
	BGS_TKIND_SHMEM,   /* shared memfd, shmem, tmpfs, SysV, shared anon */
	BGS_TKIND_HUGETLB, /* hugetlbfs, private or shared */
	BGS_TKIND_FILE_PRIVATE, /* private file mapping with its own pages */
	BGS_TKIND_FILE,		/* file pages only: read-only or shared file */
	BGS_TKIND_SPECIAL,	/* [vdso] [vvar] [vsyscall] [uprobes] */
	BGS_TKIND_IO, /* VM_IO / VM_PFNMAP / VM_MIXEDMAP device memory */
};

/* What a snapshot does with it. */
enum bgs_target_action {
	BGS_TACT_PROTECT, /* register + write-protect, saved in background */
	BGS_TACT_COPY,	  /* cannot be protected: copied while stopped */
	BGS_TACT_SKIP,	  /* recorded by name only */
};

/* Hazards, per mapping. */
#define BGS_THZ_KSM	    (1u << 0) /* MADV_MERGEABLE: KSM drops uffd-wp */
#define BGS_THZ_UFFD	    (1u << 1) /* registered with another uffd */
#define BGS_THZ_SHARED	    (1u << 2) /* shared: other mappings bypass WP */
#define BGS_THZ_SHARED_ANON (1u << 3) /* MAP_SHARED|MAP_ANONYMOUS */
#define BGS_THZ_DONTDUMP    (1u << 4) /* MADV_DONTDUMP */
#define BGS_THZ_NOACCESS    (1u << 5) /* PROT_NONE with content */
#define BGS_THZ_LOCKED	    (1u << 6) /* mlocked */

/* VmFlags bits bgsnap looks at (parsed from smaps). */
#define BGS_VMF_SH (1u << 0)  /* sh: VM_SHARED */
#define BGS_VMF_MS (1u << 1)  /* ms: VM_MAYSHARE */
#define BGS_VMF_IO (1u << 2)  /* io */
#define BGS_VMF_PF (1u << 3)  /* pf: VM_PFNMAP */
#define BGS_VMF_MM (1u << 4)  /* mm: VM_MIXEDMAP */
#define BGS_VMF_HT (1u << 5)  /* ht: VM_HUGETLB */
#define BGS_VMF_DD (1u << 6)  /* dd: VM_DONTDUMP */
#define BGS_VMF_DP (1u << 7)  /* dp: VM_DROPPABLE */
#define BGS_VMF_MG (1u << 8)  /* mg: VM_MERGEABLE */
#define BGS_VMF_UW (1u << 9)  /* uw: VM_UFFD_WP */
#define BGS_VMF_UM (1u << 10) /* um: VM_UFFD_MISSING */
#define BGS_VMF_UI (1u << 11) /* ui: VM_UFFD_MINOR */
#define BGS_VMF_HG (1u << 12) /* hg: MADV_HUGEPAGE */
#define BGS_VMF_NH (1u << 13) /* nh: MADV_NOHUGEPAGE */
#define BGS_VMF_LO (1u << 14) /* lo: VM_LOCKED */
#define BGS_VMF_GD (1u << 15) /* gd: grows down (stack) */
#define BGS_VMF_SS (1u << 16) /* ss: shadow stack */

struct bgs_target_map {
	uint64_t start, end;
	uint64_t offset;
	uint64_t inode;
	unsigned dev_major, dev_minor;
	int prot;     /* PROT_READ/WRITE/EXEC */
	bool shared;  /* 's' in the permissions */
	bool deleted; /* the path ended in " (deleted)" (stripped) */
	bool thp_eligible;
	bool excluded; /* by bgs_target_maps_filter() */
	enum bgs_target_kind kind;
	enum bgs_target_action action;
	const char *why;    /* one line: why this kind and action (static) */
	uint32_t hazards;   /* BGS_THZ_* */
	uint32_t vmflags;   /* BGS_VMF_* */
	uint64_t page_size; /* KernelPageSize (the huge page size for ht) */
	uint64_t rss, swap, anon, anon_huge; /* bytes */
	/* Bytes of its pages another process maps too (for private memory:
	 * shared copy-on-write since a fork). */
	uint64_t shared_clean, shared_dirty;
	char *label; /* path, [heap], [stack], anon, ... */
	char *name;  /* label@start-in-hex: unique within the list */
};

struct bgs_target_maps {
	struct bgs_target_map *v;
	size_t n;
};

/*
 * Read /proc/PID/smaps and classify every mapping (rules in
 * uffd_target_maps.c). Reading smaps walks page tables: ~1 ms per GiB
 * mapped, so read before freezing and check with bgs_target_maps_changed()
 * inside the blackout.
 */
int bgs_target_maps_read(struct bgs_target *t, struct bgs_target_maps *m);

/* The same from smaps text; @pid (0: none) lets map_files tell tmpfs. */
int bgs_target_maps_parse(const char *text, size_t len, pid_t pid,
			  struct bgs_target_maps *m);

void bgs_target_maps_free(struct bgs_target_maps *m);

/*
 * Re-read /proc/PID/maps (cheap: no page walk) and compare ranges and
 * permissions with @m. 0 unchanged, 1 changed, -errno.
 */
int bgs_target_maps_changed(struct bgs_target *t,
			    const struct bgs_target_maps *m);

/*
 * Mark mappings excluded. A spec is either an address range "A-B" (hex,
 * 0x optional; selects mappings overlapping [A, B)) or a glob (fnmatch)
 * tried on the name and on the label. With any @include, a mapping must
 * match one; any @exclude match excludes. An include that names a mapping
 * skipped only for MADV_DONTDUMP brings it back. -EINVAL on a bad range.
 */
int bgs_target_maps_filter(struct bgs_target_maps *m,
			   const char *const *include, size_t ninclude,
			   const char *const *exclude, size_t nexclude);

/* The mapping containing @addr, or NULL. */
const struct bgs_target_map *
bgs_target_maps_find(const struct bgs_target_maps *m, uint64_t addr);

const char *bgs_target_kind_name(enum bgs_target_kind k);
const char *bgs_target_action_name(enum bgs_target_action a);

/* ---- memory (uffd_target_mem.c) ---------------------------------------- */

struct bgs_target_span {
	uint64_t addr;
	uint64_t len;
};

/*
 * Gather @n spans of target memory into @buf back to back (scatter for
 * write), partial transfers continued. Reads go through /proc/PID/mem,
 * which never un-shares the target's copy-on-write pages (PROT_NONE
 * memory reads too); writes through process_vm_writev, IOV_MAX spans per
 * syscall, and what it cannot write (PROT_NONE) through /proc/PID/mem.
 * Returns 0; -ESRCH target gone; -EFAULT a span is not mapped; another
 * -errno if /proc/PID/mem cannot be opened. *@done (may be NULL)
 * receives the bytes moved before the failure.
 */
int bgs_target_readv(struct bgs_target *t, const struct bgs_target_span *s,
		     size_t n, void *buf, size_t *done);
int bgs_target_writev(struct bgs_target *t, const struct bgs_target_span *s,
		      size_t n, const void *buf, size_t *done);

int bgs_target_read(struct bgs_target *t, uint64_t addr, void *buf, size_t len);
int bgs_target_write(struct bgs_target *t, uint64_t addr, const void *buf,
		     size_t len);

/* Copy all of @m into @buf (m->end - m->start bytes). For COPY mappings,
 * while the target is frozen. */
int bgs_target_copy_map(struct bgs_target *t, const struct bgs_target_map *m,
			void *buf);

/* ---- what a core file needs (uffd_target_core.c) ------------------------ */

/* Registers of one thread at the snapshot's instant, as the kernel's
 * regsets give them (x86_64: user_regs_struct, the fxsave area, xsave). */
struct bgs_target_core_thread {
	pid_t tid;
	int cursig;	      /* the signal it is stopped by, or 0 */
	uint64_t sighold;     /* its signal mask */
	uint8_t regs[27 * 8]; /* NT_PRSTATUS regset: user_regs_struct */
	uint8_t fpregs[512];  /* NT_PRFPREG: the fxsave area */
	bool has_fp;
	uint8_t *xstate; /* NT_X86_XSTATE, xstate_len bytes; NULL: none */
	uint32_t xstate_len;
	uint8_t siginfo[128]; /* the siginfo of cursig, if has_siginfo */
	bool has_siginfo;
};

/* Memory a snapshot does not save but a core shows: the vDSO, the ELF
 * header page of each mapped ELF file. */
struct bgs_target_core_mem {
	uint64_t addr;
	uint32_t len;
	uint8_t *data;
};

/* The fields of the kernel's struct elf_prpsinfo. */
struct bgs_target_psinfo {
	uint8_t state;
	char sname;
	uint8_t zomb;
	int8_t nice;
	uint64_t flag;
	uint32_t uid, gid;
	char fname[16];
	char psargs[80];
};

struct bgs_target_core {
	struct bgs_target_psinfo psinfo;
	int32_t ppid, pgrp, sid;
	uint8_t *auxv; /* /proc/PID/auxv */
	size_t auxv_len;
	uint32_t filter;			/* /proc/PID/coredump_filter */
	struct bgs_target_core_thread *threads; /* the main thread first */
	size_t nthreads;
	struct bgs_target_core_mem *mem;
	size_t nmem;
	/* The xsave layout of this CPU (NT_X86_XSAVE_LAYOUT): 16 bytes per
	 * user feature from 2 on: type, size, offset, flags (0). */
	uint8_t xsave_layout[64 * 16];
	uint32_t xsave_layout_len;
	/* Registers at an earlier stop of the same save (before a uffd was
	 * injected), by thread: see bgs_target_core_early(). */
	struct bgs_target_core_early *early;
	size_t nearly;
};

struct bgs_target_core_early {
	pid_t tid;
	uint64_t regs[27];
};

/*
 * While the target runs: psinfo, auxv, coredump_filter, and the memory of
 * @m that a snapshot skips but a core holds (struct bgs_target_core_mem).
 * Fills @c (free with bgs_target_core_free()); -errno with t->msg.
 */
int bgs_target_core_prepare(struct bgs_target *t,
			    const struct bgs_target_maps *m,
			    struct bgs_target_core *c);

/*
 * While frozen at a stop that comes before the snapshot's own (the one that
 * injects the uffd, when protection is armed while the target runs): note
 * every thread's registers. Resuming from that stop restarts the system
 * calls the threads slept in; a thread caught at the snapshot's stop before
 * it re-entered its call then shows the restart, not the sleep, and
 * bgs_target_core_threads() shows it as it was here instead. Optional.
 */
int bgs_target_core_early(struct bgs_target *t, struct bgs_target_core *c);

/* While frozen: every thread's registers into @c. -errno with t->msg. */
int bgs_target_core_threads(struct bgs_target *t, struct bgs_target_core *c);

void bgs_target_core_free(struct bgs_target_core *c);

/* ---- shared by the files of this module -------------------------------- */

/* Set t->msg (printf-style) and return @err (negative). */
int bgs_target_fail(struct bgs_target *t, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Read a /proc file whole into a NUL-terminated malloc'd buffer. */
int bgs_target_slurp(const char *path, char **text, size_t *len);

/* Wait up to @timeout_ms for the next ptrace report of @tid. 1 and *@status
 * on a report, 0 on timeout, -errno (-ECHILD: not our tracee any more). */
int bgs_target_wait(pid_t tid, int *status, unsigned timeout_ms);

/* Run the test hook, if any. */
static inline void bgs_target_at(struct bgs_target *t, enum bgs_target_stage s)
{
	if (t->hook)
		t->hook(t->hook_arg, s);
}

uint64_t bgs_target_now_ns(void);

#endif /* BGS_UFFD_TARGET_H */

// SPDX-License-Identifier: GPL-2.0
/* Vigil's kernel programs: server-side L7 capture, on-CPU stack sampling, and
 * TCP health counters. CO-RE throughout: every kernel struct is read with
 * BPF_CORE_READ (or through BTF pointers) against vmlinux.h, so one object runs
 * on any BTF kernel. No kprobes or fentry (not available on our hosts).
 *
 * L7 capture has two triggers; the agent loads one:
 * - sock_recv_length / sock_send_length (kernel 6.5+): fire only for socket
 *   I/O, in the calling task, and hand over the socket, so nothing else on the
 *   host pays and no fd has to be resolved. The buffer comes from the syscall's
 *   saved registers.
 * - sys_exit (older kernels): one program at syscall exit, where the saved
 *   registers still hold fd and buffer and the return value the length. Every
 *   syscall of the host then takes the traced path (~0.1 µs each here), so
 *   only processes serving a capture port (`server_pids`) go further than a
 *   map lookup. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "vigil.h"

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define IPPROTO_TCP 6
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define TCP_SYN_SENT 2
#define TCP_CLOSE 7
#define TCP_LISTEN 10
#define MSG_PEEK 2

/* Syscall numbers and the saved argument registers of the current syscall,
 * per architecture (read at its exit, or mid-syscall from the socket
 * tracepoints). On arm64 the first argument's register holds the return
 * value by the exit; the kernel keeps the original in orig_x0. recvmmsg and
 * sendmmsg are left out: their return value counts messages, not bytes. */
#if defined(__TARGET_ARCH_x86)
#define NR_READ 0
#define NR_WRITE 1
#define NR_READV 19
#define NR_WRITEV 20
#define NR_SENDTO 44
#define NR_RECVFROM 45
#define NR_SENDMSG 46
#define NR_RECVMSG 47
#define SYSCALL_NR(regs) ((regs)->orig_ax)
#define SYSCALL_ARG1(regs) ((regs)->di)
#define SYSCALL_ARG2(regs) ((regs)->si)
#elif defined(__TARGET_ARCH_arm64)
#define NR_READ 63
#define NR_WRITE 64
#define NR_READV 65
#define NR_WRITEV 66
#define NR_SENDTO 206
#define NR_RECVFROM 207
#define NR_SENDMSG 211
#define NR_RECVMSG 212
#define SYSCALL_NR(regs) ((regs)->syscallno)
#define SYSCALL_ARG1(regs) ((regs)->orig_x0)
#define SYSCALL_ARG2(regs) ((regs)->regs[1])
#else
#error "vigil: define the syscall numbers of this architecture"
#endif

/* Settings, overridden by the loader before load. */
const volatile __u32 self_pid = 0;          /* the agent itself: never traced */
const volatile __u32 filter_pids = 1;       /* 1: capture only the processes in server_pids */
const volatile __u32 follow_servers = 1;    /* 1: add new listeners and their forks to server_pids */
const volatile __u64 wakeup_bytes = 262144; /* wake userspace each time the queue crosses a multiple of this */

/* Server ports to capture (host order), as a bitmap: bit port % 64 of entry
 * port / 64. An array, not a hash: the socket triggers check it on every
 * socket operation of the host, and an array lookup is inlined to a bounds
 * check and a load; bits, not bytes, because the kernel rounds array values
 * up to 8 bytes (8 KiB instead of 512). */
#define PORT_WORDS (65536 / 64)
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PORT_WORDS);
	__type(key, __u32);
	__type(value, __u64);
} server_ports SEC(".maps");

/* Processes (tgid) serving a capture port -> 1: with filter_pids, the only
 * ones whose reads and writes are looked at (always so for sys_exit, which
 * must reject other processes before resolving their fds). Userspace fills it
 * from a scan of listening sockets; the listen, fork and exit hooks below keep
 * it current between scans. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u8);
} server_pids SEC(".maps");

/* Pids to profile -> 1 (userspace keeps it in sync with the process regex). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} profile_pids SEC(".maps");

/* L7 events; userspace sets the size (capture.ring_buffer_mib). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 * 1024 * 1024);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

#define SHAPE_BUF 0
#define SHAPE_IOV 1
#define SHAPE_MSG 2

/* A request read from a socket, waiting for the first response byte. */
struct pending {
	__u64 req_ts_ns;
	__u32 pid;
	__u32 tid;
	__u32 req_len;
	__u32 req_total;
	__u8 req[REQ_CAP * 2];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64); /* struct sock * */
	__type(value, struct pending);
} pendings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pending);
} scratch SEC(".maps");

/* Events are built here (hot in this CPU's cache) and copied into the ring
 * buffer at their real length. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vigil_l7_event);
} event_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 16384);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, 127 * sizeof(__u64));
} stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct vigil_sample_key);
	__type(value, __u64);
} samples SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct vigil_tcp_key);
	__type(value, __u64);
} tcp_counts SEC(".maps");

/* The process's name (its main thread's comm), not the calling thread's:
 * runtimes name their worker threads (`tokio-rt-worker`, JVM pool threads),
 * and a service is named after its process. */
static __always_inline void process_comm(char *comm, __u32 size)
{
	struct task_struct *leader = bpf_get_current_task_btf()->group_leader;
	if (!leader || bpf_probe_read_kernel(comm, size, &leader->comm))
		bpf_get_current_comm(comm, size);
}

static __always_inline void stat_inc(__u32 index)
{
	__u64 *value = bpf_map_lookup_elem(&stats, &index);
	if (value)
		*value += 1;
}

/* The TCP socket behind fd in the current task, or NULL. */
static __always_inline struct sock *fd_to_sock(__u64 fd)
{
	/* task -> files -> fdt as BTF pointers: direct (CO-RE relocated) loads
	 * instead of one helper call per hop. */
	struct task_struct *task = bpf_get_current_task_btf();
	struct files_struct *files = task->files;
	if (!files)
		return NULL;
	struct fdtable *fdt = files->fdt;
	if (!fdt)
		return NULL;
	unsigned int max_fds = fdt->max_fds;
	struct file **fds = fdt->fd;
	struct file *file = NULL;

	if (fd >= max_fds || !fds)
		return NULL;
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return NULL;
	umode_t mode = BPF_CORE_READ(file, f_inode, i_mode);
	if ((mode & S_IFMT) != S_IFSOCK)
		return NULL;
	struct socket *socket = BPF_CORE_READ(file, private_data);
	if (!socket)
		return NULL;
	struct sock *sk = BPF_CORE_READ(socket, sk);
	if (!sk)
		return NULL;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return NULL;
	if (BPF_CORE_READ(sk, sk_type) != SOCK_STREAM || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return NULL;
	return sk;
}

static __always_inline int is_capture_port(__u32 port)
{
	__u32 word = port / 64;
	__u64 *bits = bpf_map_lookup_elem(&server_ports, &word);
	return bits && (*bits & (1ULL << (port % 64)));
}

static __always_inline int is_server_sock(struct sock *sk)
{
	return is_capture_port(BPF_CORE_READ(sk, __sk_common.skc_num));
}

/* Whether the calling process is one whose requests are captured. */
static __always_inline int is_captured_process(__u32 tgid)
{
	if (tgid == self_pid)
		return 0;
	return !filter_pids || bpf_map_lookup_elem(&server_pids, &tgid) != NULL;
}

/* ---------------------------------------------------------------- reads */

/* The user buffer holding the data of a read or write, and its usable length. */
static __always_inline __u64 data_buffer(__u64 buf, __u32 shape, __u64 *len)
{
	if (shape == SHAPE_BUF)
		return buf;
	struct iovec iov = {};
	if (shape == SHAPE_MSG) {
		struct user_msghdr msg = {};
		if (bpf_probe_read_user(&msg, sizeof(msg), (void *)buf))
			return 0;
		buf = (__u64)msg.msg_iov;
	}
	if (bpf_probe_read_user(&iov, sizeof(iov), (void *)buf))
		return 0;
	if (iov.iov_len < *len)
		*len = iov.iov_len;
	return (__u64)iov.iov_base;
}

/* A read of ret bytes into buf (of the given shape) from server socket sk
 * has returned: park the request, or append to the one already parked on this
 * socket. */
static __always_inline int on_read(__u64 id, struct sock *sk, __u64 buf, __u32 shape, long ret)
{
	__u64 len = ret;
	buf = data_buffer(buf, shape, &len);
	if (!buf)
		return 0;
	__u64 key = (__u64)sk;
	struct pending *p = bpf_map_lookup_elem(&pendings, &key);
	if (p && p->req_ts_ns == 0) {
		/* The socket's slot is free (its last request was answered): reuse it
		 * in place rather than delete and insert into the LRU map. */
		p->req_ts_ns = bpf_ktime_get_ns();
		p->pid = id >> 32;
		p->tid = (__u32)id;
		p->req_total = ret;
		__u32 n = len > REQ_CAP ? REQ_CAP : len;
		p->req_len = 0;
		if (bpf_probe_read_user(p->req, n & (REQ_CAP * 2 - 1), (void *)buf) == 0)
			p->req_len = n;
		stat_inc(STAT_PENDING);
		return 0;
	}
	if (p) {
		/* More of the same request (or a pipelined one): append while there is room. */
		__u32 off = p->req_len;
		p->req_total += ret;
		if (off >= REQ_CAP)
			return 0;
		__u32 n = len > REQ_CAP ? REQ_CAP : len;
		off &= REQ_CAP - 1;
		if (bpf_probe_read_user(&p->req[off], n & (REQ_CAP * 2 - 1), (void *)buf) == 0)
			p->req_len = off + n;
		return 0;
	}
	__u32 zero = 0;
	struct pending *fresh = bpf_map_lookup_elem(&scratch, &zero);
	if (!fresh)
		return 0;
	fresh->req_ts_ns = bpf_ktime_get_ns();
	fresh->pid = id >> 32;
	fresh->tid = (__u32)id;
	fresh->req_total = ret;
	__u32 n = len > REQ_CAP ? REQ_CAP : len;
	fresh->req_len = 0;
	if (bpf_probe_read_user(fresh->req, n & (REQ_CAP * 2 - 1), (void *)buf) == 0)
		fresh->req_len = n;
	bpf_map_update_elem(&pendings, &key, fresh, BPF_ANY);
	stat_inc(STAT_PENDING);
	return 0;
}

/* ---------------------------------------------------------------- writes */

/* Wakes the consumer only when this record takes the queue across a multiple
 * of wakeup_bytes, never per record: a wake-up is an irq_work, a self-IPI,
 * which in a VM is a VM exit of microseconds charged to the traced server.
 * Waking on every record while the queue stays above the mark (the consumer
 * drains on a timer) cost the Redis server ~3 µs per request. A crossing
 * missed by racing CPUs is caught by the next multiple or the timed drain. */
static __always_inline __u64 wakeup_flag(__u64 size)
{
	__u64 queued = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	__u64 mark = wakeup_bytes ? wakeup_bytes : 1;
	return queued / mark != (queued + size) / mark ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

/* A field of sk: a plain load when sk is a BTF pointer the verifier trusts
 * (the socket tracepoints' argument), else a CO-RE probe read (a helper call
 * each: sys_exit finds sk by walking the fd table). `trusted` is a constant
 * at every call site, so only one branch is compiled. */
#define SK_READ(trusted, sk, field) ((trusted) ? (sk)->field : BPF_CORE_READ(sk, field))

/* The 16 bytes of an IPv6 address of sk, as four 32-bit loads when trusted. */
#define SK_READ_V6(trusted, dst, sk, field)                                          \
	do {                                                                         \
		if (trusted) {                                                       \
			__u32 *words = (__u32 *)(dst);                                \
			for (int i = 0; i < 4; i++)                                  \
				words[i] = (sk)->field.in6_u.u6_addr32[i];           \
		} else {                                                             \
			BPF_CORE_READ_INTO(dst, sk, field.in6_u.u6_addr8);           \
		}                                                                    \
	} while (0)

/* A write of count bytes from buf (of the given shape; no buffer: buf 0) to
 * server socket sk has returned: if the socket has a parked request, the pair
 * is one event. */
static __always_inline int on_write(struct sock *sk, int trusted, __u64 buf, __u32 shape,
				    __u64 count)
{
	__u64 key = (__u64)sk;
	struct pending *p = bpf_map_lookup_elem(&pendings, &key);
	if (!p || p->req_ts_ns == 0)
		return 0;

	__u32 zero = 0;
	struct vigil_l7_event *e = bpf_map_lookup_elem(&event_scratch, &zero);
	if (!e) {
		p->req_ts_ns = 0;
		return 0;
	}
	e->req_ts_ns = p->req_ts_ns;
	e->resp_ts_ns = bpf_ktime_get_ns();
	e->kind = EV_L7;
	e->pid = p->pid;
	e->tid = p->tid;
	e->req_total = p->req_total;
	__u32 req_len = p->req_len;
	if (req_len > REQ_CAP * 2)
		req_len = REQ_CAP * 2;
	if (bpf_probe_read_kernel(e->data, req_len, p->req))
		req_len = 0;
	e->req_len = req_len;
	p->req_ts_ns = 0; /* answered: the slot is free for the next request */

	__u16 family = SK_READ(trusted, sk, __sk_common.skc_family);
	e->family = family;
	e->local_port = SK_READ(trusted, sk, __sk_common.skc_num);
	e->remote_port = __builtin_bswap16(SK_READ(trusted, sk, __sk_common.skc_dport));
	if (family == AF_INET) {
		__builtin_memset(e->local_addr, 0, sizeof(e->local_addr));
		__builtin_memset(e->remote_addr, 0, sizeof(e->remote_addr));
		__u32 local = SK_READ(trusted, sk, __sk_common.skc_rcv_saddr);
		__u32 remote = SK_READ(trusted, sk, __sk_common.skc_daddr);
		__builtin_memcpy(e->local_addr, &local, 4);
		__builtin_memcpy(e->remote_addr, &remote, 4);
	} else {
		SK_READ_V6(trusted, e->local_addr, sk, __sk_common.skc_v6_rcv_saddr);
		SK_READ_V6(trusted, e->remote_addr, sk, __sk_common.skc_v6_daddr);
	}
	process_comm(e->comm, sizeof(e->comm));

	__u64 len = count;
	__u64 data = buf ? data_buffer(buf, shape, &len) : 0;
	e->resp_total = count;
	__u32 n = len > RESP_CAP ? RESP_CAP : len;
	__u32 off = req_len;
	if (off > REQ_CAP * 2)
		off = REQ_CAP * 2;
	if (!data || bpf_probe_read_user(&e->data[off], n, (void *)data))
		n = 0;
	e->resp_len = n;

	__u64 size = L7_HEADER_SIZE + off + n;
	if (size > sizeof(*e))
		size = sizeof(*e);
	if (bpf_ringbuf_output(&events, e, size, wakeup_flag(size))) {
		stat_inc(STAT_RB_FULL);
		return 0;
	}
	stat_inc(STAT_EVENTS);
	return 0;
}

/* The shape of the buffer argument of syscall nr; -1 when nr moves no
 * socket data through a user buffer we can read. */
static __always_inline int buffer_shape(long nr, int *is_read)
{
	switch (nr) {
	case NR_READ:
	case NR_RECVFROM:
		*is_read = 1;
		return SHAPE_BUF;
	case NR_READV:
		*is_read = 1;
		return SHAPE_IOV;
	case NR_RECVMSG:
		*is_read = 1;
		return SHAPE_MSG;
	case NR_WRITE:
	case NR_SENDTO:
		*is_read = 0;
		return SHAPE_BUF;
	case NR_WRITEV:
		*is_read = 0;
		return SHAPE_IOV;
	case NR_SENDMSG:
		*is_read = 0;
		return SHAPE_MSG;
	default:
		return -1;
	}
}

/* Older kernels: every syscall exit. */
SEC("tp_btf/sys_exit")
int BPF_PROG(on_sys_exit, struct pt_regs *regs, long ret)
{
	if (ret <= 0)
		return 0;
	int is_read = 0;
	int shape = buffer_shape(SYSCALL_NR(regs), &is_read);
	if (shape < 0)
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	if (!is_captured_process(id >> 32))
		return 0;
	struct sock *sk = fd_to_sock(SYSCALL_ARG1(regs));
	if (!sk || !is_server_sock(sk))
		return 0;
	if (is_read)
		return on_read(id, sk, SYSCALL_ARG2(regs), shape, ret);
	return on_write(sk, 0, SYSCALL_ARG2(regs), shape, ret);
}

/* Whether sk is a TCP socket on a capture port (its local port: the server
 * side) of a captured process. The cheapest test first: most socket
 * operations of a host are not on a capture port. */
static __always_inline int is_captured_sock(struct sock *sk, __u64 id)
{
	if (!is_capture_port(sk->__sk_common.skc_num))
		return 0;
	__u16 family = sk->__sk_common.skc_family;
	if ((family != AF_INET && family != AF_INET6) || sk->sk_type != SOCK_STREAM ||
	    sk->sk_protocol != IPPROTO_TCP)
		return 0;
	return is_captured_process(id >> 32);
}

/* The syscall the current task is in, from its saved registers: shape of its
 * buffer argument (-1: none we can read) and the buffer. */
static __always_inline int current_syscall_buffer(int *is_read, __u64 *buf)
{
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	int shape = buffer_shape(SYSCALL_NR(regs), is_read);
	*buf = SYSCALL_ARG2(regs);
	return shape;
}

/* Kernel 6.5+: ret bytes moved through socket sk, received or sent, by the
 * current task. Reads outside the known syscalls (io_uring, kernel sockets)
 * carry no buffer we can see and are skipped; a response sent by sendfile,
 * splice or io_uring still ends its request, with no response bytes. */
static __always_inline int on_socket_io(struct sock *sk, int ret, int receiving)
{
	if (ret <= 0)
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	if (!is_captured_sock(sk, id))
		return 0;
	int is_read = 0;
	__u64 buf = 0;
	int shape = current_syscall_buffer(&is_read, &buf);
	if (receiving) {
		if (shape < 0 || !is_read)
			return 0;
		return on_read(id, sk, buf, shape, ret);
	}
	if (shape < 0 || is_read) {
		buf = 0; /* no buffer to read the response from */
		shape = SHAPE_BUF;
	}
	return on_write(sk, 1, buf, shape, ret);
}

/* After sock_recvmsg. A peek leaves the data queued: skipped. */
SEC("tp_btf/sock_recv_length")
int BPF_PROG(on_sock_recv, struct sock *sk, int ret, int flags)
{
	if (flags & MSG_PEEK)
		return 0;
	return on_socket_io(sk, ret, 1);
}

/* After sock_sendmsg. */
SEC("tp_btf/sock_send_length")
int BPF_PROG(on_sock_send, struct sock *sk, int ret, int flags)
{
	return on_socket_io(sk, ret, 0);
}

/* ---------------------------------------------------------------- socket states, server processes */

/* State changes of sockets on a capture port (sport: the local port, host
 * order). A socket that closes forgets the request parked on it: one never
 * answered (a client gone, MySQL's COM_QUIT) would otherwise stay in the LRU
 * map, and the next socket allocated at the same address would append its
 * first request to it, with the old start time. A process starting to listen
 * on a capture port serves it from now on: with follow_servers it is
 * captured without waiting for the next scan (listen() runs in the
 * listening process, and its port was bound before). */
SEC("tracepoint/sock/inet_sock_set_state")
int on_sock_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	if (ctx->protocol != IPPROTO_TCP || !is_capture_port(ctx->sport))
		return 0;
	if (ctx->newstate == TCP_CLOSE) {
		__u64 key = (__u64)ctx->skaddr;
		bpf_map_delete_elem(&pendings, &key);
		return 0;
	}
	if (!follow_servers || ctx->newstate != TCP_LISTEN)
		return 0;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (tgid == self_pid)
		return 0;
	__u8 one = 1;
	bpf_map_update_elem(&server_pids, &tgid, &one, BPF_ANY);
	return 0;
}

/* Workers forked by a server inherit its listening socket (prefork servers). */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(on_fork, struct task_struct *parent, struct task_struct *child)
{
	if (!follow_servers)
		return 0;
	__u32 parent_tgid = parent->tgid;
	__u32 child_tgid = child->tgid;
	if (child_tgid == parent_tgid || !bpf_map_lookup_elem(&server_pids, &parent_tgid))
		return 0;
	__u8 one = 1;
	bpf_map_update_elem(&server_pids, &child_tgid, &one, BPF_ANY);
	return 0;
}

/* A server's pid may be reused by an unrelated process: forget it when its
 * last thread exits (the leader may exit before the others; `live` counts the
 * threads still running and is already decremented for this one). */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_exit, struct task_struct *task)
{
	if (BPF_CORE_READ(task, signal, live.counter) != 0)
		return 0;
	__u32 tgid = task->tgid;
	bpf_map_delete_elem(&server_pids, &tgid);
	return 0;
}

/* ---------------------------------------------------------------- profiles */

SEC("perf_event")
int on_cpu_sample(struct bpf_perf_event_data *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 pid = id >> 32;
	if (pid == 0 || !bpf_map_lookup_elem(&profile_pids, &pid))
		return 0;
	struct vigil_sample_key key = {};
	key.pid = pid;
	key.user_stack = bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK);
	key.kernel_stack = bpf_get_stackid(ctx, &stacks, 0);
	process_comm(key.comm, sizeof(key.comm));
	__u64 one = 1;
	__u64 *count = bpf_map_lookup_elem(&samples, &key);
	if (count)
		__sync_fetch_and_add(count, 1);
	else
		bpf_map_update_elem(&samples, &key, &one, BPF_NOEXIST);
	return 0;
}

/* ---------------------------------------------------------------- TCP health */

static __always_inline void tcp_count(struct sock *sk, __u32 kind)
{
	if (!sk)
		return;
	struct vigil_tcp_key key = {};
	key.kind = kind;
	key.family = BPF_CORE_READ(sk, __sk_common.skc_family);
	key.port = __builtin_bswap16(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (key.family == AF_INET) {
		__u32 remote = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memcpy(key.addr, &remote, 4);
	} else if (key.family == AF_INET6) {
		BPF_CORE_READ_INTO(&key.addr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	} else {
		return;
	}
	__u64 one = 1;
	__u64 *count = bpf_map_lookup_elem(&tcp_counts, &key);
	if (count)
		__sync_fetch_and_add(count, 1);
	else
		bpf_map_update_elem(&tcp_counts, &key, &one, BPF_NOEXIST);
}

SEC("tracepoint/tcp/tcp_retransmit_skb")
int tcp_retransmit_tp(struct trace_event_raw_tcp_retransmit_skb *ctx)
{
	tcp_count((struct sock *)ctx->skaddr, TCP_RETRANSMIT);
	return 0;
}

SEC("tracepoint/tcp/tcp_send_reset")
int tcp_send_reset_tp(struct trace_event_raw_tcp_send_reset *ctx)
{
	tcp_count((struct sock *)ctx->skaddr, TCP_SEND_RESET);
	return 0;
}

SEC("tracepoint/tcp/tcp_receive_reset")
int tcp_receive_reset_tp(struct trace_event_raw_tcp_event_sk *ctx)
{
	tcp_count((struct sock *)ctx->skaddr, TCP_RECV_RESET);
	return 0;
}

SEC("tracepoint/sock/inet_sock_set_state")
int inet_sock_set_state_tp(struct trace_event_raw_inet_sock_set_state *ctx)
{
	if (ctx->protocol != IPPROTO_TCP)
		return 0;
	if (ctx->oldstate == TCP_SYN_SENT && ctx->newstate == TCP_CLOSE)
		tcp_count((struct sock *)ctx->skaddr, TCP_CONNECT_FAIL);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";

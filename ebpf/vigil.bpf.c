// SPDX-License-Identifier: GPL-2.0
/* Vigil's kernel programs: server-side L7 capture from syscall tracepoints,
 * on-CPU stack sampling, and TCP health counters. CO-RE throughout: every
 * kernel struct is read with BPF_CORE_READ against vmlinux.h, so one object
 * runs on any BTF kernel. No kprobes or fentry (not available on our hosts). */
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

/* Settings, overridden by the loader before load. */
const volatile __u32 self_pid = 0;          /* the agent itself: never traced */
const volatile __u32 filter_pids = 0;       /* 1: only pids in target_pids */
const volatile __u64 wakeup_bytes = 262144; /* wake userspace when this much is queued */

/* Server ports to capture (host order) -> 1. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u16);
	__type(value, __u8);
} server_ports SEC(".maps");

/* Pids (tgid) to capture when filter_pids is set -> 1. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} target_pids SEC(".maps");

/* Pids to profile -> 1 (userspace keeps it in sync with the process regex). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} profile_pids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 * 1024 * 1024);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

/* A read in flight: syscall arguments saved at sys_enter. */
struct read_args {
	__u64 sk;    /* the server socket, resolved at sys_enter */
	__u64 buf;   /* buffer, iovec array or msghdr */
	__u32 shape; /* SHAPE_* */
	__u32 _pad;
};
#define SHAPE_BUF 0
#define SHAPE_IOV 1
#define SHAPE_MSG 2

/* Per-task storage: cheaper than a hash keyed by tid on every read. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct read_args);
} active_reads SEC(".maps");

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
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct task_struct *leader = BPF_CORE_READ(task, group_leader);
	if (!leader || bpf_core_read_str(comm, size, &leader->comm) <= 0)
		bpf_get_current_comm(comm, size);
}

static __always_inline void stat_inc(__u32 index)
{
	__u64 *value = bpf_map_lookup_elem(&stats, &index);
	if (value)
		*value += 1;
}

static __always_inline int pid_wanted(__u32 pid)
{
	if (pid == self_pid)
		return 0;
	if (filter_pids && !bpf_map_lookup_elem(&target_pids, &pid))
		return 0;
	return 1;
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

static __always_inline int is_server_sock(struct sock *sk)
{
	__u16 port = BPF_CORE_READ(sk, __sk_common.skc_num);
	return bpf_map_lookup_elem(&server_ports, &port) != NULL;
}

/* ---------------------------------------------------------------- reads */

static __always_inline int enter_read(__u64 fd, __u64 buf, __u32 shape)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!pid_wanted(id >> 32))
		return 0;
	/* Filter before touching any map: only reads on server sockets of the
	 * configured ports are remembered, so other reads cost one fd walk. */
	struct sock *sk = fd_to_sock(fd);
	if (!sk || !is_server_sock(sk))
		return 0;
	struct read_args *args = bpf_task_storage_get(&active_reads, bpf_get_current_task_btf(), 0,
						      BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!args)
		return 0;
	args->sk = (__u64)sk;
	args->buf = buf;
	args->shape = shape;
	return 0;
}

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

static __always_inline int exit_read(long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct read_args *args = bpf_task_storage_get(&active_reads, bpf_get_current_task_btf(), 0, 0);
	if (!args || !args->sk)
		return 0;
	struct read_args saved = *args;
	args->sk = 0;
	if (ret <= 0)
		return 0;
	struct sock *sk = (struct sock *)saved.sk;

	__u64 len = ret;
	__u64 buf = data_buffer(saved.buf, saved.shape, &len);
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

static __always_inline int on_write(__u64 fd, __u64 buf, __u32 shape, __u64 count)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!pid_wanted(id >> 32))
		return 0;
	struct sock *sk = fd_to_sock(fd);
	if (!sk)
		return 0;
	__u64 key = (__u64)sk;
	struct pending *p = bpf_map_lookup_elem(&pendings, &key);
	if (!p || p->req_ts_ns == 0)
		return 0;
	if (!is_server_sock(sk))
		return 0;

	struct vigil_l7_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		stat_inc(STAT_RB_FULL);
		p->req_ts_ns = 0;
		return 0;
	}
	e->req_ts_ns = p->req_ts_ns;
	e->resp_ts_ns = bpf_ktime_get_ns();
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->kind = EV_L7;
	e->pid = p->pid;
	e->tid = p->tid;
	e->req_len = p->req_len;
	e->req_total = p->req_total;
	__builtin_memcpy(e->req, p->req, sizeof(e->req));
	p->req_ts_ns = 0; /* answered: the slot is free for the next request */

	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	e->family = family;
	e->local_port = BPF_CORE_READ(sk, __sk_common.skc_num);
	e->remote_port = __builtin_bswap16(BPF_CORE_READ(sk, __sk_common.skc_dport));
	__builtin_memset(e->local_addr, 0, sizeof(e->local_addr));
	__builtin_memset(e->remote_addr, 0, sizeof(e->remote_addr));
	if (family == AF_INET) {
		__u32 local = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__u32 remote = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memcpy(e->local_addr, &local, 4);
		__builtin_memcpy(e->remote_addr, &remote, 4);
	} else {
		BPF_CORE_READ_INTO(&e->local_addr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&e->remote_addr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	}
	process_comm(e->comm, sizeof(e->comm));

	__u64 len = count;
	__u64 data = data_buffer(buf, shape, &len);
	e->resp_total = count;
	e->resp_len = 0;
	__u32 n = len > RESP_CAP ? RESP_CAP : len;
	if (data && n > 0 && bpf_probe_read_user(e->resp, n & (RESP_CAP * 2 - 1) & 0xff, (void *)data) == 0)
		e->resp_len = n;
	/* The copy length mask above keeps the verifier happy; n <= RESP_CAP. */

	stat_inc(STAT_EVENTS);
	__u64 queued = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	bpf_ringbuf_submit(e, queued >= wakeup_bytes ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
	return 0;
}

#define ARG(ctx, i) ((__u64)(ctx)->args[i])

SEC("tracepoint/syscalls/sys_enter_read")
int enter_read_tp(struct trace_event_raw_sys_enter *ctx) { return enter_read(ARG(ctx, 0), ARG(ctx, 1), SHAPE_BUF); }
SEC("tracepoint/syscalls/sys_exit_read")
int exit_read_tp(struct trace_event_raw_sys_exit *ctx) { return exit_read(ctx->ret); }
SEC("tracepoint/syscalls/sys_enter_recvfrom")
int enter_recvfrom_tp(struct trace_event_raw_sys_enter *ctx) { return enter_read(ARG(ctx, 0), ARG(ctx, 1), SHAPE_BUF); }
SEC("tracepoint/syscalls/sys_exit_recvfrom")
int exit_recvfrom_tp(struct trace_event_raw_sys_exit *ctx) { return exit_read(ctx->ret); }
SEC("tracepoint/syscalls/sys_enter_readv")
int enter_readv_tp(struct trace_event_raw_sys_enter *ctx) { return enter_read(ARG(ctx, 0), ARG(ctx, 1), SHAPE_IOV); }
SEC("tracepoint/syscalls/sys_exit_readv")
int exit_readv_tp(struct trace_event_raw_sys_exit *ctx) { return exit_read(ctx->ret); }
SEC("tracepoint/syscalls/sys_enter_recvmsg")
int enter_recvmsg_tp(struct trace_event_raw_sys_enter *ctx) { return enter_read(ARG(ctx, 0), ARG(ctx, 1), SHAPE_MSG); }
SEC("tracepoint/syscalls/sys_exit_recvmsg")
int exit_recvmsg_tp(struct trace_event_raw_sys_exit *ctx) { return exit_read(ctx->ret); }

SEC("tracepoint/syscalls/sys_enter_write")
int enter_write_tp(struct trace_event_raw_sys_enter *ctx) { return on_write(ARG(ctx, 0), ARG(ctx, 1), SHAPE_BUF, ARG(ctx, 2)); }
SEC("tracepoint/syscalls/sys_enter_sendto")
int enter_sendto_tp(struct trace_event_raw_sys_enter *ctx) { return on_write(ARG(ctx, 0), ARG(ctx, 1), SHAPE_BUF, ARG(ctx, 2)); }
SEC("tracepoint/syscalls/sys_enter_writev")
int enter_writev_tp(struct trace_event_raw_sys_enter *ctx) { return on_write(ARG(ctx, 0), ARG(ctx, 1), SHAPE_IOV, ~0ULL); }
SEC("tracepoint/syscalls/sys_enter_sendmsg")
int enter_sendmsg_tp(struct trace_event_raw_sys_enter *ctx) { return on_write(ARG(ctx, 0), ARG(ctx, 1), SHAPE_MSG, ~0ULL); }

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

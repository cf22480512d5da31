/* Shared between the kernel programs (vigil.bpf.c) and the agent's Rust
 * parser (agent/src/wire.rs). Every struct here is mirrored there with a size
 * assertion; change both together and bump VIGIL_WIRE_VERSION. */
#ifndef VIGIL_H
#define VIGIL_H

#define VIGIL_WIRE_VERSION 3

/* Request bytes kept per request (first chunks of the request, appended). */
#define REQ_CAP 256
/* Response bytes kept (first chunk only). */
#define RESP_CAP 128
#define COMM_LEN 16

/* Event kinds in struct vigil_l7_event.kind. */
#define EV_L7 1

/* TCP counter kinds in struct vigil_tcp_key.kind. */
#define TCP_RETRANSMIT 1
#define TCP_SEND_RESET 2
#define TCP_RECV_RESET 3
#define TCP_CONNECT_FAIL 4

/* One request paired with the first chunk of its response, server side.
 * Records in the ring buffer are as long as their data: the header, then
 * req_len request bytes, then resp_len response bytes (a Redis GET is ~150
 * bytes, not the 736 of the largest record). Containers are named from
 * /proc/PID/cgroup in userspace, so no cgroup id is sent. */
struct vigil_l7_event {
	__u64 req_ts_ns;   /* CLOCK_MONOTONIC (bpf_ktime_get_ns) when the request was read */
	__u64 resp_ts_ns;  /* when the first response byte was written */
	__u32 kind;
	__u32 pid;         /* tgid */
	__u32 tid;
	__u16 family;      /* AF_INET / AF_INET6 */
	__u16 local_port;  /* server port, host order */
	__u16 remote_port; /* client port, host order */
	__u16 req_len;     /* bytes stored in req */
	__u16 resp_len;    /* bytes stored in resp */
	__u16 _pad;
	__u32 req_total;   /* bytes of request seen (may exceed REQ_CAP) */
	__u32 resp_total;  /* size of the first response write */
	__u8 local_addr[16];  /* IPv4 in the first 4 bytes */
	__u8 remote_addr[16];
	char comm[COMM_LEN];
	__u8 data[REQ_CAP * 2 + RESP_CAP]; /* request bytes, then response bytes */
};
#define L7_HEADER_SIZE 96
_Static_assert(__builtin_offsetof(struct vigil_l7_event, data) == L7_HEADER_SIZE, "l7_event header");
_Static_assert(sizeof(struct vigil_l7_event) == 736, "l7_event layout");

/* Key of the on-CPU sample counts. */
struct vigil_sample_key {
	__u32 pid;
	__s32 user_stack;
	__s32 kernel_stack;
	char comm[COMM_LEN];
};
_Static_assert(sizeof(struct vigil_sample_key) == 28, "sample_key layout");

/* Key of the TCP health counters: one peer and one kind of trouble. */
struct vigil_tcp_key {
	__u8 addr[16];
	__u16 port;
	__u16 family;
	__u32 kind;
};
_Static_assert(sizeof(struct vigil_tcp_key) == 24, "tcp_key layout");

/* Indices of the per-CPU stats array. */
#define STAT_EVENTS 0
#define STAT_RB_FULL 1
#define STAT_PENDING 2
#define STAT_ORPHAN_RESP 3
#define STAT_MAX 4

#endif

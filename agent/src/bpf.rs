//! Loads and attaches the kernel programs of `ebpf/vigil.bpf.c` with aya, and
//! reads their maps: the L7 ring buffer, on-CPU samples and stacks, TCP counters.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use aya::maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf, StackTraceMap};
use aya::programs::perf_event::{PerfEventConfig, PerfEventScope, SamplePolicy, SoftwareEvent};
use aya::programs::{BtfTracePoint, PerfEvent, TracePoint};
use aya::{Btf, Ebpf, EbpfLoader};
use aya_obj::btf::BtfKind;
use mio::unix::SourceFd;

use crate::error::AgentError;
use crate::wire::{SampleKey, TcpKey, SAMPLE_KEY_SIZE, TCP_KEY_SIZE};

/// The compiled, stripped kernel object (built by `build.rs`).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/vigil.bpf.o"));

/// Programs on BTF tracepoints that keep the set of server processes current
/// between scans: (program, tracepoint).
const SERVER_PROCESS_PROGRAMS: &[(&str, &str)] = &[
    ("on_fork", "sched_process_fork"),
    ("on_exit", "sched_process_exit"),
];

/// What fires the L7 capture (see `ebpf/vigil.bpf.c` for the trade-off).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureTrigger {
    /// `sock_recv_length` / `sock_send_length` (kernel 6.5+): only socket I/O
    /// runs a program, and the socket comes with it.
    Socket,
    /// `sys_exit`: every syscall of the host runs a program (older kernels).
    SyscallExit,
}

impl CaptureTrigger {
    /// The cheapest trigger `btf` (the running kernel's) offers.
    pub fn best_for(btf: &Btf) -> Self {
        let has = |name: &str| btf.id_by_type_name_kind(name, BtfKind::Typedef).is_ok();
        if has("btf_trace_sock_recv_length") && has("btf_trace_sock_send_length") {
            Self::Socket
        } else {
            Self::SyscallExit
        }
    }

    /// The cheapest trigger the running kernel offers.
    pub fn for_this_kernel() -> Result<Self, AgentError> {
        Ok(Self::best_for(&kernel_btf()?))
    }

    /// (program, BTF tracepoint) pairs that implement this trigger.
    fn programs(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::Socket => &[
                ("on_sock_recv", "sock_recv_length"),
                ("on_sock_send", "sock_send_length"),
            ],
            Self::SyscallExit => &[("on_sys_exit", "sys_exit")],
        }
    }
}

/// TCP health programs: (program, category, name).
const TCP_PROGRAMS: &[(&str, &str, &str)] = &[
    ("tcp_retransmit_tp", "tcp", "tcp_retransmit_skb"),
    ("tcp_send_reset_tp", "tcp", "tcp_send_reset"),
    ("tcp_receive_reset_tp", "tcp", "tcp_receive_reset"),
    ("inet_sock_set_state_tp", "sock", "inet_sock_set_state"),
];

/// What to load and attach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeOptions {
    /// Attach the L7 capture.
    pub l7: bool,
    /// What fires it; `None`: the best the kernel offers.
    pub trigger: Option<CaptureTrigger>,
    /// Server ports to capture.
    pub server_ports: Vec<u16>,
    /// Capture only the processes in the kernel's `server_pids` set (which
    /// scans fill): set when the configuration names the pids to capture.
    /// The syscall-exit trigger always filters so, as it must reject other
    /// processes before resolving their fds; the socket trigger otherwise
    /// needs no process list, since the socket's own port says it is a server's.
    pub narrow_to_pids: bool,
    /// When true, the kernel adds processes that start listening on a server
    /// port, and their forks, to the captured set between scans. False when
    /// the configuration names the pids to capture.
    pub follow_servers: bool,
    /// Never capture the agent's own process (off only in tests that serve from it).
    pub exclude_self: bool,
    /// Size of the L7 ring buffer, bytes (a power of two, at least a page).
    pub ring_buffer_bytes: u32,
    /// The kernel wakes userspace each time the ring buffer's fill crosses a
    /// multiple of this many bytes.
    pub wakeup_bytes: u64,
    /// Sample on-CPU stacks at this frequency (Hz per CPU); `None` for no profiling.
    pub profile_hz: Option<u64>,
    /// Attach the TCP health tracepoints.
    pub tcp: bool,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self {
            l7: true,
            trigger: None,
            server_ports: Vec::new(),
            narrow_to_pids: false,
            follow_servers: true,
            exclude_self: true,
            ring_buffer_bytes: 4 << 20,
            wakeup_bytes: 256 * 1024,
            profile_hz: None,
            tcp: false,
        }
    }
}

/// One sampled stack and its count: key, samples, user and kernel
/// instruction pointers (leaf first).
pub type Sample = (SampleKey, u64, Vec<u64>, Vec<u64>);

/// Counters the kernel side keeps (summed over CPUs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeStats {
    /// L7 events submitted.
    pub events: u64,
    /// Events lost because the ring buffer was full.
    pub ring_full: u64,
    /// Requests parked waiting for a response.
    pub pending: u64,
}

/// The loaded programs and their maps.
pub struct Probes {
    ebpf: Ebpf,
    /// What fires the L7 capture; `None` without L7.
    trigger: Option<CaptureTrigger>,
    /// Whether the kernel captures only the processes in `server_pids`.
    filters_by_process: bool,
    /// Ports set in the kernel's `server_ports` array.
    ports: Vec<u16>,
    ring: Option<RingBuf<MapData>>,
    /// Edge-triggered readiness of the ring buffer's fd: the kernel wakes it
    /// when the queue crosses a multiple of `wakeup_bytes`.
    ring_wakeups: Option<(mio::Poll, mio::Events)>,
}

impl std::fmt::Debug for Probes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probes").finish_non_exhaustive()
    }
}

fn ebpf_err(what: &str) -> impl FnOnce(String) -> AgentError + '_ {
    move |e| AgentError::Ebpf(format!("{what}: {e}"))
}

/// Mounts tracefs at `/sys/kernel/tracing` when no tracefs is mounted
/// (aya attaches tracepoints through it).
pub fn ensure_tracefs() -> Result<(), AgentError> {
    if Path::new("/sys/kernel/tracing/events").exists()
        || Path::new("/sys/kernel/debug/tracing/events").exists()
    {
        return Ok(());
    }
    let status = Command::new("mount")
        .args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"])
        .status()
        .map_err(|e| AgentError::Ebpf(format!("mount tracefs: {e}")))?;
    if !status.success() || !Path::new("/sys/kernel/tracing/events").exists() {
        return Err(AgentError::Ebpf(
            "tracefs is not mounted and `mount -t tracefs nodev /sys/kernel/tracing` failed (run as root, privileged)".into(),
        ));
    }
    Ok(())
}

impl Probes {
    /// Loads the object and attaches what `options` asks for. Fails (never
    /// degrades silently) when not root or when the kernel refuses a program.
    pub fn load(options: &ProbeOptions) -> Result<Self, AgentError> {
        ensure_tracefs()?;
        let self_pid: u32 = if options.exclude_self {
            std::process::id()
        } else {
            u32::MAX
        };
        // The loader parses the kernel's BTF for its CO-RE relocations; the
        // L7 capture needs its own copy to choose a trigger and attach
        // tp_btf programs, and the loader then uses that one.
        let btf = if options.l7 {
            Some(kernel_btf()?)
        } else {
            None
        };
        let trigger = btf.as_ref().map(|btf| {
            options
                .trigger
                .unwrap_or_else(|| CaptureTrigger::best_for(btf))
        });
        let filters_by_process =
            options.narrow_to_pids || trigger == Some(CaptureTrigger::SyscallExit);
        let follow_servers = filters_by_process && options.follow_servers;
        let mut loader = EbpfLoader::new();
        if let Some(btf) = &btf {
            loader.btf(Some(btf));
        }
        let mut ebpf = loader
            .override_global("self_pid", &self_pid, true)
            .override_global("filter_pids", &u32::from(filters_by_process), true)
            .override_global("follow_servers", &u32::from(follow_servers), true)
            .override_global("wakeup_bytes", &options.wakeup_bytes, true)
            .map_max_entries("events", options.ring_buffer_bytes)
            .load(OBJECT)
            .map_err(|e| AgentError::Ebpf(format!("load (are you root?): {e}")))?;
        if let (Some(btf), Some(trigger)) = (&btf, trigger) {
            for (program, name) in trigger.programs() {
                attach_btf_tracepoint(&mut ebpf, btf, program, name)?;
            }
            // Closing sockets forget their parked requests; listeners are followed.
            attach_tracepoint(&mut ebpf, "on_sock_state", "sock", "inet_sock_set_state")?;
            // Keeping the process set current matters only where it filters.
            if follow_servers {
                for (program, name) in SERVER_PROCESS_PROGRAMS {
                    attach_btf_tracepoint(&mut ebpf, btf, program, name)?;
                }
            }
        }
        if options.tcp {
            for (program, category, name) in TCP_PROGRAMS {
                attach_tracepoint(&mut ebpf, program, category, name)?;
            }
        }
        if let Some(hz) = options.profile_hz {
            let program: &mut PerfEvent = program(&mut ebpf, "on_cpu_sample")?;
            program
                .load()
                .map_err(|e| ebpf_err("load on_cpu_sample")(e.to_string()))?;
            let cpus = aya::util::online_cpus()
                .map_err(|(what, e)| AgentError::Ebpf(format!("{what}: {e}")))?;
            for cpu in cpus {
                program
                    .attach(
                        PerfEventConfig::Software(SoftwareEvent::CpuClock),
                        PerfEventScope::AllProcessesOneCpu { cpu },
                        SamplePolicy::Frequency(hz),
                        false,
                    )
                    .map_err(|e| ebpf_err("attach cpu-clock")(format!("cpu {cpu}: {e}")))?;
            }
        }
        let ring = if options.l7 {
            let map = ebpf
                .take_map("events")
                .ok_or_else(|| AgentError::Ebpf("no map events".into()))?;
            Some(RingBuf::try_from(map).map_err(|e| AgentError::Ebpf(e.to_string()))?)
        } else {
            None
        };
        let ring_wakeups = match &ring {
            Some(ring) => Some(ring_poll(ring).map_err(ebpf_err("poll the ring buffer"))?),
            None => None,
        };
        let mut probes = Self {
            ebpf,
            trigger,
            filters_by_process,
            ports: Vec::new(),
            ring,
            ring_wakeups,
        };
        probes.set_server_ports(&options.server_ports)?;
        // The BTF parsed for loading is freed now; give its pages back.
        crate::sys::release_free_memory();
        Ok(probes)
    }

    /// What fires the L7 capture; `None` when it is not loaded.
    pub fn trigger(&self) -> Option<CaptureTrigger> {
        self.trigger
    }

    /// Whether the kernel captures only the processes in its `server_pids`
    /// set, which then has to be kept current by scans.
    pub fn filters_by_process(&self) -> bool {
        self.filters_by_process
    }

    /// Sleeps until `timeout` passes or the kernel wakes the ring buffer's
    /// consumer (the queue crossed a multiple of `wakeup_bytes`), whichever
    /// comes first.
    pub fn wait_for_events(&mut self, timeout: Duration) {
        match &mut self.ring_wakeups {
            // An error (EINTR) only ends the wait early: the caller drains and waits again.
            Some((poll, events)) => {
                let _ = poll.poll(events, Some(timeout));
            }
            None => std::thread::sleep(timeout),
        }
    }

    /// Replaces the kernel's server-port filter (empty: capture nothing).
    /// The filter is a bitmap: bit `port % 64` of word `port / 64`.
    pub fn set_server_ports(&mut self, wanted: &[u16]) -> Result<(), AgentError> {
        let map = self
            .ebpf
            .map_mut("server_ports")
            .ok_or_else(|| AgentError::Ebpf("no map server_ports".into()))?;
        let mut words: Array<_, u64> =
            Array::try_from(map).map_err(|e| AgentError::Ebpf(e.to_string()))?;
        // Every word that holds a port now or is to hold one is rewritten.
        let mut bits: BTreeMap<u32, u64> = self
            .ports
            .iter()
            .map(|port| (u32::from(*port) / 64, 0))
            .collect();
        for port in wanted {
            *bits.entry(u32::from(*port) / 64).or_default() |= 1 << (port % 64);
        }
        for (word, value) in bits {
            words
                .set(word, value, 0)
                .map_err(|e| AgentError::Ebpf(format!("server_ports[{word}]: {e}")))?;
        }
        self.ports = wanted.to_vec();
        Ok(())
    }

    /// Makes `wanted` the set of captured server processes. With `prune_after`
    /// set, only processes missing from this scan and from `prune_after` (the
    /// scan before) are removed: one the kernel added after this scan read
    /// /proc is kept until a scan has had the chance to see it.
    pub fn set_server_pids(
        &mut self,
        wanted: &BTreeSet<u32>,
        prune_after: Option<&BTreeSet<u32>>,
    ) -> Result<(), AgentError> {
        self.sync_pids("server_pids", wanted, |pid| {
            prune_after.is_some_and(|before| before.contains(&pid))
        })
    }

    /// Makes the pid set map `name` hold `wanted`, keeping present pids
    /// for which `keep` says so.
    fn sync_pids<'a>(
        &mut self,
        name: &str,
        wanted: impl IntoIterator<Item = &'a u32> + Copy,
        keep: impl Fn(u32) -> bool,
    ) -> Result<(), AgentError> {
        let map = self
            .ebpf
            .map_mut(name)
            .ok_or_else(|| AgentError::Ebpf(format!("no map {name}")))?;
        let mut pids: BpfHashMap<_, u32, u8> =
            BpfHashMap::try_from(map).map_err(|e| AgentError::Ebpf(e.to_string()))?;
        let present: Vec<u32> = pids.keys().filter_map(Result::ok).collect();
        let wanted_set: HashSet<u32> = wanted.into_iter().copied().collect();
        for pid in &present {
            if !wanted_set.contains(pid) && !keep(*pid) {
                let _ = pids.remove(pid);
            }
        }
        for pid in wanted {
            if !present.contains(pid) {
                pids.insert(pid, 1, 0)
                    .map_err(|e| AgentError::Ebpf(format!("{name}: {e}")))?;
            }
        }
        Ok(())
    }

    /// The captured server processes, as the kernel holds them now.
    pub fn server_pids(&self) -> BTreeSet<u32> {
        self.ebpf
            .map("server_pids")
            .and_then(|map| BpfHashMap::<_, u32, u8>::try_from(map).ok())
            .map(|pids| pids.keys().filter_map(Result::ok).collect())
            .unwrap_or_default()
    }

    /// Hands every queued ring-buffer record to `f`; returns how many.
    pub fn drain(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let Some(ring) = self.ring.as_mut() else {
            return 0;
        };
        let mut n = 0;
        while let Some(item) = ring.next() {
            f(&item);
            n += 1;
        }
        n
    }

    /// Kernel-side counters.
    pub fn stats(&self) -> ProbeStats {
        let Some(map) = self.ebpf.map("stats") else {
            return ProbeStats::default();
        };
        let Ok(stats) = PerCpuArray::<_, u64>::try_from(map) else {
            return ProbeStats::default();
        };
        let sum = |index: u32| {
            stats
                .get(&index, 0)
                .map(|v| v.iter().sum::<u64>())
                .unwrap_or(0)
        };
        ProbeStats {
            events: sum(0),
            ring_full: sum(1),
            pending: sum(2),
        }
    }

    /// Replaces the set of profiled pids.
    pub fn set_profile_pids(&mut self, wanted: &HashSet<u32>) -> Result<(), AgentError> {
        self.sync_pids("profile_pids", wanted, |_| false)
    }

    /// Takes (reads and clears) the sample counts, with each stack's
    /// instruction pointers (leaf first). Stacks are removed after reading.
    pub fn take_samples(&mut self) -> Result<Vec<Sample>, AgentError> {
        let raw: Vec<([u8; SAMPLE_KEY_SIZE], u64)> = {
            let map = self
                .ebpf
                .map_mut("samples")
                .ok_or_else(|| AgentError::Ebpf("no map samples".into()))?;
            let mut samples: BpfHashMap<_, [u8; SAMPLE_KEY_SIZE], u64> =
                BpfHashMap::try_from(map).map_err(|e| AgentError::Ebpf(e.to_string()))?;
            let raw: Vec<_> = samples.iter().filter_map(Result::ok).collect();
            for (key, _) in &raw {
                let _ = samples.remove(key);
            }
            raw
        };
        let map = self
            .ebpf
            .map_mut("stacks")
            .ok_or_else(|| AgentError::Ebpf("no map stacks".into()))?;
        let mut stacks =
            StackTraceMap::try_from(map).map_err(|e| AgentError::Ebpf(e.to_string()))?;
        let mut cache: HashMap<i32, Vec<u64>> = HashMap::new();
        let mut out = Vec::with_capacity(raw.len());
        for (key, count) in raw {
            let key = SampleKey::parse(&key);
            let mut frames = |id: i32| -> Vec<u64> {
                if id < 0 {
                    return Vec::new();
                }
                cache
                    .entry(id)
                    .or_insert_with(|| {
                        u32::try_from(id)
                            .ok()
                            .and_then(|id| stacks.get(&id, 0).ok())
                            .map(|trace| trace.frames().iter().map(|f| f.ip).collect())
                            .unwrap_or_default()
                    })
                    .clone()
            };
            let user = frames(key.user_stack);
            let kernel = frames(key.kernel_stack);
            out.push((key, count, user, kernel));
        }
        for id in cache.keys() {
            if let Ok(id) = u32::try_from(*id) {
                let _ = stacks.remove(&id);
            }
        }
        Ok(out)
    }

    /// Takes (reads and clears) the TCP trouble counters per peer.
    pub fn take_tcp_counts(&mut self) -> Result<BTreeMap<TcpKey, u64>, AgentError> {
        let map = self
            .ebpf
            .map_mut("tcp_counts")
            .ok_or_else(|| AgentError::Ebpf("no map tcp_counts".into()))?;
        let mut counts: BpfHashMap<_, [u8; TCP_KEY_SIZE], u64> =
            BpfHashMap::try_from(map).map_err(|e| AgentError::Ebpf(e.to_string()))?;
        let raw: Vec<_> = counts.iter().filter_map(Result::ok).collect();
        let mut out = BTreeMap::new();
        for (key, count) in raw {
            let _ = counts.remove(&key);
            if let Some(parsed) = TcpKey::parse(&key) {
                *out.entry(parsed).or_insert(0) += count;
            }
        }
        Ok(out)
    }
}

fn kernel_btf() -> Result<Btf, AgentError> {
    Btf::from_sys_fs()
        .map_err(|e| AgentError::Ebpf(format!("kernel BTF (/sys/kernel/btf/vmlinux): {e}")))
}

/// An edge-triggered poll on the ring buffer's fd.
fn ring_poll(ring: &RingBuf<MapData>) -> Result<(mio::Poll, mio::Events), String> {
    let poll = mio::Poll::new().map_err(|e| e.to_string())?;
    poll.registry()
        .register(
            &mut SourceFd(&ring.as_raw_fd()),
            mio::Token(0),
            mio::Interest::READABLE,
        )
        .map_err(|e| e.to_string())?;
    Ok((poll, mio::Events::with_capacity(1)))
}

/// The program `name` of the object, as its kind `P`.
fn program<'a, P>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut P, AgentError>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or_else(|| AgentError::Ebpf(format!("no program {name}")))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| AgentError::Ebpf(format!("{name}: {e}")))
}

fn attach_btf_tracepoint(
    ebpf: &mut Ebpf,
    btf: &Btf,
    program: &str,
    name: &str,
) -> Result<(), AgentError> {
    let tp: &mut BtfTracePoint = self::program(ebpf, program)?;
    tp.load(name, btf)
        .map_err(|e| AgentError::Ebpf(format!("load {program}: {e}")))?;
    tp.attach()
        .map_err(|e| AgentError::Ebpf(format!("attach {program} to tp_btf/{name}: {e}")))?;
    Ok(())
}

fn attach_tracepoint(
    ebpf: &mut Ebpf,
    program: &str,
    category: &str,
    name: &str,
) -> Result<(), AgentError> {
    let tp: &mut TracePoint = self::program(ebpf, program)?;
    tp.load()
        .map_err(|e| AgentError::Ebpf(format!("load {program}: {e}")))?;
    tp.attach(category, name)
        .map_err(|e| AgentError::Ebpf(format!("attach {program} to {category}:{name}: {e}")))?;
    Ok(())
}

//! On-CPU profiles: the kernel samples stacks at `frequency_hz` per CPU for
//! the pids in `profile_pids`; this module keeps that set in sync with a
//! process-name regex, symbolises user and kernel frames with blazesym (while
//! the process is still alive) and folds them into one [`Profile`] per process
//! per window.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use blazesym::symbolize::source::{Kernel, Process, Source};
use blazesym::symbolize::{Input, Symbolizer};
use blazesym::Pid;
use regex::Regex;
use vigil_model::{EntityId, EntityKind, FoldedStack, Profile, TimeRange};

use crate::bpf::Probes;
use crate::error::AgentError;

/// Pids under `proc_root` whose `comm` matches `matcher`.
pub fn matching_pids(proc_root: &Path, matcher: &Regex) -> HashMap<u32, String> {
    let mut out = HashMap::new();
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        return out;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(comm) = std::fs::read_to_string(entry.path().join("comm")) {
            let comm = comm.trim_end().to_owned();
            if matcher.is_match(&comm) {
                out.insert(pid, comm);
            }
        }
    }
    out
}

/// The entity a process profile belongs to: `comm@host#pid`.
pub fn process_entity(comm: &str, host: &str, pid: u32) -> EntityId {
    EntityId::new(EntityKind::Process, &format!("{comm}@{host}#{pid}"))
}

/// Accumulates symbolised, folded stacks per process.
pub struct Profiler {
    matcher: Regex,
    host: String,
    symbolizer: Symbolizer,
    folded: BTreeMap<(u32, String), HashMap<String, u64>>,
}

impl std::fmt::Debug for Profiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profiler")
            .field("matcher", &self.matcher)
            .finish_non_exhaustive()
    }
}

fn names(symbolizer: &Symbolizer, source: &Source<'_>, addrs: &[u64]) -> Vec<String> {
    if addrs.is_empty() {
        return Vec::new();
    }
    match symbolizer.symbolize(source, Input::AbsAddr(addrs)) {
        Ok(symbols) => symbols
            .iter()
            .zip(addrs)
            .map(|(sym, addr)| match sym.as_sym() {
                Some(sym) => sym.name.to_string(),
                None => format!("{addr:#x}"),
            })
            .collect(),
        Err(_) => addrs.iter().map(|a| format!("{a:#x}")).collect(),
    }
}

impl Profiler {
    /// A profiler for processes whose `comm` matches `matcher`, on `host`.
    pub fn new(matcher: &str, host: &str) -> Result<Self, AgentError> {
        Ok(Self {
            matcher: Regex::new(matcher)
                .map_err(|e| AgentError::Config(format!("profile.process_matcher: {e}")))?,
            host: host.to_owned(),
            symbolizer: Symbolizer::new(),
            folded: BTreeMap::new(),
        })
    }

    /// Points the kernel at the processes matching now; returns them.
    pub fn refresh_targets(&self, probes: &mut Probes) -> Result<HashMap<u32, String>, AgentError> {
        let pids = matching_pids(Path::new("/proc"), &self.matcher);
        let set: HashSet<u32> = pids.keys().copied().collect();
        probes.set_profile_pids(&set)?;
        Ok(pids)
    }

    /// Takes the kernel's samples, symbolises and folds them. Returns how many samples.
    pub fn collect(&mut self, probes: &mut Probes) -> Result<u64, AgentError> {
        let samples = probes.take_samples()?;
        let kernel = Source::Kernel(Kernel::default());
        let mut total = 0;
        for (key, count, user, kernel_ips) in samples {
            let process = Source::Process(Process::new(Pid::from(key.pid)));
            let mut frames: Vec<String> = Vec::with_capacity(user.len() + kernel_ips.len() + 1);
            frames.push(key.comm.clone());
            frames.extend(names(&self.symbolizer, &process, &user).into_iter().rev());
            frames.extend(
                names(&self.symbolizer, &kernel, &kernel_ips)
                    .into_iter()
                    .rev()
                    .map(|f| format!("{f}_[k]")),
            );
            let folded = frames.join(";");
            *self
                .folded
                .entry((key.pid, key.comm))
                .or_default()
                .entry(folded)
                .or_insert(0) += count;
            total += count;
        }
        Ok(total)
    }

    /// The profiles accumulated so far (heaviest stack first), for `range`; resets.
    pub fn flush(&mut self, range: TimeRange) -> Vec<Profile> {
        std::mem::take(&mut self.folded)
            .into_iter()
            .map(|((pid, comm), stacks)| {
                let mut stacks: Vec<FoldedStack> = stacks
                    .into_iter()
                    .map(|(frames, value)| FoldedStack { frames, value })
                    .collect();
                stacks.sort_by(|a, b| b.value.cmp(&a.value).then_with(|| a.frames.cmp(&b.frames)));
                Profile {
                    entity: process_entity(&comm, &self.host, pid),
                    range,
                    unit: "samples".to_owned(),
                    stacks,
                }
            })
            .collect()
    }
}

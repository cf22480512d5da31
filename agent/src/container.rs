//! Docker container identity: pid → `/proc/PID/cgroup` → container id →
//! name, image and labels through the Docker Engine API on its unix socket.
//! Processes outside containers (or with host networking and no daemon) are
//! named by process name, host IP and listening port by the store.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::Deserialize;

use crate::error::AgentError;

/// The container id in a `/proc/PID/cgroup` text, for the docker
/// (`/docker/<id>`), systemd (`docker-<id>.scope`), containerd/CRI
/// (`cri-containerd-<id>.scope`, `/kubepods/…/<id>`), CRI-O (`crio-<id>.scope`)
/// and podman (`libpod-<id>.scope`) layouts. Conmon scopes are not containers.
pub fn container_id_from_cgroup(text: &str) -> Option<String> {
    for line in text.lines() {
        let path = line.splitn(3, ':').nth(2).unwrap_or(line);
        for component in path.rsplit('/') {
            if component.contains("conmon") {
                continue;
            }
            let name = component.strip_suffix(".scope").unwrap_or(component);
            let id = name.rsplit(['-', ':']).next().unwrap_or(name);
            if id.len() == 64
                && id
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            {
                return Some(id.to_owned());
            }
        }
    }
    None
}

/// The container a process runs in, if any.
pub fn container_id_of(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    container_id_from_cgroup(&text)
}

/// What the Engine API says about one container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerInfo {
    /// Full 64-hex id.
    pub id: String,
    /// Name without the leading `/`.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListEntry {
    id: String,
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    image: String,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Inspect {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    config: Option<InspectConfig>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectConfig {
    #[serde(default)]
    image: String,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

/// A minimal Docker Engine API client over the unix socket (HTTP/1.1, hyper).
#[derive(Clone, Debug)]
pub struct DockerClient {
    socket: PathBuf,
}

impl DockerClient {
    /// A client for the daemon listening on `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
        }
    }

    async fn get(&self, path: &str) -> Result<Bytes, AgentError> {
        let err = |what: &str, e: &dyn std::fmt::Display| {
            AgentError::Docker(format!("{what} {}: {e}", self.socket.display()))
        };
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|e| err("connect", &e))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| err("handshake", &e))?;
        let driver = tokio::spawn(connection);
        let request = hyper::Request::get(path)
            .header(hyper::header::HOST, "docker")
            .body(Empty::<Bytes>::new())
            .map_err(|e| err("request", &e))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| err("GET", &e))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| err("read", &e))?
            .to_bytes();
        driver.abort();
        if !status.is_success() {
            return Err(AgentError::Docker(format!(
                "GET {path}: HTTP {status}: {}",
                String::from_utf8_lossy(&body).trim()
            )));
        }
        Ok(body)
    }

    /// `GET /containers/json`: the running containers.
    pub async fn list(&self) -> Result<Vec<ContainerInfo>, AgentError> {
        let body = self.get("/containers/json").await?;
        let entries: Vec<ListEntry> = serde_json::from_slice(&body)
            .map_err(|e| AgentError::Docker(format!("/containers/json: {e}")))?;
        Ok(entries
            .into_iter()
            .map(|e| ContainerInfo {
                id: e.id,
                name: e
                    .names
                    .first()
                    .map(|n| n.trim_start_matches('/').to_owned())
                    .unwrap_or_default(),
                image: e.image,
                labels: e.labels.unwrap_or_default(),
            })
            .collect())
    }

    /// `GET /containers/{id}/json`: one container.
    pub async fn inspect(&self, id: &str) -> Result<ContainerInfo, AgentError> {
        if !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        {
            return Err(AgentError::Docker(format!(
                "not a container id or name: {id:?}"
            )));
        }
        let body = self.get(&format!("/containers/{id}/json")).await?;
        let inspect: Inspect = serde_json::from_slice(&body)
            .map_err(|e| AgentError::Docker(format!("/containers/{id}/json: {e}")))?;
        let config = inspect.config.unwrap_or(InspectConfig {
            image: String::new(),
            labels: None,
        });
        Ok(ContainerInfo {
            id: inspect.id,
            name: inspect.name.trim_start_matches('/').to_owned(),
            image: config.image,
            labels: config.labels.unwrap_or_default(),
        })
    }
}

/// Names processes: container id per pid (from cgroups), container details
/// per id (from the Engine API, refreshed by [`Identities::refresh`]).
#[derive(Clone, Debug, Default)]
pub struct Identities {
    inner: Arc<Mutex<IdentityCache>>,
    proc_root: Option<PathBuf>,
}

#[derive(Debug, Default)]
struct IdentityCache {
    by_pid: HashMap<u32, Option<String>>,
    containers: HashMap<String, ContainerInfo>,
}

impl Identities {
    /// Identities read from `proc_root` (default `/proc`).
    pub fn with_proc_root(proc_root: impl Into<PathBuf>) -> Self {
        Self {
            inner: Arc::default(),
            proc_root: Some(proc_root.into()),
        }
    }

    fn cgroup_path(&self, pid: u32) -> PathBuf {
        self.proc_root
            .as_deref()
            .unwrap_or(Path::new("/proc"))
            .join(pid.to_string())
            .join("cgroup")
    }

    /// The container of `pid` (id, and details when the daemon named it).
    pub fn container(&self, pid: u32) -> Option<ContainerInfo> {
        let mut cache = self.inner.lock().ok()?;
        if cache.by_pid.len() > 100_000 {
            cache.by_pid.clear();
        }
        let id = cache
            .by_pid
            .entry(pid)
            .or_insert_with(|| {
                std::fs::read_to_string(self.cgroup_path(pid))
                    .ok()
                    .and_then(|t| container_id_from_cgroup(&t))
            })
            .clone()?;
        Some(cache.containers.get(&id).cloned().unwrap_or(ContainerInfo {
            id,
            ..ContainerInfo::default()
        }))
    }

    /// Forgets a pid (it exited).
    pub fn forget(&self, pid: u32) {
        if let Ok(mut cache) = self.inner.lock() {
            cache.by_pid.remove(&pid);
        }
    }

    /// Reloads container details from the daemon; ids seen in cgroups but not
    /// listed are inspected one by one.
    pub async fn refresh(&self, client: &DockerClient) -> Result<usize, AgentError> {
        let listed = client.list().await?;
        let unknown: Vec<String> = {
            let mut cache = self
                .inner
                .lock()
                .map_err(|_| AgentError::Docker("identity cache poisoned".into()))?;
            cache.containers = listed.into_iter().map(|c| (c.id.clone(), c)).collect();
            let known = &cache.containers;
            cache
                .by_pid
                .values()
                .flatten()
                .filter(|id| !known.contains_key(*id))
                .cloned()
                .collect()
        };
        for id in unknown {
            if let Ok(info) = client.inspect(&id).await {
                if let Ok(mut cache) = self.inner.lock() {
                    cache.containers.insert(id, info);
                }
            }
        }
        Ok(self.inner.lock().map(|c| c.containers.len()).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4e9a1b2c3d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789ab";

    #[test]
    fn cgroup_layouts() {
        let layouts = [
            format!("12:memory:/docker/{ID}\n0::/docker/{ID}\n"),
            format!("0::/system.slice/docker-{ID}.scope\n"),
            format!("1:name=systemd:/kubepods/burstable/pod1234-5678/{ID}\n"),
            format!("0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12.slice/cri-containerd-{ID}.scope\n"),
            format!("0::/machine.slice/libpod-{ID}.scope/container\n"),
            format!("0::/kubepods.slice/crio-{ID}.scope\n"),
            format!("0::/system.slice/containerd.service/k8s.io:cri-containerd:{ID}\n"),
        ];
        for layout in &layouts {
            assert_eq!(
                container_id_from_cgroup(layout).as_deref(),
                Some(ID),
                "{layout}"
            );
        }
    }

    #[test]
    fn hosts_and_conmon_are_not_containers() {
        assert_eq!(
            container_id_from_cgroup("0::/user.slice/user-0.slice/session-1.scope\n"),
            None
        );
        assert_eq!(
            container_id_from_cgroup("12:pids:/\n0::/init.scope\n"),
            None
        );
        assert_eq!(
            container_id_from_cgroup(&format!("0::/machine.slice/libpod-conmon-{ID}.scope\n")),
            None
        );
    }

    #[test]
    fn identities_from_a_proc_tree() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("77")).expect("mkdir");
        std::fs::write(
            dir.path().join("77/cgroup"),
            format!("0::/system.slice/docker-{ID}.scope\n"),
        )
        .expect("write");
        std::fs::create_dir_all(dir.path().join("78")).expect("mkdir");
        std::fs::write(dir.path().join("78/cgroup"), "0::/user.slice\n").expect("write");
        let identities = Identities::with_proc_root(dir.path());
        assert_eq!(identities.container(77).map(|c| c.id).as_deref(), Some(ID));
        assert_eq!(identities.container(78), None);
        assert_eq!(identities.container(79), None);
    }
}

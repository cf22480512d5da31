//! The Docker Engine API client against a local HTTP server on a unix socket
//! that answers `GET /containers/json` and `GET /containers/{id}/json`, and
//! the pid → cgroup → container → name chain over a sample /proc tree.

use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use vigil_agent::container::{DockerClient, Identities};

const WEB: &str = "3f4e9a1b2c3d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789ab";
const JOB: &str = "aaaabbbbccccddddeeeeffff0000111122223333444455556666777788889999";

fn response(status: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nApi-Version: 1.43\r\n\r\n{body}",
        body.len()
    )
}

/// A fake Engine API: one running container in the list, a second one only by inspect.
fn spawn_engine(socket: &Path) -> tokio::task::JoinHandle<()> {
    let listener = UnixListener::bind(socket).expect("bind unix socket");
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut len = 0;
                while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                    let Ok(n) = stream.read(&mut buf[len..]).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    len += n;
                }
                let request = String::from_utf8_lossy(&buf[..len]).into_owned();
                let path = request.split(' ').nth(1).unwrap_or("");
                let reply = if path == "/containers/json" {
                    response(
                        "200 OK",
                        &format!(
                            r#"[{{"Id":"{WEB}","Names":["/shop-web"],"Image":"shop/web:1.4","Labels":{{"com.docker.compose.service":"web"}},"State":"running"}}]"#
                        ),
                    )
                } else if path == format!("/containers/{JOB}/json") {
                    response(
                        "200 OK",
                        &format!(
                            r#"{{"Id":"{JOB}","Name":"/nightly-job","Config":{{"Image":"shop/job:2","Labels":{{"team":"data"}}}}}}"#
                        ),
                    )
                } else {
                    response("404 Not Found", r#"{"message":"No such container"}"#)
                };
                let _ = stream.write_all(reply.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    })
}

#[tokio::test]
async fn list_and_inspect_over_a_unix_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("docker.sock");
    let server = spawn_engine(&socket);
    let client = DockerClient::new(&socket);

    let list = client.list().await.expect("list");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].id, WEB);
    assert_eq!(list[0].name, "shop-web");
    assert_eq!(list[0].image, "shop/web:1.4");
    assert_eq!(
        list[0]
            .labels
            .get("com.docker.compose.service")
            .map(String::as_str),
        Some("web")
    );

    let job = client.inspect(JOB).await.expect("inspect");
    assert_eq!(job.name, "nightly-job");
    assert_eq!(job.image, "shop/job:2");
    assert_eq!(job.labels.get("team").map(String::as_str), Some("data"));

    let missing = client.inspect("0000").await.expect_err("404").to_string();
    assert!(
        missing.contains("404") && missing.contains("No such container"),
        "{missing}"
    );
    server.abort();
}

#[tokio::test]
async fn pids_are_named_by_their_containers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("docker.sock");
    let server = spawn_engine(&socket);
    let proc_root = dir.path().join("proc");
    for (pid, cgroup) in [
        (100, format!("12:memory:/docker/{WEB}\n0::/docker/{WEB}\n")),
        (200, format!("0::/system.slice/docker-{JOB}.scope\n")),
        (
            300,
            "0::/user.slice/user-0.slice/session-3.scope\n".to_owned(),
        ),
    ] {
        std::fs::create_dir_all(proc_root.join(pid.to_string())).expect("mkdir");
        std::fs::write(proc_root.join(pid.to_string()).join("cgroup"), cgroup).expect("write");
    }
    let identities = Identities::with_proc_root(&proc_root);
    // Before the daemon is asked: ids only.
    assert_eq!(
        identities.container(100).map(|c| c.name),
        Some(String::new())
    );
    assert!(identities.container(200).is_some());
    assert_eq!(
        identities.container(300),
        None,
        "a host process has no container"
    );
    identities
        .refresh(&DockerClient::new(&socket))
        .await
        .expect("refresh");
    assert_eq!(
        identities.container(100).map(|c| c.name).as_deref(),
        Some("shop-web")
    );
    assert_eq!(
        identities.container(200).map(|c| c.name).as_deref(),
        Some("nightly-job")
    );
    let unreachable = DockerClient::new(dir.path().join("absent.sock"))
        .list()
        .await
        .expect_err("no daemon");
    assert!(unreachable.to_string().contains("absent.sock"));
    server.abort();
}

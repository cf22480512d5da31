//! Deployment files (`deploy/`, the Dockerfiles, the systemd units) checked
//! without a Docker engine: the compose files parse and have the shape that
//! matters on our hosts (host network, agent privileged with host PID and its
//! mounts, server limits and healthcheck, every `${VAR:-default}` defaulted,
//! build contexts pointing at real Dockerfiles), the Dockerfiles are multi-stage
//! with a non-root server, the units start binaries we build, and every server
//! config in `deploy/` passes `vigil config check`. Each checker returns the
//! problems it found, and the broken-file tests at the bottom prove they fail.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_norway::{Mapping, Value};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn files_in(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    files
}

fn assert_clean(what: &str, problems: &[String]) {
    assert!(problems.is_empty(), "{what}:\n  {}", problems.join("\n  "));
}

// ---------------------------------------------------------------------------
// Compose
// ---------------------------------------------------------------------------

/// Binaries the workspace builds, from the `[[bin]]` sections of the manifests.
fn built_binaries() -> Vec<String> {
    let mut names = Vec::new();
    for manifest in ["Cargo.toml", "agent/Cargo.toml"] {
        let text = read(&root().join(manifest));
        let mut in_bin = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                in_bin = line == "[[bin]]";
            } else if in_bin {
                if let Some(value) = line.strip_prefix("name") {
                    let value = value.trim_start().trim_start_matches('=').trim();
                    names.push(value.trim_matches('"').to_owned());
                }
            }
        }
    }
    names
}

/// `${…}` expressions of a compose file (`$${…}` is an escaped dollar, left alone).
fn interpolations(text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] == b'$' && bytes[i + 1] == b'$' {
            i += 2;
            continue;
        }
        if bytes[i] == b'$' && bytes[i + 1] == b'{' {
            let mut depth = 0;
            let mut end = i + 1;
            while end < bytes.len() {
                match bytes[end] {
                    b'{' => depth += 1,
                    b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                end += 1;
            }
            found.push(text[i + 2..end.min(text.len())].to_owned());
            i = end;
            continue;
        }
        i += 1;
    }
    found
}

/// Every `${VAR}` must be `${VAR:-default}` with an upper-case name, so the
/// file works with an empty environment.
fn check_interpolations(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for expr in interpolations(text) {
        match expr.split_once(":-") {
            Some((name, _default)) => {
                let valid = !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
                if !valid {
                    problems.push(format!(
                        "${{{expr}}}: variable name {name:?} is not VAR_NAME"
                    ));
                }
            }
            None => problems.push(format!(
                "${{{expr}}} has no default (write ${{VAR:-default}})"
            )),
        }
    }
    problems
}

/// Replaces each `${VAR:-default}` by its default, as compose does with an empty environment.
fn with_defaults(text: &str) -> String {
    let mut out = text.to_owned();
    for expr in interpolations(text) {
        if let Some((_, default)) = expr.split_once(":-") {
            out = out.replacen(&format!("${{{expr}}}"), &with_defaults(default), 1);
        }
    }
    out
}

fn parse_compose(text: &str) -> Result<Value, String> {
    let mut value: Value = serde_norway::from_str(text).map_err(|e| format!("not YAML: {e}"))?;
    value
        .apply_merge()
        .map_err(|e| format!("bad merge key: {e}"))?;
    Ok(value)
}

fn get<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    value.as_mapping().and_then(|map| map.get(key))
}

fn services(compose: &Value) -> Vec<(String, &Value)> {
    get(compose, "services")
        .and_then(Value::as_mapping)
        .map(|map: &Mapping| {
            map.iter()
                .map(|(name, service)| (name.as_str().unwrap_or("?").to_owned(), service))
                .collect()
        })
        .unwrap_or_default()
}

/// Volume entries in short syntax (`source:target[:mode]`), long syntax turned into that.
fn volumes(service: &Value) -> Vec<String> {
    get(service, "volumes")
        .and_then(Value::as_sequence)
        .map(|entries| {
            entries
                .iter()
                .filter_map(|entry| match entry {
                    Value::String(s) => Some(s.clone()),
                    Value::Mapping(_) => {
                        let source = get(entry, "source").and_then(Value::as_str).unwrap_or("");
                        let target = get(entry, "target").and_then(Value::as_str).unwrap_or("");
                        let ro = get(entry, "read_only").and_then(Value::as_bool) == Some(true);
                        Some(format!("{source}:{target}{}", if ro { ":ro" } else { "" }))
                    }
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

fn has_limits(service: &Value) -> bool {
    let limits = get(service, "deploy")
        .and_then(|d| get(d, "resources"))
        .and_then(|r| get(r, "limits"));
    let by_deploy = limits.is_some_and(|l| get(l, "memory").is_some() && get(l, "cpus").is_some());
    let by_keys = get(service, "mem_limit").is_some() && get(service, "cpus").is_some();
    by_deploy || by_keys
}

fn has_healthcheck(service: &Value) -> bool {
    get(service, "healthcheck")
        .and_then(|h| get(h, "test"))
        .is_some_and(|test| match test {
            Value::Sequence(items) => items.len() >= 2 && items.iter().all(Value::is_string),
            Value::String(s) => !s.trim().is_empty(),
            _ => false,
        })
}

fn command_words(service: &Value) -> Vec<String> {
    match get(service, "command") {
        Some(Value::Sequence(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// Checks shared by every compose file. `dir` resolves relative paths.
fn check_compose_common(text: &str, dir: &Path) -> Vec<String> {
    let mut problems = check_interpolations(text);
    let compose = match parse_compose(&with_defaults(text)) {
        Ok(value) => value,
        Err(e) => return vec![e],
    };
    let services = services(&compose);
    if services.is_empty() {
        problems.push("no services".to_owned());
    }
    let named_volumes: Vec<String> = get(&compose, "volumes")
        .and_then(Value::as_mapping)
        .map(|m| {
            m.keys()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    for (name, service) in &services {
        if get(service, "network_mode").and_then(Value::as_str) != Some("host") {
            problems.push(format!("{name}: network_mode is not host"));
        }
        if get(service, "ports").is_some() {
            problems.push(format!(
                "{name}: `ports` means nothing with the host network"
            ));
        }
        let image = get(service, "image").and_then(Value::as_str);
        let build = get(service, "build");
        if image.is_none() && build.is_none() {
            problems.push(format!("{name}: neither image nor build"));
        }
        if let Some(build) = build {
            let (context, dockerfile) = match build {
                Value::String(context) => (context.clone(), "Dockerfile".to_owned()),
                _ => (
                    get(build, "context")
                        .and_then(Value::as_str)
                        .unwrap_or(".")
                        .to_owned(),
                    get(build, "dockerfile")
                        .and_then(Value::as_str)
                        .unwrap_or("Dockerfile")
                        .to_owned(),
                ),
            };
            let context = dir.join(context);
            if !context.is_dir() {
                problems.push(format!(
                    "{name}: build context {} is not a directory",
                    context.display()
                ));
            }
            let dockerfile = context.join(dockerfile);
            if !dockerfile.is_file() {
                problems.push(format!(
                    "{name}: Dockerfile {} does not exist",
                    dockerfile.display()
                ));
            }
        }
        for volume in volumes(service) {
            let source = volume.split(':').next().unwrap_or("");
            if source.starts_with('.') {
                if !dir.join(source).exists() {
                    problems.push(format!("{name}: mounted file {source} does not exist"));
                }
            } else if !source.starts_with('/') && !named_volumes.iter().any(|v| v == source) {
                problems.push(format!(
                    "{name}: volume {source} is not declared under volumes:"
                ));
            }
        }
        for (dependency, _) in get(service, "depends_on")
            .and_then(Value::as_mapping)
            .map(|m| m.iter().collect::<Vec<_>>())
            .unwrap_or_default()
        {
            let dependency = dependency.as_str().unwrap_or("?");
            if !services.iter().any(|(n, _)| n == dependency) {
                problems.push(format!("{name}: depends on unknown service {dependency}"));
            }
        }
    }
    problems
}

fn check_server_compose(text: &str, dir: &Path) -> Vec<String> {
    let mut problems = check_compose_common(text, dir);
    let Ok(compose) = parse_compose(&with_defaults(text)) else {
        return problems;
    };
    let services = services(&compose);
    let find = |name: &str| services.iter().find(|(n, _)| n == name).map(|(_, s)| *s);
    let Some(vigil) = find("vigil") else {
        problems.push("no `vigil` service".to_owned());
        return problems;
    };
    let Some(clickhouse) = find("clickhouse") else {
        problems.push("no `clickhouse` service".to_owned());
        return problems;
    };
    if command_words(vigil).first().map(String::as_str) != Some("serve") {
        problems.push("vigil: command is not `serve …`".to_owned());
    }
    for (name, service) in [("vigil", vigil), ("clickhouse", clickhouse)] {
        if !has_limits(service) {
            problems.push(format!(
                "{name}: no resource limits (mem_limit + cpus, or deploy.resources.limits)"
            ));
        }
        if !has_healthcheck(service) {
            problems.push(format!("{name}: no healthcheck"));
        }
        if get(service, "restart").is_none() {
            problems.push(format!("{name}: no restart policy"));
        }
    }
    if !volumes(vigil).iter().any(|v| v.contains(":/var/lib/vigil")) {
        problems.push("vigil: no volume for /var/lib/vigil".to_owned());
    }
    if !volumes(clickhouse)
        .iter()
        .any(|v| v.contains(":/var/lib/clickhouse"))
    {
        problems.push("clickhouse: no volume for /var/lib/clickhouse".to_owned());
    }
    // Ports come from the environment (the raw text, before defaults are applied).
    for variable in [
        "VIGIL_PORT",
        "VIGIL_CLICKHOUSE_HTTP_PORT",
        "VIGIL_CLICKHOUSE_TCP_PORT",
    ] {
        if !text.contains(&format!("${{{variable}:-")) {
            problems.push(format!("port variable {variable} is not used"));
        }
    }
    let healthcheck = serde_norway::to_string(get(vigil, "healthcheck").unwrap_or(&Value::Null))
        .unwrap_or_default();
    let listen = get(vigil, "environment")
        .and_then(|e| get(e, "VIGIL_API__LISTEN"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let port = listen.rsplit(':').next().unwrap_or("");
    if port.is_empty() || !healthcheck.contains(port) {
        problems.push(format!(
            "vigil: the healthcheck does not probe the listen port ({listen:?})"
        ));
    }
    problems
}

fn check_agent_compose(text: &str, dir: &Path) -> Vec<String> {
    let mut problems = check_compose_common(text, dir);
    let Ok(compose) = parse_compose(&with_defaults(text)) else {
        return problems;
    };
    let services = services(&compose);
    let Some((_, agent)) = services.iter().find(|(n, _)| n == "vigil-agent") else {
        problems.push("no `vigil-agent` service".to_owned());
        return problems;
    };
    if get(agent, "privileged").and_then(Value::as_bool) != Some(true) {
        problems.push("vigil-agent: not privileged".to_owned());
    }
    if get(agent, "pid").and_then(Value::as_str) != Some("host") {
        problems.push("vigil-agent: pid is not host".to_owned());
    }
    if let Some(user) = get(agent, "user").and_then(Value::as_str) {
        if user != "root" && user != "0" && !user.starts_with("0:") {
            problems.push(format!("vigil-agent: runs as {user}, not root"));
        }
    }
    if command_words(agent).first().map(String::as_str) != Some("run") {
        problems.push("vigil-agent: command is not `run …`".to_owned());
    }
    let mounts = volumes(agent);
    let required: [(&str, bool); 4] = [
        ("/sys/kernel/debug:/sys/kernel/debug", false),
        ("/sys/fs/cgroup:/sys/fs/cgroup", true),
        ("/var/run/docker.sock:/var/run/docker.sock", true),
        (":/etc/vigil-agent/vigil-agent.yaml", true),
    ];
    for (mount, read_only) in required {
        match mounts.iter().find(|m| m.contains(mount)) {
            None => problems.push(format!("vigil-agent: no mount {mount}")),
            Some(m) if read_only && !m.ends_with(":ro") => {
                problems.push(format!("vigil-agent: {m} is not read-only"));
            }
            Some(_) => {}
        }
    }
    if !has_limits(agent) {
        problems.push("vigil-agent: no resource limits".to_owned());
    }
    problems
}

#[test]
fn compose_files_have_the_shape_our_hosts_need() {
    let dir = root().join("deploy/compose");
    let files = files_in(&dir, ".yaml");
    let names: Vec<String> = files
        .iter()
        .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    assert!(names.contains(&"server.yaml".to_owned()), "{names:?}");
    assert!(names.contains(&"agent.yaml".to_owned()), "{names:?}");
    for file in &files {
        let text = read(file);
        let problems = match file.file_name().and_then(|n| n.to_str()) {
            Some("server.yaml") => check_server_compose(&text, &dir),
            Some("agent.yaml") => check_agent_compose(&text, &dir),
            _ => check_compose_common(&text, &dir),
        };
        assert_clean(&file.display().to_string(), &problems);
    }
}

// ---------------------------------------------------------------------------
// Dockerfiles
// ---------------------------------------------------------------------------

/// Instructions of a Dockerfile (continuations joined, comments dropped).
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(body) = trimmed.strip_suffix('\\') {
            current.push_str(body);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (op, args) = current
            .split_once(char::is_whitespace)
            .unwrap_or((&current, ""));
        out.push((op.to_ascii_uppercase(), args.trim().to_owned()));
        current.clear();
    }
    out
}

/// `server`: the final stage must drop root. `binary`: what ENTRYPOINT must start.
fn check_dockerfile(text: &str, server: bool, binary: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let all = instructions(text);
    let froms: Vec<usize> = all
        .iter()
        .enumerate()
        .filter(|(_, (op, _))| op == "FROM")
        .map(|(i, _)| i)
        .collect();
    if froms.len() < 2 {
        problems.push(format!(
            "{} FROM line(s): not a multi-stage build",
            froms.len()
        ));
        return problems;
    }
    let last = *froms.last().unwrap_or(&0);
    let runtime = &all[last..];
    let base = &runtime[0].1;
    if !base.starts_with("debian:bookworm-slim") {
        problems.push(format!("runtime image is {base}, not debian:bookworm-slim"));
    }
    if !runtime
        .iter()
        .any(|(op, args)| op == "RUN" && args.contains("ca-certificates"))
    {
        problems.push("runtime stage does not install ca-certificates".to_owned());
    }
    if !runtime
        .iter()
        .any(|(op, args)| op == "COPY" && args.contains("--from="))
    {
        problems.push("runtime stage copies nothing from the build stage".to_owned());
    }
    let user = runtime
        .iter()
        .rev()
        .find(|(op, _)| op == "USER")
        .map(|(_, args)| args.split(':').next().unwrap_or("").to_owned());
    if server {
        match user.as_deref() {
            None => problems.push("server runs as root (no USER)".to_owned()),
            Some("root") | Some("0") => problems.push("server USER is root".to_owned()),
            Some(_) => {}
        }
    }
    match runtime.iter().rev().find(|(op, _)| op == "ENTRYPOINT") {
        Some((_, args)) if args.contains(&format!("/{binary}\"")) => {}
        other => problems.push(format!("ENTRYPOINT {other:?} does not start {binary}")),
    }
    // Sources the Dockerfile copies from the build context must exist.
    for (op, args) in &all {
        if op != "COPY" || args.contains("--from=") {
            continue;
        }
        let words: Vec<&str> = args
            .split_whitespace()
            .filter(|w| !w.starts_with("--"))
            .collect();
        for source in words.iter().take(words.len().saturating_sub(1)) {
            if *source != "." && !root().join(source).exists() {
                problems.push(format!("COPY source {source} does not exist"));
            }
        }
    }
    problems
}

#[test]
fn dockerfiles_are_multi_stage_and_the_server_is_not_root() {
    let server = read(&root().join("Dockerfile"));
    assert_clean("Dockerfile", &check_dockerfile(&server, true, "vigil"));
    let agent_path = root().join("deploy/docker/Dockerfile.agent");
    let agent = read(&agent_path);
    let mut problems = check_dockerfile(&agent, false, "vigil-agent");
    // The build stage: everything before the second FROM.
    let build_stage: String = instructions(&agent)
        .iter()
        .enumerate()
        .take_while(|(i, (op, _))| *i == 0 || op != "FROM")
        .map(|(_, (_, args))| args.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    for package in ["clang", "llvm", "libbpf-dev", "bpftool"] {
        if !build_stage.split_whitespace().any(|w| w == package) {
            problems.push(format!("agent build stage does not install {package}"));
        }
    }
    assert_clean(&agent_path.display().to_string(), &problems);
    let ignore = read(&root().join(".dockerignore"));
    assert!(
        ignore
            .lines()
            .any(|l| l.trim().trim_end_matches('/') == "target"),
        ".dockerignore must keep target/ out of the build context"
    );
}

// ---------------------------------------------------------------------------
// systemd
// ---------------------------------------------------------------------------

/// Parses a unit file: section -> key -> values (keys may repeat).
fn parse_unit(text: &str) -> Result<BTreeMap<String, BTreeMap<String, Vec<String>>>, String> {
    let mut sections: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut section: Option<String> = None;
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name.to_owned());
            sections.entry(name.to_owned()).or_default();
            continue;
        }
        let Some(current) = &section else {
            return Err(format!(
                "line {}: {line:?} before any [Section]",
                number + 1
            ));
        };
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {}: {line:?} is not Key=value", number + 1));
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!("line {}: bad key {key:?}", number + 1));
        }
        sections
            .entry(current.clone())
            .or_default()
            .entry(key.to_owned())
            .or_default()
            .push(value.trim().to_owned());
    }
    Ok(sections)
}

fn check_unit(text: &str, binary: &str, subcommand: &str, root_user: bool) -> Vec<String> {
    let unit = match parse_unit(text) {
        Ok(unit) => unit,
        Err(e) => return vec![e],
    };
    let mut problems = Vec::new();
    for section in ["Unit", "Service", "Install"] {
        if !unit.contains_key(section) {
            problems.push(format!("no [{section}] section"));
        }
    }
    let empty = BTreeMap::new();
    let service = unit.get("Service").unwrap_or(&empty);
    let one = |key: &str| service.get(key).and_then(|v| v.last()).map(String::as_str);
    let built = built_binaries();
    match one("ExecStart") {
        None => problems.push("no ExecStart".to_owned()),
        Some(exec) => {
            let mut words = exec
                .trim_start_matches(['-', '@', '+', '!', ':'])
                .split_whitespace();
            let program = words.next().unwrap_or("");
            let name = program.rsplit('/').next().unwrap_or("");
            if !program.starts_with('/') {
                problems.push(format!("ExecStart {program} is not an absolute path"));
            }
            if name != binary || !built.iter().any(|b| b == name) {
                problems.push(format!(
                    "ExecStart runs {name}, not {binary} (built: {built:?})"
                ));
            }
            if words.next() != Some(subcommand) {
                problems.push(format!("ExecStart is not `{binary} {subcommand} …`"));
            }
            if !exec.contains(" -c /etc/") {
                problems.push("ExecStart does not pass -c /etc/…".to_owned());
            }
        }
    }
    for pre in service.get("ExecStartPre").into_iter().flatten() {
        let name = pre
            .split_whitespace()
            .next()
            .unwrap_or("")
            .rsplit('/')
            .next()
            .unwrap_or("");
        if !built.iter().any(|b| b == name) {
            problems.push(format!("ExecStartPre runs {name}, which we do not build"));
        }
    }
    if one("Restart") != Some("on-failure") {
        problems.push("Restart is not on-failure".to_owned());
    }
    let user = one("User").unwrap_or("root");
    if root_user && user != "root" {
        problems.push(format!("runs as {user}; the agent needs root"));
    }
    if !root_user && (user == "root" || user == "0") {
        problems.push("the server runs as root".to_owned());
    }
    if unit
        .get("Install")
        .and_then(|s| s.get("WantedBy"))
        .is_none_or(|v| v.is_empty())
    {
        problems.push("no WantedBy in [Install]".to_owned());
    }
    problems
}

#[test]
fn systemd_units_start_binaries_we_build() {
    let dir = root().join("deploy/systemd");
    let server = dir.join("vigil.service");
    let problems = check_unit(&read(&server), "vigil", "serve", false);
    assert_clean(&server.display().to_string(), &problems);
    let text = read(&server);
    assert!(
        text.contains("ExecStart=/usr/local/bin/vigil serve -c /etc/vigil/vigil.yaml"),
        "{}",
        server.display()
    );
    let agent = dir.join("vigil-agent.service");
    let problems = check_unit(&read(&agent), "vigil-agent", "run", true);
    assert_clean(&agent.display().to_string(), &problems);
    assert_eq!(
        files_in(&dir, ".service").len(),
        2,
        "unchecked unit in {}",
        dir.display()
    );
}

// ---------------------------------------------------------------------------
// Example configs
// ---------------------------------------------------------------------------

#[test]
fn server_configs_in_deploy_pass_vigil_config_check() {
    let configs: Vec<PathBuf> = files_in(&root().join("deploy"), ".yaml")
        .into_iter()
        .filter(|p| !p.to_string_lossy().ends_with("vigil-agent.yaml"))
        .collect();
    assert!(configs.len() >= 3, "{configs:?}");
    for config in configs {
        let output = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["config", "check"])
            .arg(&config)
            .env_clear()
            .output()
            .expect("running vigil config check");
        assert!(
            output.status.success(),
            "vigil config check {}: {}",
            config.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Keys of `value` that `reference` does not have (a nested walk).
fn unknown_keys(value: &Value, reference: &Value, path: &str, out: &mut Vec<String>) {
    let (Some(map), Some(known)) = (value.as_mapping(), reference.as_mapping()) else {
        return;
    };
    for (key, child) in map {
        let name = key.as_str().unwrap_or("?");
        let here = if path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        };
        match known.get(key) {
            None => out.push(here),
            Some(known_child) => unknown_keys(child, known_child, &here, out),
        }
    }
}

#[test]
fn agent_config_uses_only_documented_keys() {
    // The example lists every key with its default (agent tests keep it so); the
    // agent is not a default member, so its binary is not built here.
    let example: Value =
        serde_norway::from_str(&read(&root().join("agent/vigil-agent.example.yaml")))
            .expect("example parses");
    let deployed: Value = serde_norway::from_str(&read(&root().join("deploy/vigil-agent.yaml")))
        .expect("deploy/vigil-agent.yaml parses");
    let mut unknown = Vec::new();
    unknown_keys(&deployed, &example, "", &mut unknown);
    assert!(
        unknown.is_empty(),
        "unknown keys in deploy/vigil-agent.yaml: {unknown:?}"
    );
}

// ---------------------------------------------------------------------------
// The checkers fail on broken files
// ---------------------------------------------------------------------------

#[test]
fn checkers_catch_broken_files() {
    let dir = root().join("deploy/compose");
    let server = read(&dir.join("server.yaml"));
    let agent = read(&dir.join("agent.yaml"));
    let broken = |text: &str, from: &str, to: &str| {
        assert!(text.contains(from), "fixture {from:?} vanished");
        text.replacen(from, to, 1)
    };

    let cases: Vec<(&str, Vec<String>)> = vec![
        (
            "bridge network",
            check_server_compose(
                &broken(&server, "network_mode: host", "network_mode: bridge"),
                &dir,
            ),
        ),
        (
            "variable without default",
            check_server_compose(
                &broken(&server, "${VIGIL_PORT:-8080}", "${VIGIL_PORT}"),
                &dir,
            ),
        ),
        (
            "server without limits",
            check_server_compose(&broken(&server, "mem_limit: ${VIGIL_MEMORY:-2g}", ""), &dir),
        ),
        (
            "server without healthcheck",
            check_server_compose(
                &broken(
                    &server,
                    "    healthcheck:\n      # No curl",
                    "    x-healthcheck:\n      # No curl",
                ),
                &dir,
            ),
        ),
        (
            "missing Dockerfile",
            check_server_compose(
                &broken(
                    &server,
                    "dockerfile: Dockerfile",
                    "dockerfile: Dockerfile.nope",
                ),
                &dir,
            ),
        ),
        ("not YAML", check_server_compose("services: [\n", &dir)),
        (
            "agent not privileged",
            check_agent_compose(
                &broken(&agent, "privileged: true", "privileged: false"),
                &dir,
            ),
        ),
        (
            "agent without host pid",
            check_agent_compose(&broken(&agent, "pid: host", "pid: container:x"), &dir),
        ),
        (
            "docker socket writable",
            check_agent_compose(
                &broken(&agent, "/var/run/docker.sock:ro", "/var/run/docker.sock"),
                &dir,
            ),
        ),
        (
            "no debugfs",
            check_agent_compose(
                &broken(&agent, "- /sys/kernel/debug:/sys/kernel/debug\n", ""),
                &dir,
            ),
        ),
        (
            "single-stage Dockerfile",
            check_dockerfile(
                "FROM debian:bookworm-slim\nUSER vigil\nENTRYPOINT [\"/usr/local/bin/vigil\"]\n",
                true,
                "vigil",
            ),
        ),
        (
            "server Dockerfile as root",
            check_dockerfile(
                &broken(
                    &read(&root().join("Dockerfile")),
                    "USER vigil:vigil",
                    "USER root",
                ),
                true,
                "vigil",
            ),
        ),
        (
            "unit without ExecStart",
            check_unit(
                &broken(
                    &read(&root().join("deploy/systemd/vigil.service")),
                    "ExecStart=",
                    "#ExecStart=",
                ),
                "vigil",
                "serve",
                false,
            ),
        ),
        (
            "unit running another binary",
            check_unit(
                &broken(
                    &read(&root().join("deploy/systemd/vigil.service")),
                    "ExecStart=/usr/local/bin/vigil ",
                    "ExecStart=/usr/local/bin/vigild ",
                ),
                "vigil",
                "serve",
                false,
            ),
        ),
        (
            "unit line that is not Key=value",
            check_unit(
                "[Unit]\nDescription=x\n[Service]\nExecStart /usr/local/bin/vigil serve\n",
                "vigil",
                "serve",
                false,
            ),
        ),
    ];
    for (name, problems) in cases {
        assert!(!problems.is_empty(), "broken file passed: {name}");
    }
}

#[test]
fn env_example_names_only_variables_the_compose_files_use() {
    let dir = root().join("deploy/compose");
    let used: String = files_in(&dir, ".yaml").iter().map(|f| read(f)).collect();
    for line in read(&dir.join(".env.example")).lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, _) = line.split_once('=').expect("VAR=value");
        assert!(
            used.contains(&format!("${{{name}:-")),
            "deploy/compose/.env.example: {name} is used by no compose file"
        );
    }
}

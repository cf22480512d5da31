//! The HTML report in a real browser: Debian's headless Chromium loads the
//! page from disk, runs its scripts (inferno's flame-graph code), and we check
//! the DOM it ends with, that the console stayed clean, and that a screenshot
//! is a real picture. Chromium missing is a failure, never a skip: CI installs
//! it through `scripts/test.sh`.
//!
//! `VIGIL_SCREENSHOT_OUT=<path.png>` also copies the screenshot there (for the
//! README picture).

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use vigil_model::Language;
use vigil_report::{render_html, RenderOptions};

/// Longest a browser run may take before it is killed and the test fails.
const TIMEOUT: Duration = Duration::from_secs(60);

fn chromium() -> PathBuf {
    let candidates = ["chromium", "chromium-browser"];
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in candidates {
            let full = dir.join(name);
            if full.is_file() {
                return full;
            }
        }
    }
    panic!(
        "chromium is not installed: the browser test needs Debian's `chromium` package \
         (apt-get install chromium; scripts/test.sh installs it)"
    );
}

struct Run {
    stdout: String,
    stderr: String,
}

/// Runs headless Chromium with `extra` arguments on `page`, killed after [`TIMEOUT`].
fn run_chromium(page: &Path, profile_dir: &Path, extra: &[String]) -> Run {
    let mut command = Command::new(chromium());
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile_dir.display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("chromium starts");
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let out = thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("chromium can be waited for") {
            break status;
        }
        if started.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within {TIMEOUT:?}; killed");
        }
        thread::sleep(Duration::from_millis(100));
    };
    let run = Run {
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    };
    assert!(
        status.success(),
        "chromium failed with {status}:\n{}",
        run.stderr
    );
    run
}

/// Console output and failed loads in Chromium's log: the page writes nothing
/// to the console, so any console line is a script error or warning.
fn console_problems(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|line| {
            line.contains(":CONSOLE")
                || line.contains("Uncaught")
                || line.contains("Failed to load resource")
                || line.contains("net::ERR_")
        })
        .collect()
}

fn render_to(dir: &Path, language: Language) -> PathBuf {
    let page = dir.join(format!("report-{language}.html"));
    let html = render_html(&common::report(language), &RenderOptions::default());
    std::fs::write(&page, html).expect("page written");
    page
}

#[test]
fn report_renders_in_headless_chromium() {
    let dir = tempfile::tempdir().expect("temp dir");
    for language in Language::ALL {
        let page = render_to(dir.path(), language);

        let profile = tempfile::tempdir().expect("profile dir");
        let run = run_chromium(&page, profile.path(), &["--dump-dom".to_owned()]);
        let dom = &run.stdout;
        let problems = console_problems(&run.stderr);
        assert!(
            problems.is_empty(),
            "{language}: console errors or failed loads:\n{}",
            problems.join("\n")
        );
        assert!(
            dom.contains("id=\"finding-1\""),
            "{language}: first finding"
        );
        assert!(
            dom.contains("id=\"finding-2\""),
            "{language}: second finding"
        );
        assert!(
            dom.contains("id=\"finding-3\""),
            "{language}: suppressed finding"
        );
        assert_eq!(
            dom.matches("<svg class=\"chart\"").count(),
            4,
            "{language}: one chart per anomaly with a series"
        );
        assert!(dom.contains("class=\"band\""), "{language}: band polygon");
        assert!(
            dom.contains("class=\"anomaly-window\""),
            "{language}: shaded window"
        );
        assert!(
            dom.contains("<svg class=\"service-graph\""),
            "{language}: service graph"
        );
        assert!(
            dom.contains("class=\"node root\""),
            "{language}: root cause marked"
        );
        assert_eq!(
            dom.matches("<iframe class=\"flamegraph\"").count(),
            2,
            "{language}: flame graphs of the CPU finding and the top consumer"
        );
        for id in [
            "slow-sql",
            "slow-redis",
            "slos",
            "cpu-consumers",
            "coverage",
            "resolved",
            "suppressed",
        ] {
            assert!(
                dom.contains(&format!("id=\"{id}\"")),
                "{language}: section {id}"
            );
        }
        let lang = if language == Language::Zh {
            "zh-CN"
        } else {
            "en"
        };
        assert!(
            dom.contains(&format!("<html lang=\"{lang}\"")),
            "{language}: lang"
        );

        let profile = tempfile::tempdir().expect("profile dir");
        let shot = dir.path().join(format!("report-{language}.png"));
        let run = run_chromium(
            &page,
            profile.path(),
            &[
                format!("--screenshot={}", shot.display()),
                "--window-size=1280,2400".to_owned(),
                "--hide-scrollbars".to_owned(),
            ],
        );
        let problems = console_problems(&run.stderr);
        assert!(
            problems.is_empty(),
            "{language}: console errors while taking the screenshot:\n{}",
            problems.join("\n")
        );
        assert_picture(&shot);
        if language == Language::En {
            if let Some(out) = std::env::var_os("VIGIL_SCREENSHOT_OUT") {
                std::fs::copy(&shot, &out).expect("screenshot copied to VIGIL_SCREENSHOT_OUT");
            }
        }
    }
}

/// The PNG decodes, has the window's size, and is not blank (pixels vary).
fn assert_picture(path: &Path) {
    let file = std::fs::File::open(path)
        .unwrap_or_else(|e| panic!("screenshot {} exists: {e}", path.display()));
    let decoder = png::Decoder::new(std::io::BufReader::new(file));
    let mut reader = decoder.read_info().expect("screenshot is a PNG");
    let mut buffer = vec![
        0;
        reader
            .output_buffer_size()
            .expect("PNG size fits in memory")
    ];
    let info = reader.next_frame(&mut buffer).expect("PNG decodes");
    assert_eq!((info.width, info.height), (1280, 2400), "screenshot size");
    let bytes = &buffer[..info.buffer_size()];
    let channels = info.color_type.samples();
    let luma: Vec<f64> = bytes
        .chunks_exact(channels)
        .map(|px| px.iter().take(3).map(|&c| f64::from(c)).sum::<f64>() / 3.0)
        .collect();
    let n = luma.len() as f64;
    let mean = luma.iter().sum::<f64>() / n;
    let variance = luma.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / n;
    assert!(
        variance > 100.0,
        "screenshot looks blank (luma variance {variance:.1}, mean {mean:.1})"
    );
    // A real report has colour: the health score, badges, the path in the graph.
    let coloured = bytes
        .chunks_exact(channels)
        .filter(|px| {
            let (r, g, b) = (i32::from(px[0]), i32::from(px[1]), i32::from(px[2]));
            (r - g).abs().max((g - b).abs()).max((r - b).abs()) > 60
        })
        .count();
    assert!(
        coloured > 2_000,
        "screenshot has almost no colour ({coloured} pixels)"
    );
}

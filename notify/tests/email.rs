//! Email delivery to a small SMTP receiver written here: it stands in for the
//! external mail server and records what it was sent.

mod common;

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use vigil_model::Severity;
use vigil_notify::{ChannelKind, DeliveryOutcome, EmailConfig, SmtpSecurity};

use common::{fast, message, notifier};

/// What one SMTP session delivered.
#[derive(Debug, Default)]
struct Received {
    from: String,
    to: Vec<String>,
    data: String,
}

/// Listens on a free local port and answers one SMTP session per
/// connection; `rcpt_reply` is the answer to `RCPT TO`.
async fn smtp_receiver(rcpt_reply: &'static str) -> (u16, mpsc::UnboundedReceiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a local port");
    let port = listener.local_addr().expect("local address").port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read);
                let mut received = Received::default();
                let mut out = "220 localhost ESMTP test\r\n".to_string();
                loop {
                    if write.write_all(out.as_bytes()).await.is_err() {
                        return;
                    }
                    let mut line = String::new();
                    match lines.read_line(&mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    let upper = line.to_ascii_uppercase();
                    out = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                        "250-localhost\r\n250 8BITMIME\r\n".to_string()
                    } else if upper.starts_with("MAIL FROM:") {
                        received.from = line[10..].trim().to_string();
                        "250 OK\r\n".to_string()
                    } else if upper.starts_with("RCPT TO:") {
                        received.to.push(line[8..].trim().to_string());
                        format!("{rcpt_reply}\r\n")
                    } else if upper.starts_with("DATA") {
                        if write.write_all(b"354 go ahead\r\n").await.is_err() {
                            return;
                        }
                        loop {
                            let mut data_line = String::new();
                            match lines.read_line(&mut data_line).await {
                                Ok(0) | Err(_) => return,
                                Ok(_) => {}
                            }
                            if data_line == ".\r\n" {
                                break;
                            }
                            received.data.push_str(&data_line);
                        }
                        let done = std::mem::take(&mut received);
                        let _ = tx.send(done);
                        "250 OK queued\r\n".to_string()
                    } else if upper.starts_with("QUIT") {
                        let _ = write.write_all(b"221 bye\r\n").await;
                        return;
                    } else {
                        "250 OK\r\n".to_string()
                    }
                }
            });
        }
    });
    (port, rx)
}

fn email_channel(port: u16) -> ChannelKind {
    ChannelKind::Email(EmailConfig {
        smtp_host: "127.0.0.1".to_string(),
        smtp_port: Some(port),
        security: SmtpSecurity::None,
        username: None,
        password: None,
        from: "Vigil <vigil@example.com>".to_string(),
        to: vec![
            "oncall@example.com".to_string(),
            "Ops Lead <lead@example.com>".to_string(),
        ],
    })
}

#[tokio::test]
async fn email_carries_subject_text_and_html_parts() {
    let (port, mut inbox) = smtp_receiver("250 OK").await;
    let n = notifier(vec![("mail", fast(email_channel(port)))], vec![]);
    let mut m = message("patrol-2025-06-15", Severity::Critical, &["checkout"]);
    m.html = Some("<html><body><h1>Patrol report</h1><p>checkout slow</p></body></html>".into());
    let records = n.send(&m).await;

    let record = &records[0];
    assert_eq!(record.outcome, DeliveryOutcome::Delivered, "{record:?}");
    assert_eq!((record.attempts, record.http_status), (1, None));

    let mail = inbox.recv().await.expect("the receiver got a message");
    assert_eq!(mail.from, "<vigil@example.com>");
    assert_eq!(mail.to, ["<oncall@example.com>", "<lead@example.com>"]);
    let data = &mail.data;
    assert!(
        data.contains("Subject: [CRITICAL] Checkout latency\r\n"),
        "{data}"
    );
    assert!(
        data.contains("Message-ID: <patrol-2025-06-15@vigil>"),
        "{data}"
    );
    assert!(data.contains("multipart/alternative"), "{data}");
    assert!(
        data.contains("Content-Type: text/plain; charset=utf-8"),
        "{data}"
    );
    assert!(
        data.contains("Content-Type: text/html; charset=utf-8"),
        "{data}"
    );
    assert!(
        data.contains("checkout p99 1.2s (baseline 180ms)"),
        "{data}"
    );
    assert!(
        data.contains("Full report: https://vigil.example/reports/42"),
        "{data}"
    );
    assert!(data.contains("<h1>Patrol report</h1>"), "{data}");
    // The text part comes first so clients that prefer the last part show HTML.
    let text_at = data.find("text/plain").expect("text part");
    let html_at = data.find("text/html").expect("html part");
    assert!(text_at < html_at);
}

#[tokio::test]
async fn email_without_html_is_plain_text() {
    let (port, mut inbox) = smtp_receiver("250 OK").await;
    let n = notifier(vec![("mail", fast(email_channel(port)))], vec![]);
    let records = n
        .send(&message("alert-1", Severity::Warning, &["checkout"]))
        .await;
    assert_eq!(records[0].outcome, DeliveryOutcome::Delivered);
    let mail = inbox.recv().await.expect("the receiver got a message");
    assert!(mail.data.contains("Subject: [WARNING] Checkout latency"));
    assert!(!mail.data.contains("multipart"), "{}", mail.data);
    assert!(mail.data.contains("Content-Type: text/plain"));
}

#[tokio::test]
async fn permanent_smtp_refusal_is_not_retried() {
    let (port, _inbox) = smtp_receiver("550 no such user").await;
    let n = notifier(vec![("mail", fast(email_channel(port)))], vec![]);
    let records = n.send(&message("alert-2", Severity::Critical, &[])).await;
    let record = &records[0];
    let DeliveryOutcome::Failed { error } = &record.outcome else {
        panic!("expected a failure, got {:?}", record.outcome);
    };
    assert!(
        error.contains("550") || error.contains("no such user"),
        "{error}"
    );
    assert_eq!(record.attempts, 1);
}

//! Black-box tests of the server's transport limits, on the real `ledger`
//! binary: slow clients (a header that never ends, a body that never
//! comes) are cut off after their timeouts, and the connection caps keep
//! one address from holding every connection, so `/health` still answers.
//!
//! The sockets come from different loopback addresses (127.0.0.x are all
//! this machine's), so "another client" is another address, as it is in
//! production. Each test runs on both backends (`backends!` at the bottom).

#[allow(dead_code)]
#[macro_use]
mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::{Backend, OPERATOR, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

backends!(
    stalled_headers_are_cut_off_and_health_still_answers,
    the_connection_caps_refuse_one_address_and_queue_the_rest,
    a_body_that_does_not_come_is_answered_408,
    a_request_that_trickles_is_cut_at_the_request_timeout,
);

/// The header timeout the tests run with (seconds).
const HEADER_SECONDS: u64 = 2;
/// The body timeout the tests run with (seconds).
const BODY_SECONDS: u64 = 2;

/// A loopback client address: 127.0.0.`n`.
fn client(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

fn server_address(s: &Server) -> SocketAddr {
    s.base.trim_start_matches("http://").parse().expect("the server's address")
}

/// A connection to the server from `from`.
async fn connect(s: &Server, from: IpAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("a socket");
    socket.bind(SocketAddr::new(from, 0)).expect("a loopback source address");
    socket.connect(server_address(s)).await.expect("the server accepts connections")
}

/// Opens `count` connections from `from` that each send one header line of
/// a request and then nothing.
async fn stalled(s: &Server, from: IpAddr, count: usize) -> Vec<TcpStream> {
    let mut sockets = Vec::with_capacity(count);
    for _ in 0..count {
        let mut socket = connect(s, from).await;
        socket.write_all(b"GET /health HTTP/1.1\r\nHost: ledger\r\n").await.expect("the first line is sent");
        sockets.push(socket);
    }
    sockets
}

/// Whether the server has closed the connection: a read sees its end (or a
/// reset) within `within`. Data before the end is read and dropped.
async fn closed_within(socket: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buffer = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, socket.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// `GET /health` from `from` over a fresh connection; the time it took.
async fn health_from(s: &Server, from: IpAddr) -> Duration {
    let started = Instant::now();
    let http = reqwest::Client::builder()
        .local_address(from)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client");
    let response = http.get(s.url("/health")).send().await.expect("/health answers");
    assert_eq!(response.status(), 200);
    started.elapsed()
}

fn timeouts() -> Vec<String> {
    vec![
        "--header-read-timeout-seconds".into(),
        HEADER_SECONDS.to_string(),
        "--body-read-timeout-seconds".into(),
        BODY_SECONDS.to_string(),
    ]
}

/// 300 sockets that send one header line and stall (slowloris). Another
/// client's `/health` answers at once, and every stalled socket is closed
/// by the server after the header timeout.
async fn stalled_headers_are_cut_off_and_health_still_answers(backend: Backend) {
    let args = timeouts();
    let s = backend.start_with(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let mut sockets = Vec::new();
    // From several addresses, so the per-address cap alone does not do it.
    for n in 10..16 {
        sockets.extend(stalled(&s, client(n), 50).await);
    }
    let opened = Instant::now();
    let took = health_from(&s, client(2)).await;
    assert!(took < Duration::from_secs(1), "/health took {took:?} beside 300 stalled sockets");
    // Every stalled socket is closed once its header time is over.
    let deadline = Duration::from_secs(HEADER_SECONDS + 5);
    let mut open = 0;
    for socket in &mut sockets {
        if !closed_within(socket, deadline.saturating_sub(opened.elapsed())).await {
            open += 1;
        }
    }
    assert_eq!(open, 0, "{open} of 300 stalled sockets were still open {:?} after they stalled", opened.elapsed());
    // The server is still there for everyone.
    assert!(health_from(&s, client(10)).await < Duration::from_secs(1));
}

/// With at most 20 connections, 5 per address: one address's sixth
/// connection is closed at once; another client still gets through; and a
/// connection over the total cap waits (is not refused) until a stalled
/// one is cut off.
async fn the_connection_caps_refuse_one_address_and_queue_the_rest(backend: Backend) {
    let mut args = timeouts();
    args.extend(["--connections-max", "20", "--connections-per-address-max", "5"].map(String::from));
    let s = backend.start_with(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    // The harness's own keep-alive connection (from waiting for /health)
    // is idle: the header timeout closes it too. Then every place is ours.
    tokio::time::sleep(Duration::from_millis(HEADER_SECONDS * 1000 + 500)).await;
    let mut held = stalled(&s, client(20), 5).await;
    // The sixth from the same address: closed long before any timeout.
    let mut sixth = connect(&s, client(20)).await;
    let refused_at = Instant::now();
    assert!(closed_within(&mut sixth, Duration::from_secs(1)).await, "a sixth connection of one address is closed");
    assert!(refused_at.elapsed() < Duration::from_secs(1));
    // Another client is served at once.
    assert!(health_from(&s, client(2)).await < Duration::from_secs(1));
    // (Its connection closed with its client; give the server a moment to see it.)
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Fill the total: 5 + 5 + 5 + 4 = 19 stalled, the 20th place is /health's.
    for n in 21..24 {
        held.extend(stalled(&s, client(n), if n == 23 { 4 } else { 5 }).await);
    }
    let took = health_from(&s, client(3)).await;
    assert!(took < Duration::from_secs(1), "the 20th place serves /health: {took:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The /health connection closed with its client: one more stalled
    // socket takes the 20th place.
    held.extend(stalled(&s, client(24), 1).await);
    // A connection over the cap waits for a place and is then served.
    let waited = health_from(&s, client(4)).await;
    assert!(waited < Duration::from_secs(HEADER_SECONDS + 5), "queued /health took {waited:?}");
    for socket in &mut held {
        assert!(closed_within(socket, Duration::from_secs(HEADER_SECONDS + 5)).await, "stalled sockets are cut off");
    }
}

/// Reads one HTTP/1.1 response (head and a body of `Content-Length`).
async fn read_response(socket: &mut TcpStream, within: Duration) -> Option<(u16, String, String)> {
    let deadline = Instant::now() + within;
    let mut bytes = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = &text[..end];
            let length = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if bytes.len() >= end + 4 + length {
                let status = head.split(' ').nth(1)?.parse().ok()?;
                return Some((status, head.to_owned(), text[end + 4..end + 4 + length].to_owned()));
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, socket.read(&mut buffer)).await {
            Ok(Ok(n)) if n > 0 => bytes.extend_from_slice(&buffer[..n]),
            _ => return None,
        }
    }
}

/// A request whose body never arrives in full is answered 408
/// `request_timeout` (problem+json) after the body timeout, on a command
/// route and on the validation route, and appends nothing.
async fn a_body_that_does_not_come_is_answered_408(backend: Backend) {
    let args = timeouts();
    let s = backend.start_with(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let before = s.head().await;
    for (path, token) in [("/api/v1/organizations", Some(OPERATOR)), ("/api/v1/license/validate", None)] {
        let mut socket = connect(&s, client(30)).await;
        let authorization = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: ledger\r\n{authorization}Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\": \"Slo"
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        let sent = Instant::now();
        let answer = read_response(&mut socket, Duration::from_secs(BODY_SECONDS + 5)).await;
        let (status, head, body) = answer.unwrap_or_else(|| panic!("{path}: no answer to a body that stalled"));
        assert_eq!(status, 408, "{path}: {head}\n{body}");
        assert!(sent.elapsed() >= Duration::from_secs(BODY_SECONDS) - Duration::from_millis(200), "{path}");
        assert!(head.to_ascii_lowercase().contains("content-type: application/problem+json"), "{path}: {head}");
        let problem: serde_json::Value = serde_json::from_str(&body).expect("a JSON problem");
        assert_eq!((problem["code"].as_str(), problem["status"].as_u64()), (Some("request_timeout"), Some(408)));
    }
    assert_eq!(s.head().await, before, "nothing appended");
}

/// A body sent a byte a second never pauses long enough for the body
/// timeout, but the whole request may take only `--request-timeout-seconds`:
/// 408 `request_timeout` then, and nothing appended.
async fn a_request_that_trickles_is_cut_at_the_request_timeout(backend: Backend) {
    let mut args = timeouts();
    args.extend(["--request-timeout-seconds", "3"].map(String::from));
    let s = backend.start_with(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let before = s.head().await;
    let mut socket = connect(&s, client(31)).await;
    let head = format!(
        "POST /api/v1/organizations HTTP/1.1\r\nHost: ledger\r\nAuthorization: Bearer {OPERATOR}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let sent = Instant::now();
    // Write a byte every 0.7 s (under the 2 s body timeout) while reading.
    let (mut reader, mut writer) = socket.into_split();
    let writing = tokio::spawn(async move {
        for byte in b"{\"name\": \"Trickle and more and more".iter().cycle().take(30) {
            if writer.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
    });
    let mut bytes = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), reader.read_to_end(&mut bytes)).await;
    writing.abort();
    assert!(read.is_ok(), "the server answered and closed within 10 s");
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"code\":\"request_timeout\""), "{text}");
    let took = sent.elapsed();
    assert!(took >= Duration::from_millis(2800) && took < Duration::from_secs(6), "{took:?}");
    assert_eq!(s.head().await, before, "nothing appended");
}

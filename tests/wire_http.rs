//! What the device's HTTP transport puts on the wire, read by a raw TCP listener on loopback
//! (docs/protocol.md §6.4, spec gap 8): a request without a body still says how long its body
//! is, so proxies and servers that require a length (411 Length Required) take it.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::Duration;

use apoyo_sync::testkit::sync::transport::{Method, Request};
use apoyo_sync::testkit::sync::{HttpTransport, TlsConfig, Transport};

/// Serves one request on a loopback listener; returns its head, lower-cased, line by line.
fn capture_one(answer: &'static str) -> (String, std::thread::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("read");
            let line = line.trim_end().to_ascii_lowercase();
            if line.is_empty() {
                break;
            }
            head.push(line);
        }
        let mut stream = stream;
        stream.write_all(answer.as_bytes()).expect("write");
        head
    });
    (base, server)
}

#[tokio::test]
async fn a_tus_creation_post_carries_content_length_zero() {
    let (base, server) = capture_one(
        "HTTP/1.1 201 Created\r\nTus-Resumable: 1.0.0\r\nLocation: /v1/uploads/abc\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    let transport = HttpTransport::new(&base, &TlsConfig::default()).expect("transport");
    let req = Request::new(Method::Post, "/v1/uploads", Duration::from_secs(10))
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", "39");
    let resp = transport.send(req, 1024).await.expect("answer");
    assert_eq!(resp.status, 201);
    let head = server.join().expect("server");
    assert!(head[0].starts_with("post /v1/uploads "), "{head:?}");
    assert!(
        head.iter().any(|l| l == "content-length: 0"),
        "the creation request states an empty body: {head:?}"
    );
    assert_eq!(
        head.iter()
            .filter(|l| l.starts_with("content-length"))
            .count(),
        1,
        "{head:?}"
    );
    assert!(
        !head.iter().any(|l| l.starts_with("transfer-encoding")),
        "{head:?}"
    );
}

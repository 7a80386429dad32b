//! Proxies in front of moto: one request at a time (DynamoDB's per-request atomicity, which moto's
//! server lacks), and DynamoDB throttling injected at a rate, as DynamoDB answers a table over its
//! capacity.

use crate::aws_endpoint;
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    sync::{
        atomic::{AtomicU32, AtomicU64, Ordering},
        Arc, Mutex,
    },
};

/// moto's server runs every request on a thread of its own with no isolation: it checks a
/// condition and applies the write in separate steps, so two concurrent requests can both pass
/// the same condition (measured: 8 racing `lock_lease` calls on one lease gave the lock to two
/// owners in 20 of 40 rounds), and a cancelled transaction restores a copy of the whole table,
/// undoing writes made meanwhile. DynamoDB applies each request atomically. Tests that race
/// requests send them through this proxy, which hands moto one request at a time: each request is
/// atomic, as in DynamoDB, and the domain's operations (several requests each) still interleave.
/// Returns the proxy's URL.
pub fn serial_proxy() -> String {
    ThrottlingProxy::start(0).url
}

/// A [`serial_proxy`] that also answers a share of DynamoDB's requests (by `X-Amz-Target`) with
/// `ProvisionedThroughputExceededException`, as DynamoDB does, without passing them on: the
/// request is not applied, and the SDK retries it (a throttling error) until its attempts run out.
/// The rate can change while it runs; every other service passes through untouched.
pub struct ThrottlingProxy {
    pub url: String,
    throttle: Arc<Throttle>,
}

struct Throttle {
    /// Requests throttled per million DynamoDB requests.
    per_million: AtomicU32,
    throttled: AtomicU64,
    dynamodb_requests: AtomicU64,
    rng: Mutex<StdRng>,
}

/// DynamoDB's answer to a request over the table's capacity (its JSON protocol).
fn throttled_answer() -> Vec<u8> {
    let body = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"The level of configured provisioned throughput was exceeded"}"#;
    format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/x-amz-json-1.0\r\nx-amzn-RequestId: throttled-by-proxy\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

impl Throttle {
    fn throttles(&self, request: &[u8]) -> bool {
        let head_end = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(request.len());
        let head = String::from_utf8_lossy(&request[..head_end]).to_ascii_lowercase();
        if !head.contains("\r\nx-amz-target: dynamodb_") {
            return false;
        }
        self.dynamodb_requests.fetch_add(1, Ordering::Relaxed);
        let per_million = self.per_million.load(Ordering::Relaxed);
        let roll = self.rng.lock().unwrap_or_else(|e| e.into_inner()).random_range(0..1_000_000);
        let throttled = roll < per_million;
        if throttled {
            self.throttled.fetch_add(1, Ordering::Relaxed);
        }
        throttled
    }
}

impl ThrottlingProxy {
    /// Starts one on a free loopback port, throttling `per_million` of DynamoDB's requests.
    pub fn start(per_million: u32) -> Self {
        let throttle = Arc::new(Throttle {
            per_million: AtomicU32::new(per_million),
            throttled: AtomicU64::new(0),
            dynamodb_requests: AtomicU64::new(0),
            rng: Mutex::new(StdRng::seed_from_u64(per_million.into())),
        });
        let upstream = aws_endpoint().trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let url = format!("http://{}", listener.local_addr().expect("proxy address"));
        let turn = Arc::new(Mutex::new(()));
        let shared = throttle.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (upstream, turn, throttle) = (upstream.clone(), turn.clone(), shared.clone());
                std::thread::spawn(move || {
                    let _ = relay(client, &upstream, &turn, &throttle);
                });
            }
        });
        Self { url, throttle }
    }

    /// Throttles `per_million` of DynamoDB's requests from now on.
    pub fn set_rate(&self, per_million: u32) {
        self.throttle.per_million.store(per_million.min(1_000_000), Ordering::Relaxed);
    }

    /// DynamoDB requests seen and throttled so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.throttle.dynamodb_requests.load(Ordering::Relaxed), self.throttle.throttled.load(Ordering::Relaxed))
    }
}

/// One request from the client to moto and its answer back (or a throttling answer in moto's
/// place), then both connections close.
fn relay(mut client: TcpStream, upstream: &str, turn: &Mutex<()>, throttle: &Throttle) -> std::io::Result<()> {
    let request = read_message(&mut client, true)?;
    if throttle.throttles(&request) {
        return client.write_all(&throttled_answer());
    }
    let response = {
        let _one_at_a_time = turn.lock().unwrap_or_else(|e| e.into_inner());
        let mut moto = TcpStream::connect(upstream)?;
        moto.write_all(&request)?;
        read_message(&mut moto, false)?
    };
    client.write_all(&response)
}

/// Reads one HTTP/1.1 message (head and `Content-Length` body) and rewrites it to close its
/// connection. A response without a length is read to the end.
fn read_message(stream: &mut TcpStream, request: bool) -> std::io::Result<Vec<u8>> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim().eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok()).flatten()
    });
    match length {
        Some(length) => {
            while buffer.len() < head_end + length {
                let n = stream.read(&mut chunk)?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buffer.extend_from_slice(&chunk[..n]);
            }
            buffer.truncate(head_end + length);
        }
        None if request => buffer.truncate(head_end),
        None => {
            stream.read_to_end(&mut buffer)?;
        }
    }
    let mut message: Vec<u8> = head
        .split("\r\n")
        .filter(|line| !line.is_empty() && !line.to_ascii_lowercase().starts_with("connection:"))
        .flat_map(|line| [line, "\r\n"])
        .collect::<String>()
        .into_bytes();
    message.extend_from_slice(b"Connection: close\r\n\r\n");
    message.extend_from_slice(&buffer[head_end..]);
    Ok(message)
}

//! The benchmarks' measuring tools: a counting HTTP relay between the AWS SDK and moto (AWS calls
//! per service and operation, and moto's time answering them), the JumpCloud simulators' request
//! counters, the cost of one operation between two marks, and the argued minimum it is compared
//! with. Used by `bench-grant` and `bench-requests`.

use jumpcloud_sim::SimHandle;
use std::{
    collections::BTreeMap,
    future::Future,
    io::{self, BufRead, BufReader, Write},
    net::{TcpListener, TcpStream},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

// ---------------------------------------------------------------------------------------------
// The counting relay: SDK -> relay -> moto, one upstream connection per client connection.

/// Calls per `Service.Operation`, and the time moto took to answer them.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub calls: BTreeMap<String, u64>,
    pub moto: BTreeMap<String, Duration>,
    /// Answers other than 2xx, by `Service.Operation status`.
    pub errors: BTreeMap<String, u64>,
}

/// Counts AWS calls at the HTTP level: a keep-alive HTTP/1.1 relay that names each request
/// `Service.Operation` (service from the signature's scope; operation from `X-Amz-Target`, or
/// from Scheduler's REST route) and times moto's answer.
pub struct CountingProxy {
    pub url: String,
    tally: Arc<Mutex<Tally>>,
}

impl CountingProxy {
    pub fn start(upstream: &str) -> anyhow::Result<Self> {
        let upstream = upstream.trim_start_matches("http://").trim_end_matches('/').to_owned();
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}", listener.local_addr()?);
        let tally = Arc::new(Mutex::new(Tally::default()));
        let shared = tally.clone();
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (upstream, tally) = (upstream.clone(), shared.clone());
                thread::spawn(move || relay(client, &upstream, &tally));
            }
        });
        Ok(Self { url, tally })
    }

    pub fn tally(&self) -> Tally {
        self.tally.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

struct Upstream {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

/// Relays one client connection's requests, in order, over one connection to moto.
fn relay(client: TcpStream, upstream: &str, tally: &Mutex<Tally>) -> io::Result<()> {
    let _ = client.set_nodelay(true);
    let mut from_client = BufReader::new(client.try_clone()?);
    let mut to_client = client;
    let mut moto: Option<Upstream> = None;
    while let Some(request) = read_message(&mut from_client, None)? {
        let operation = operation(&request);
        let started = Instant::now();
        let reused = moto.is_some();
        let response = match forward(&mut moto, upstream, &request) {
            Ok(response) => response,
            // moto closed an idle connection: once more on a new one (still one call).
            Err(_) if reused => {
                moto = None;
                forward(&mut moto, upstream, &request)?
            }
            Err(e) => return Err(e),
        };
        {
            let mut tally = tally.lock().unwrap_or_else(|e| e.into_inner());
            *tally.calls.entry(operation.clone()).or_default() += 1;
            *tally.moto.entry(operation.clone()).or_default() += started.elapsed();
            let status = response.head.split(' ').nth(1).unwrap_or_default();
            if !status.starts_with('2') {
                *tally.errors.entry(format!("{operation} {status}")).or_default() += 1;
            }
        }
        to_client.write_all(&response.bytes)?;
        if response.closes {
            moto = None;
        }
    }
    Ok(())
}

fn forward(moto: &mut Option<Upstream>, upstream: &str, request: &Message) -> io::Result<Message> {
    if moto.is_none() {
        let stream = TcpStream::connect(upstream)?;
        let _ = stream.set_nodelay(true);
        *moto = Some(Upstream { reader: BufReader::new(stream.try_clone()?), writer: stream });
    }
    let m = moto.as_mut().expect("connected");
    m.writer.write_all(&request.bytes)?;
    read_message(&mut m.reader, Some(request.method()))?.ok_or_else(|| io::ErrorKind::UnexpectedEof.into())
}

/// One HTTP/1.1 message as read: its head (request or status line, headers) and all its bytes.
pub struct Message {
    head: String,
    head_len: usize,
    bytes: Vec<u8>,
    /// The connection ends after this message.
    closes: bool,
}

impl Message {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
    pub fn method(&self) -> &str {
        self.head.split(' ').next().unwrap_or_default()
    }
    pub fn path(&self) -> &str {
        self.head.split(' ').nth(1).unwrap_or_default()
    }
    pub fn body(&self) -> &[u8] {
        &self.bytes[self.head_len..]
    }
}

/// Reads one message: the head, then a `Content-Length` or chunked body; a response with neither
/// runs to the end of the connection. `None`: the peer closed the connection between messages.
/// `request_method` is `Some` when reading the response to a request with that method.
pub fn read_message(reader: &mut impl BufRead, request_method: Option<&str>) -> io::Result<Option<Message>> {
    let mut bytes = Vec::new();
    loop {
        let start = bytes.len();
        if reader.read_until(b'\n', &mut bytes)? == 0 {
            return if bytes.is_empty() { Ok(None) } else { Err(io::ErrorKind::UnexpectedEof.into()) };
        }
        if start > 0 && &bytes[start..] == b"\r\n" {
            break;
        }
    }
    let mut m =
        Message { head: String::from_utf8_lossy(&bytes).into_owned(), head_len: bytes.len(), bytes, closes: false };
    let chunked = m.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let length = m.header("content-length").and_then(|v| v.parse::<usize>().ok());
    let connection = m.header("connection").map(str::to_ascii_lowercase);
    m.closes = connection.as_deref() == Some("close")
        || (m.head.starts_with("HTTP/1.0") && connection.as_deref() != Some("keep-alive"));
    let status: u16 = m.head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let bodiless = request_method == Some("HEAD") || matches!(status, 100..=199 | 204 | 304);
    if bodiless {
    } else if chunked {
        read_chunked(reader, &mut m.bytes)?;
    } else if let Some(length) = length {
        let start = m.bytes.len();
        m.bytes.resize(start + length, 0);
        reader.read_exact(&mut m.bytes[start..])?;
    } else if request_method.is_some() {
        reader.read_to_end(&mut m.bytes)?;
        m.closes = true;
    }
    Ok(Some(m))
}

/// A chunked body, framing included (it is relayed as is).
fn read_chunked(reader: &mut impl BufRead, bytes: &mut Vec<u8>) -> io::Result<()> {
    loop {
        let start = bytes.len();
        if reader.read_until(b'\n', bytes)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let line = String::from_utf8_lossy(&bytes[start..]).into_owned();
        let size = usize::from_str_radix(line.split(';').next().unwrap_or_default().trim(), 16)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if size == 0 {
            // Trailers, up to the blank line.
            loop {
                let start = bytes.len();
                if reader.read_until(b'\n', bytes)? == 0 || &bytes[start..] == b"\r\n" {
                    return Ok(());
                }
            }
        }
        let start = bytes.len();
        bytes.resize(start + size + 2, 0);
        reader.read_exact(&mut bytes[start..])?;
    }
}

/// `Service.Operation` of an AWS request.
pub fn operation(request: &Message) -> String {
    let scope = request
        .header("authorization")
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').nth(3))
        .unwrap_or("unknown");
    let service = match scope {
        "dynamodb" => "DynamoDB",
        "events" => "EventBridge",
        "scheduler" => "Scheduler",
        "secretsmanager" => "SecretsManager",
        other => other,
    };
    if let Some(target) = request.header("x-amz-target") {
        return format!("{service}.{}", target.rsplit('.').next().unwrap_or(target));
    }
    let path = request.path().split('?').next().unwrap_or_default();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let op = match (request.method(), segments.as_slice()) {
        ("POST", ["schedules", _]) => "CreateSchedule".to_owned(),
        ("GET", ["schedules", _]) => "GetSchedule".to_owned(),
        ("PUT", ["schedules", _]) => "UpdateSchedule".to_owned(),
        ("DELETE", ["schedules", _]) => "DeleteSchedule".to_owned(),
        ("GET", ["schedules"]) => "ListSchedules".to_owned(),
        ("POST", ["schedule-groups", _]) => "CreateScheduleGroup".to_owned(),
        ("GET", ["schedule-groups", _]) => "GetScheduleGroup".to_owned(),
        (method, _) => format!("{method} {path}"),
    };
    format!("{service}.{op}")
}

// ---------------------------------------------------------------------------------------------
// What an operation cost.

/// What happened between two marks: JumpCloud requests per endpoint, AWS calls per operation.
#[derive(Debug, Default, Clone)]
pub struct Cost {
    pub jumpcloud: BTreeMap<String, u64>,
    pub aws: Tally,
}

impl Cost {
    pub fn jumpcloud(&self) -> u64 {
        self.jumpcloud.values().sum()
    }
    pub fn ops<'a>(&'a self, service: &'a str) -> impl Iterator<Item = (&'a str, u64)> + 'a {
        self.aws.calls.iter().filter_map(move |(k, n)| Some((k.strip_prefix(service)?.strip_prefix('.')?, *n)))
    }
    pub fn service(&self, service: &str) -> u64 {
        self.ops(service).map(|(_, n)| n).sum()
    }
    pub fn breakdown(&self, service: &str) -> String {
        self.ops(service).map(|(op, n)| format!("{op} {n}")).collect::<Vec<_>>().join(", ")
    }
    /// AWS calls but Secrets Manager's (those are cached per container).
    pub fn aws_calls(&self) -> u64 {
        ["DynamoDB", "Scheduler", "EventBridge"].iter().map(|s| self.service(s)).sum()
    }
    pub fn moto_time(&self) -> Duration {
        self.aws.moto.values().sum()
    }
    pub fn errors(&self) -> String {
        let errors: Vec<String> = self.aws.errors.iter().map(|(k, n)| format!("{k} x{n}")).collect();
        if errors.is_empty() {
            "none".to_owned()
        } else {
            errors.join(", ")
        }
    }
    pub fn add(&mut self, other: &Cost) {
        fn sum<V: Copy + std::ops::AddAssign + Default>(into: &mut BTreeMap<String, V>, from: &BTreeMap<String, V>) {
            for (k, v) in from {
                *into.entry(k.clone()).or_default() += *v;
            }
        }
        sum(&mut self.jumpcloud, &other.jumpcloud);
        sum(&mut self.aws.calls, &other.aws.calls);
        sum(&mut self.aws.moto, &other.aws.moto);
        sum(&mut self.aws.errors, &other.aws.errors);
    }
}

fn minus<V: Copy + Default + PartialEq + std::ops::Sub<Output = V>>(
    after: &BTreeMap<String, V>,
    before: &BTreeMap<String, V>,
) -> BTreeMap<String, V> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), *v - before.get(k).copied().unwrap_or_default()))
        .filter(|(_, d)| *d != V::default())
        .collect()
}

/// Reads the relay's and the simulators' counters.
pub struct Meter<'a> {
    pub proxy: &'a CountingProxy,
    pub sims: Vec<SimHandle>,
}

pub struct Mark {
    pub jumpcloud: BTreeMap<String, u64>,
    pub aws: Tally,
}

impl Meter<'_> {
    pub fn mark(&self) -> Mark {
        let mut jumpcloud = BTreeMap::new();
        for sim in &self.sims {
            for (k, n) in sim.request_counts() {
                *jumpcloud.entry(k).or_default() += n;
            }
        }
        Mark { jumpcloud, aws: self.proxy.tally() }
    }
    pub fn since(&self, mark: &Mark) -> Cost {
        let now = self.mark();
        Cost {
            jumpcloud: minus(&now.jumpcloud, &mark.jumpcloud),
            aws: Tally {
                calls: minus(&now.aws.calls, &mark.aws.calls),
                moto: minus(&now.aws.moto, &mark.aws.moto),
                errors: minus(&now.aws.errors, &mark.aws.errors),
            },
        }
    }
    pub async fn metered<T>(&self, work: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<(T, Cost)> {
        let mark = self.mark();
        let out = work.await?;
        Ok((out, self.since(&mark)))
    }
}

/// The fewest calls one can argue for while keeping the invariants (conditional writes for
/// concurrency, an audit record in the same write as each change), and why.
pub struct Minimum {
    pub jumpcloud: u64,
    pub dynamodb: u64,
    pub scheduler: u64,
    pub events: u64,
    pub why: &'static str,
}

impl Minimum {
    pub fn total(&self) -> u64 {
        self.jumpcloud + self.dynamodb + self.scheduler + self.events
    }
}

pub const GRANT_MIN: Minimum = Minimum {
    jumpcloud: 3,
    dynamodb: 4,
    scheduler: 1,
    events: 1,
    why: "JumpCloud: find the user (id; suspended?), find the group (id; dynamic?), add = 3. DynamoDB: lock the \
          lease (conditional update returning holders and `preexisting`); record the grant pending, join the \
          lease and audit in one transaction before JumpCloud is touched (a crash then leaves a grant the sweep \
          finds); activate, release the lock and audit in one transaction = 3 writes; and 1 read of the audit chain's \
          head before the activation (its record names the hash of the one before; the new grant's first \
          record needs none). No other read: the handler holds the grant it wrote, and the transaction's \
          conditions check what a read would. \
          1 CreateSchedule (the expiry), 1 PutEvents (Grant Created).",
};

pub fn cell(actual: u64, minimum: u64, breakdown: &str) -> String {
    let flag = if actual > minimum { " **>min**" } else { "" };
    if breakdown.is_empty() {
        format!("{actual} (min {minimum}){flag}")
    } else {
        format!("{actual} (min {minimum}){flag}: {breakdown}")
    }
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The account of the ARNs the functions are configured with (moto's default).
pub const ACCOUNT: &str = "123456789012";

/// The functions' settings beyond the stack's (table, secret tag, JumpCloud URL).
pub fn function_settings(schedule_group: &str, bus: &str, grant: bool) -> Vec<(String, String)> {
    let mut vars = vec![
        ("SCHEDULE_GROUP", schedule_group.to_owned()),
        ("EVENT_BUS_NAME", bus.to_owned()),
        ("REQUESTABLE_GROUPS", "prod-*".to_owned()),
        // The simulator answers at once; the client's own limits are not what is measured here.
        ("JUMPCLOUD_REQUESTS_PER_SECOND", "10000".to_owned()),
        ("JUMPCLOUD_MAX_CONCURRENCY", "64".to_owned()),
    ];
    if grant {
        vars.extend([
            ("REVOKE_FUNCTION_ARN", format!("arn:aws:lambda:us-east-1:{ACCOUNT}:function:jit-access-revoke")),
            ("SCHEDULER_ROLE_ARN", format!("arn:aws:iam::{ACCOUNT}:role/jit-access-scheduler")),
            ("SCHEDULE_DLQ_ARN", format!("arn:aws:sqs:us-east-1:{ACCOUNT}:jit-access-schedule-dlq")),
            ("JUMPCLOUD_RETRY_BUDGET", "20s".to_owned()),
        ]);
    }
    vars.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

// ---------------------------------------------------------------------------------------------
// A simulator in a child process, so that a benchmark's memory is its own.

/// The child's side: serves `org` with `latency_ms` per request, prints its URL on stdout, and
/// serves until the parent closes its stdin.
pub async fn serve_until_stdin_closes(org: jumpcloud_sim::Org, latency_ms: u64) -> anyhow::Result<()> {
    let sim = jumpcloud_sim::Simulator::start(vec![org]).await?;
    sim.handle().set_faults(jumpcloud_sim::Faults { latency_ms, ..jumpcloud_sim::Faults::default() });
    println!("{}", sim.url());
    tokio::task::spawn_blocking(|| std::io::stdin().lines().count()).await?;
    Ok(())
}

/// The generated organization a benchmark's simulator child serves (its hidden `serve-sim`
/// subcommand): given in full by the parent, [`SimOrg::args`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct SimOrg {
    #[arg(long)]
    pub users: usize,
    #[arg(long)]
    pub groups: usize,
    #[arg(long)]
    pub avg_members: usize,
    #[arg(long)]
    pub latency_ms: u64,
}

impl SimOrg {
    /// The arguments that make this binary serve the organization (`serve-sim ...`).
    pub fn args(&self) -> Vec<String> {
        let numbers = [
            ("--users", self.users as u64),
            ("--groups", self.groups as u64),
            ("--avg-members", self.avg_members as u64),
            ("--latency-ms", self.latency_ms),
        ];
        let mut args = vec!["serve-sim".to_owned()];
        for (flag, value) in numbers {
            args.extend([flag.to_owned(), value.to_string()]);
        }
        args
    }
}

/// A count of at least `min`, said plainly when it is not: `#[arg(value_parser = at_least(1usize))]`,
/// `min` typed as the field is (clap checks the parsed type only when the flag is read).
pub fn at_least<T>(min: T) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy + Send + Sync + 'static,
    T::Err: std::fmt::Display,
{
    move |value: &str| match value.parse::<T>() {
        Ok(n) if n >= min => Ok(n),
        Ok(_) => Err(format!("must be at least {min}")),
        Err(e) => Err(e.to_string()),
    }
}

/// The parent's side: runs this binary with `args` (which make it call
/// [`serve_until_stdin_closes`]) and reads the simulator's URL. Dropping the child's stdin (or
/// the child) stops it.
pub fn spawn_simulator(args: &[String]) -> anyhow::Result<(std::process::Child, String)> {
    use anyhow::Context;
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut url = String::new();
    BufReader::new(child.stdout.take().context("child stdout")?).read_line(&mut url)?;
    Ok((child, url.trim().to_owned()))
}

/// A benchmark's JumpCloud client: `concurrency` in flight, `rps` a second, patient timeouts.
pub fn jumpcloud_client(
    url: &str,
    key: &str,
    concurrency: usize,
    rps: u32,
) -> jit_shared::adapters::jumpcloud::JumpCloudClient {
    let limits = jit_shared::config::JumpCloudLimits {
        max_concurrency: concurrency,
        requests_per_second: rps,
        request_timeout: Duration::from_secs(30),
        retry_budget: Duration::from_secs(60),
        ..jit_shared::config::JumpCloudLimits::default()
    };
    let credentials =
        jit_shared::credentials::Credentials { token: jit_shared::credentials::ApiKey::new(key), org_id: None };
    jit_shared::adapters::jumpcloud::JumpCloudClient::with_credentials(reqwest::Client::new(), url, credentials, limits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// A child's subcommand, as the benchmarks declare theirs.
    #[derive(Parser)]
    struct Child {
        #[command(subcommand)]
        serve: Serve,
    }

    #[derive(clap::Subcommand)]
    enum Serve {
        ServeSim(SimOrg),
    }

    #[test]
    fn a_simulator_child_parses_the_organization_its_parent_gives() {
        let org = SimOrg { users: 1_000_000, groups: 50_000, avg_members: 80, latency_ms: 20 };
        let args = std::iter::once("bench".to_owned()).chain(org.args());
        let Serve::ServeSim(parsed) = Child::try_parse_from(args).expect("parses").serve;
        assert_eq!(parsed, org);
    }

    #[test]
    fn counts_below_their_least_are_refused_plainly() {
        let positive = at_least(1usize);
        assert_eq!(positive("3"), Ok(3));
        assert_eq!(positive("1"), Ok(1));
        assert_eq!(positive("0"), Err("must be at least 1".to_owned()));
        assert!(positive("x").is_err());
        assert_eq!(at_least(2u32)("1"), Err("must be at least 2".to_owned()));
    }
}

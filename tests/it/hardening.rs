//! Delivery hardening, end to end: Standard Webhooks signatures (and their rotation), the SSRF
//! guard, HTTP semantics (no redirects, total timeout, capped body, `Retry-After`), and Redis
//! passwords, ACL users and TLS, with secrets and passwords kept out of every log.
//!
//! Receivers that must misbehave in ways the harness receiver does not (redirects, trickling or
//! endless bodies, `Retry-After`) are [`ScriptedReceiver`]s: a plain HTTP/1.1 server on a
//! socket, scripted per request.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald_producer::verify::{Verifier, VerifyError};
use herald_producer::Secret;
use serde_json::{json, Value};

use crate::support::process::poll_until;
use crate::support::receiver::{self, Receiver};
use crate::support::{redis_and_herald, Herald, RedisServer, SAFETY_NET};

/// The first published Standard Webhooks test secret.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// How often a test asks `herald job get` for a state no event announces.
const POLL: Duration = Duration::from_millis(50);

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// `herald job get` until `done` holds for the job's JSON.
fn wait_for_job(herald: &Herald, job: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    poll_until(what, SAFETY_NET, POLL, || match herald.job(job) {
        Some(j) if done(&j) => Ok(j),
        other => Err(format!("{other:?}")),
    })
}

fn last_error(job: &Value) -> &str {
    job["last_error"].as_str().unwrap_or_default()
}

// ----- signatures -----

fn verifier(secret: &str) -> Verifier {
    Verifier::new(secret).expect("a valid secret")
}

fn verify(v: &Verifier, r: &receiver::Request) -> Result<(), VerifyError> {
    v.verify(|name| r.header(name), &r.body)
}

#[test]
fn deliveries_are_signed_and_a_rotation_signs_with_both_secrets_until_its_grace_ends() {
    let (_redis, herald) = redis_and_herald("it-hard-sign");
    let rx = Receiver::start(receiver::always(200));
    let url = format!("{}/hooks/dash-1", rx.url());
    herald.ok(&[
        "endpoint", "set", "dash-1", "--url", &url, "--secret", SECRET,
    ]);
    let worker = herald.spawn_worker(&[]);

    let first = herald.enqueue("dash-1", &json!({"n": 1}));
    let requests = rx.wait_for(1, SAFETY_NET);
    let r = &requests[0];
    assert_eq!(r.webhook_id(), format!("msg_{first}"));
    let timestamp: i64 = r.header("webhook-timestamp").unwrap().parse().unwrap();
    assert!(
        (timestamp - unix_ms(SystemTime::now()) / 1000).abs() < 300,
        "webhook-timestamp {timestamp} is not now"
    );
    let signature = r.header("webhook-signature").expect("a signed delivery");
    assert_eq!(signature.split(' ').count(), 1, "{signature}");
    assert_eq!(verify(&verifier(SECRET), r), Ok(()));

    // Rotate: the new secret is printed once; the old one keeps signing for the grace period.
    let out = herald.ok(&["endpoint", "rotate-secret", "dash-1", "--grace", "10s"]);
    let new_secret = out.stdout.trim().to_owned();
    assert!(Secret::parse(&new_secret).is_ok(), "{out}");

    // Due at once: attempted well within the 10 s grace.
    herald.enqueue("dash-1", &json!({"n": 2}));
    // Due after the grace: the old secret no longer signs.
    let out = herald.run_stdin(
        &["enqueue", "dash-1", "-", "--delay", "11s"],
        json!({"n": 3}).to_string(),
    );
    out.assert_success();
    let requests = rx.wait_for(3, SAFETY_NET);
    herald.wait_until_drained(SAFETY_NET);
    worker.stop(SAFETY_NET);

    let (during, after) = (&requests[1], &requests[2]);
    assert_eq!(during.json(), json!({"n": 2}));
    let sigs = during.header("webhook-signature").unwrap();
    assert_eq!(sigs.split(' ').count(), 2, "during the grace: {sigs}");
    assert_eq!(verify(&verifier(SECRET), during), Ok(()));
    assert_eq!(verify(&verifier(&new_secret), during), Ok(()));

    assert_eq!(after.json(), json!({"n": 3}));
    let sigs = after.header("webhook-signature").unwrap();
    assert_eq!(sigs.split(' ').count(), 1, "after the grace: {sigs}");
    assert_eq!(verify(&verifier(&new_secret), after), Ok(()));
    assert_eq!(verify(&verifier(SECRET), after), Err(VerifyError::NoMatch));

    // Every attempt is signed for its own time; a tampered body does not verify.
    let mut tampered = after.clone();
    tampered.body = br#"{"n": 4}"#.to_vec();
    assert_eq!(
        verify(&verifier(&new_secret), &tampered),
        Err(VerifyError::NoMatch)
    );
}

#[test]
fn an_endpoint_without_a_secret_gets_unsigned_deliveries_with_a_timestamp() {
    let (_redis, herald) = redis_and_herald("it-hard-unsigned");
    let rx = Receiver::start(receiver::always(200));
    herald.set_endpoint("dash-1", &format!("{}/h", rx.url()));
    herald.enqueue("dash-1", &json!({"n": 1}));
    let worker = herald.spawn_worker(&[]);
    let requests = rx.wait_for(1, SAFETY_NET);
    worker.stop(SAFETY_NET);
    assert!(requests[0].header("webhook-signature").is_none());
    assert!(requests[0].header("webhook-timestamp").is_some());
}

// ----- the SSRF guard -----

#[test]
fn a_name_resolving_to_loopback_is_blocked_when_no_range_is_allowed() {
    let (_redis, herald) = redis_and_herald("it-hard-ssrf-name");
    let rx = Receiver::start(receiver::always(200));
    let port = rx.url().rsplit(':').next().unwrap().to_owned();
    herald.set_endpoint("dash-1", &format!("http://localhost:{port}/hook"));
    let job = herald.enqueue("dash-1", &json!({"n": 1}));

    let worker = herald.spawn_worker(&[
        ("HERALD_ALLOW_TARGETS", ""),
        ("HERALD_RETRY_SCHEDULE", "1h"),
    ]);
    let got = wait_for_job(&herald, &job, "the blocked attempt", |j| {
        !last_error(j).is_empty()
    });
    let blocked_metric = worker_metric_line(&worker, "outcome=\"blocked\"");
    worker.stop(SAFETY_NET);

    assert!(
        last_error(&got).starts_with("blocked") && last_error(&got).contains("SSRF guard"),
        "job: {got}"
    );
    assert_eq!(got["state"], "scheduled", "job: {got}");
    assert_eq!(rx.count(), 0, "the blocked receiver got a request");
    assert!(blocked_metric.is_some(), "no blocked outcome in /metrics");
}

/// The first line of the worker's `/metrics` page that contains `needle`.
fn worker_metric_line(worker: &crate::support::herald::Worker, needle: &str) -> Option<String> {
    let addr = worker.metrics_addr()?;
    let (_, body) = crate::support::http_get(addr, "/metrics");
    body.lines()
        .find(|l| l.starts_with("herald_deliveries_total") && l.contains(needle))
        .map(str::to_owned)
}

#[test]
fn an_ipv4_mapped_ipv6_literal_is_blocked_and_allowed_when_listed() {
    let (_redis, herald) = redis_and_herald("it-hard-ssrf-mapped");
    let rx = Receiver::start(receiver::always(200));
    let port = rx.url().rsplit(':').next().unwrap().to_owned();
    herald.set_endpoint("dash-1", &format!("http://[::ffff:127.0.0.1]:{port}/hook"));

    // Nothing allowed: refused before any connection.
    let blocked = herald.enqueue("dash-1", &json!({"n": 1}));
    let worker = herald.spawn_worker(&[
        ("HERALD_ALLOW_TARGETS", ""),
        ("HERALD_RETRY_SCHEDULE", "1h"),
    ]);
    let got = wait_for_job(&herald, &blocked, "the blocked attempt", |j| {
        !last_error(j).is_empty()
    });
    worker.stop(SAFETY_NET);
    let error = last_error(&got);
    assert!(
        error.starts_with("blocked") && error.contains("127.0.0.1"),
        "job: {got}"
    );
    assert_eq!(rx.count(), 0);

    // 127.0.0.0/8 listed: the mapped address of a listed IPv4 range gets through.
    let delivered = herald.enqueue("dash-1", &json!({"n": 2}));
    let worker = herald.spawn_worker(&[
        ("HERALD_ALLOW_TARGETS", "127.0.0.0/8"),
        ("HERALD_RETRY_SCHEDULE", "1h"),
    ]);
    let requests = rx.wait_for(1, SAFETY_NET);
    worker.stop(SAFETY_NET);
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].webhook_id(), format!("msg_{delivered}"));
    assert_eq!(
        herald.job(&delivered),
        None,
        "the delivered job is still known"
    );
}

#[test]
fn an_invalid_allow_list_is_refused_naming_the_key() {
    let (_redis, herald) = redis_and_herald("it-hard-allow-bad");
    let worker = herald.spawn_worker_unchecked(&[
        ("HERALD_METRICS_ADDR", "127.0.0.1:0"),
        ("HERALD_ALLOW_TARGETS", "127.0.0.0/8,10.0.0.0/40"),
    ]);
    let status = worker.wait(SAFETY_NET);
    assert_eq!(status.code(), Some(2), "output:\n{}", worker.output());
    assert!(
        worker.stderr().contains("HERALD_ALLOW_TARGETS"),
        "{}",
        worker.output()
    );
}

// ----- HTTP semantics -----

#[test]
fn a_redirect_is_a_failed_attempt_and_is_not_followed() {
    let (_redis, herald) = redis_and_herald("it-hard-redirect");
    let elsewhere = Receiver::start(receiver::always(200));
    let location = format!("{}/elsewhere", elsewhere.url());
    let rx = ScriptedReceiver::start(move |_| {
        Script::Bytes(
            format!(
                "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\
                 Connection: close\r\n\r\n"
            )
            .into_bytes(),
        )
    });
    herald.set_endpoint("dash-1", &rx.url("/hook"));
    let job = herald.enqueue("dash-1", &json!({"n": 1}));
    let worker = herald.spawn_worker(&[("HERALD_RETRY_SCHEDULE", "1h")]);
    rx.wait_for_requests(1);
    let got = wait_for_job(&herald, &job, "the failed attempt", |j| {
        !last_error(j).is_empty()
    });
    worker.stop(SAFETY_NET);
    assert!(last_error(&got).contains("302"), "job: {got}");
    assert_eq!(got["state"], "scheduled", "job: {got}");
    assert_eq!(elsewhere.count(), 0, "the redirect was followed");
}

#[test]
fn a_body_trickling_forever_is_cut_off_by_the_total_timeout() {
    let (_redis, herald) = redis_and_herald("it-hard-trickle");
    let rx = ScriptedReceiver::start(|_| {
        Script::Trickle(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n".to_vec())
    });
    herald.set_endpoint("dash-1", &rx.url("/hook"));
    herald.enqueue("dash-1", &json!({"n": 1}));
    let worker = herald.spawn_worker(&[("HERALD_REQUEST_TIMEOUT", "1s")]);
    // The trickle never ends by itself: the job settles only because the worker hung up.
    herald.wait_until_drained(SAFETY_NET);
    let finished = rx.wait_for_finished(1);
    worker.stop(SAFETY_NET);
    assert!(finished[0].peer_closed, "{finished:?}");
    assert_eq!(rx.requests().len(), 1, "the 2xx answer counts: no retry");
}

#[test]
fn a_huge_response_body_is_not_read_to_the_end() {
    const HUNDRED_MB: u64 = 100 * 1024 * 1024;
    let (_redis, herald) = redis_and_herald("it-hard-huge");
    let rx = ScriptedReceiver::start(|_| Script::Flood {
        head: format!("HTTP/1.1 200 OK\r\nContent-Length: {HUNDRED_MB}\r\n\r\n").into_bytes(),
        limit: HUNDRED_MB,
    });
    herald.set_endpoint("dash-1", &rx.url("/hook"));
    herald.enqueue("dash-1", &json!({"n": 1}));
    let worker = herald.spawn_worker(&[]);
    herald.wait_until_drained(SAFETY_NET);
    let finished = rx.wait_for_finished(1);
    worker.stop(SAFETY_NET);
    // The worker read its 64 KiB and hung up; what the receiver managed to write beyond that
    // sits in the kernel's socket buffers, far from 100 MB.
    assert!(finished[0].peer_closed, "{finished:?}");
    assert!(
        finished[0].written < HUNDRED_MB,
        "the whole body was sent: {finished:?}"
    );
}

#[test]
fn retry_after_delays_the_retry() {
    let (_redis, herald) = redis_and_herald("it-hard-retry-after");
    let rx = ScriptedReceiver::start(|_| {
        Script::Bytes(
            b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 120\r\nContent-Length: 0\r\n\
              Connection: close\r\n\r\n"
                .to_vec(),
        )
    });
    herald.set_endpoint("dash-1", &rx.url("/hook"));
    let job = herald.enqueue("dash-1", &json!({"n": 1}));
    // The schedule alone would retry after 100 ms; its longest delay (10 min) caps Retry-After.
    let worker = herald.spawn_worker(&[("HERALD_RETRY_SCHEDULE", "100ms,10m")]);
    let requests = rx.wait_for_requests(1);
    let got = wait_for_job(&herald, &job, "the retry to be scheduled", |j| {
        !last_error(j).is_empty()
    });
    worker.stop(SAFETY_NET);
    let next = got["next_attempt_at_ms"]
        .as_i64()
        .expect("next_attempt_at_ms");
    let asked_at = unix_ms(requests[0].received_at);
    assert!(
        next - asked_at >= 119_000,
        "the retry is due {} ms after the 503, Retry-After asked for 120 s: {got}",
        next - asked_at
    );
    assert_eq!(rx.requests().len(), 1);
}

// ----- Redis passwords, ACL users and TLS -----

const REDIS_PASSWORD: &str = "pw-Zq81-default";
const ACL_PASSWORD: &str = "pw-Kx52-herald";

fn redis_with_passwords() -> RedisServer {
    RedisServer::start_with(&redis_auth_args(), false)
}

/// A default user with a password, and the least-privileged `herald` user of docs/security.md
/// for namespaces starting with `it-hard-`.
fn redis_auth_args() -> Vec<String> {
    [
        "--requirepass",
        REDIS_PASSWORD,
        "--user",
        "herald",
        "on",
        &format!(">{ACL_PASSWORD}"),
        "~it-hard-*",
        "&*",
        "+@all",
        "-@dangerous",
        "+info",
        "+config|get",
    ]
    .map(str::to_owned)
    .to_vec()
}

#[test]
fn a_wrong_redis_password_fails_cleanly_without_showing_it() {
    let redis = redis_with_passwords();
    let wrong = "pw-Wrong-9931";
    for url in [
        format!("redis://:{wrong}@127.0.0.1:{}", redis.port()),
        format!("redis://herald:{wrong}@127.0.0.1:{}", redis.port()),
    ] {
        let herald = Herald::new(&url, "it-hard-wrongpw");
        let out = herald.run(&["stats"]);
        let stderr = out.assert_failure();
        assert_eq!(out.status.code(), Some(1), "{out}");
        assert!(stderr.contains("credentials"), "{out}");
        assert!(!stderr.contains(wrong), "the password is shown:\n{out}");

        let worker = herald.spawn_worker_unchecked(&[
            ("HERALD_METRICS_ADDR", "127.0.0.1:0"),
            ("RUST_LOG", "trace"),
        ]);
        worker.wait_for_line(SAFETY_NET, |l| l.contains("waiting for Redis"));
        worker.stop(SAFETY_NET);
        let output = worker.output();
        assert!(!output.contains(wrong), "the password is logged:\n{output}");
    }
    // No password at all.
    let herald = Herald::new(&redis.url(), "it-hard-nopw");
    let out = herald.run(&["stats"]);
    assert!(out.assert_failure().contains("credentials"), "{out}");
}

#[test]
fn redis_acl_users_work_and_neither_password_nor_secret_is_logged() {
    let redis = redis_with_passwords();
    let url = format!("redis://herald:{ACL_PASSWORD}@127.0.0.1:{}", redis.port());
    let herald = Herald::new(&url, "it-hard-acl").with_env("RUST_LOG", "trace");
    let rx = Receiver::start(receiver::always(200));
    let set = herald.ok(&[
        "endpoint",
        "set",
        "dash-1",
        "--url",
        &format!("{}/h", rx.url()),
        "--secret",
        SECRET,
    ]);
    let get = herald.ok(&["endpoint", "get", "dash-1", "--json"]);
    herald.enqueue("dash-1", &json!({"n": 1}));
    let worker = herald.spawn_worker(&[]);
    let requests = rx.wait_for(1, SAFETY_NET);
    herald.wait_until_drained(SAFETY_NET);
    worker.stop(SAFETY_NET);
    assert_eq!(verify(&verifier(SECRET), &requests[0]), Ok(()));

    let key = SECRET.trim_start_matches("whsec_");
    for (what, text) in [
        ("worker output", worker.output()),
        ("endpoint set output", set.to_string()),
        ("endpoint get output", get.to_string()),
    ] {
        assert!(
            !text.contains(ACL_PASSWORD),
            "{what} shows the password:\n{text}"
        );
        assert!(!text.contains(key), "{what} shows the secret:\n{text}");
    }
}

/// A self-signed certificate for 127.0.0.1 and its key, as PEM files in `dir`.
fn certificate_files(dir: &std::path::Path) -> (String, String) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let cert = dir.join("redis.crt");
    let key = dir.join("redis.key");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    (
        cert.to_string_lossy().into_owned(),
        key.to_string_lossy().into_owned(),
    )
}

#[test]
fn rediss_urls_speak_tls_and_an_untrusted_certificate_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate_files(dir.path());
    let mut args = redis_auth_args();
    args.extend(
        [
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &cert,
            "--tls-auth-clients",
            "no",
        ]
        .map(str::to_owned),
    );
    let redis = RedisServer::start_with(&args, true);
    let base = format!("rediss://herald:{ACL_PASSWORD}@127.0.0.1:{}", redis.port());

    // The shipped trust store (webpki roots) does not know a self-signed certificate.
    let out = Herald::new(&base, "it-hard-tls").run(&["stats"]);
    let stderr = out.assert_failure();
    assert!(stderr.contains("certificate"), "{out}");
    assert!(!stderr.contains(ACL_PASSWORD), "{out}");

    // `#insecure` (test builds only) skips verification: everything works over TLS.
    let herald = Herald::new(&format!("{base}/#insecure"), "it-hard-tls");
    let rx = Receiver::start(receiver::always(200));
    herald.set_endpoint("dash-1", &format!("{}/h", rx.url()));
    herald.enqueue("dash-1", &json!({"n": 1}));
    let worker = herald.spawn_worker(&[]);
    rx.wait_for(1, SAFETY_NET);
    herald.wait_until_drained(SAFETY_NET);
    worker.stop(SAFETY_NET);
    assert!(!worker.output().contains(ACL_PASSWORD));
}

// ----- the scripted receiver -----

/// What the scripted receiver does with one request, after reading it.
#[derive(Debug, Clone)]
enum Script {
    /// Writes these bytes, then closes.
    Bytes(Vec<u8>),
    /// Writes this head, then one body byte every 20 ms until the client hangs up.
    Trickle(Vec<u8>),
    /// Writes this head, then body bytes as fast as the client takes them, until it hangs up
    /// or `limit` bytes were written.
    Flood { head: Vec<u8>, limit: u64 },
}

/// One request as the scripted receiver saw it.
#[derive(Debug, Clone)]
struct RawRequest {
    received_at: SystemTime,
}

/// How one connection ended.
#[derive(Debug, Clone)]
struct Finished {
    /// Body bytes written after the head.
    written: u64,
    /// Whether the client closed the connection while the receiver was still writing.
    peer_closed: bool,
}

#[derive(Default)]
struct ScriptState {
    requests: Vec<RawRequest>,
    finished: Vec<Finished>,
}

struct ScriptShared {
    state: Mutex<ScriptState>,
    changed: Condvar,
    stop: AtomicBool,
}

impl ScriptShared {
    fn lock(&self) -> MutexGuard<'_, ScriptState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A plain HTTP/1.1 server on 127.0.0.1 answering each request (0, 1, ...) by its script.
struct ScriptedReceiver {
    addr: SocketAddr,
    shared: Arc<ScriptShared>,
}

impl ScriptedReceiver {
    fn start(script: impl Fn(usize) -> Script + Send + Sync + 'static) -> ScriptedReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind scripted receiver");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(ScriptShared {
            state: Mutex::new(ScriptState::default()),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let script = Arc::new(script);
        let accept_shared = shared.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                if accept_shared.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let (shared, script) = (accept_shared.clone(), script.clone());
                thread::spawn(move || serve(stream, &shared, &*script));
            }
        });
        ScriptedReceiver { addr, shared }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn requests(&self) -> Vec<RawRequest> {
        self.shared.lock().requests.clone()
    }

    fn wait_for_requests(&self, n: usize) -> Vec<RawRequest> {
        self.wait(&format!("{n} requests"), |s| s.requests.len() >= n)
            .requests
            .clone()
    }

    fn wait_for_finished(&self, n: usize) -> Vec<Finished> {
        self.wait(&format!("{n} finished connections"), |s| {
            s.finished.len() >= n
        })
        .finished
        .clone()
    }

    fn wait(&self, what: &str, done: impl Fn(&ScriptState) -> bool) -> MutexGuard<'_, ScriptState> {
        let (state, result) = self
            .shared
            .changed
            .wait_timeout_while(self.shared.lock(), SAFETY_NET, |s| !done(s))
            .unwrap_or_else(|e| e.into_inner());
        assert!(
            !result.timed_out(),
            "scripted receiver {}: no {what} within {SAFETY_NET:?}",
            self.addr
        );
        state
    }
}

impl Drop for ScriptedReceiver {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(mut stream: TcpStream, shared: &ScriptShared, script: &(dyn Fn(usize) -> Script + Sync)) {
    if !read_request(&mut stream) || shared.stop.load(Ordering::SeqCst) {
        return;
    }
    let index = {
        let mut state = shared.lock();
        state.requests.push(RawRequest {
            received_at: SystemTime::now(),
        });
        state.requests.len() - 1
    };
    shared.changed.notify_all();
    let finished = match script(index) {
        Script::Bytes(bytes) => {
            let ok = stream.write_all(&bytes).is_ok();
            let _ = stream.shutdown(std::net::Shutdown::Write);
            Finished {
                written: 0,
                peer_closed: !ok,
            }
        }
        Script::Trickle(head) => {
            let mut written = 0;
            let mut peer_closed = stream.write_all(&head).is_err();
            while !peer_closed && !shared.stop.load(Ordering::SeqCst) {
                if stream.write_all(b"x").is_err() {
                    peer_closed = true;
                } else {
                    written += 1;
                    thread::sleep(Duration::from_millis(20));
                }
            }
            Finished {
                written,
                peer_closed,
            }
        }
        Script::Flood { head, limit } => {
            let chunk = [b'x'; 16 * 1024];
            let mut written = 0u64;
            let mut peer_closed = stream.write_all(&head).is_err();
            while !peer_closed && written < limit && !shared.stop.load(Ordering::SeqCst) {
                match stream.write(&chunk) {
                    Ok(0) | Err(_) => peer_closed = true,
                    Ok(n) => written += n as u64,
                }
            }
            Finished {
                written,
                peer_closed,
            }
        }
    };
    shared.lock().finished.push(finished);
    shared.changed.notify_all();
}

/// Reads one request head and its `Content-Length` body; false if the client went away.
fn read_request(stream: &mut TcpStream) -> bool {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        data.extend_from_slice(&buf[..n]);
        let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while data.len() < end + 4 + len {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return false,
                Ok(n) => data.extend_from_slice(&buf[..n]),
            }
        }
        return true;
    }
}

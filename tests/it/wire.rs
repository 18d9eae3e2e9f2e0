//! The wire format from outside Rust: a producer in POSIX shell (`examples/enqueue.sh`, nothing
//! but `redis-cli` and the shipped `enqueue-6.lua`) enqueues jobs that the real worker delivers.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::json;

use crate::support::receiver::{self, Receiver};
use crate::support::{redis_and_herald, SAFETY_NET};

/// Runs `examples/enqueue.sh ENDPOINT -` with `payload` on stdin; returns (exit code, stdout,
/// stderr).
fn shell_enqueue(
    redis_url: &str,
    namespace: &str,
    endpoint: &str,
    payload: &str,
) -> (i32, String, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/enqueue.sh");
    let mut child = Command::new("sh")
        .arg(script)
        .args([endpoint, "-"])
        .env("HERALD_REDIS_URL", redis_url)
        .env("HERALD_NAMESPACE", namespace)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run examples/enqueue.sh");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(payload.as_bytes())
        .expect("write the payload");
    let out = child.wait_with_output().expect("enqueue.sh finishes");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_shell_producer_enqueues_what_the_worker_delivers() {
    let (redis, herald) = redis_and_herald("it-wire");
    let rx = Receiver::start(receiver::always(200));
    herald.set_endpoint("dash-1", &rx.url());
    let payload = json!({"service_name": "Heroku", "current_status": "warn"});

    let (code, job, stderr) =
        shell_enqueue(&redis.url(), "it-wire", "dash-1", &payload.to_string());
    assert_eq!(code, 0, "enqueue.sh failed: {stderr}");
    let seen = herald
        .job(&job)
        .unwrap_or_else(|| panic!("herald does not know job {job}"));
    assert_eq!(seen["endpoint"], "dash-1", "{seen}");

    // An unknown endpoint is the script's code -1: refused with exit 2.
    let (code, _, stderr) = shell_enqueue(&redis.url(), "it-wire", "nobody", "{}");
    assert_eq!(code, 2, "{stderr}");

    let worker = herald.spawn_worker(&[]);
    let got = rx.wait_for(1, SAFETY_NET);
    herald.wait_until_drained(SAFETY_NET);
    worker.stop(SAFETY_NET);
    assert_eq!(got[0].webhook_id(), format!("msg_{job}"));
    assert_eq!(got[0].json(), payload);
}

//! The benchmark's environment: its own Redis (one `redis-server`, never on 6379, or a local
//! Redis Cluster), `herald worker` processes, and what is read from both: Redis `INFO` (summed
//! over a cluster's masters), the jobs left in the store, the commands clients send
//! (`MONITOR`), a process's peak memory.

use std::collections::BTreeMap;
use std::net::TcpListener as StdListener;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::node::Node;

pub fn free_port() -> anyhow::Result<u16> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or_default()
}

/// The benchmark's Redis: one `redis-server` on a free port (never 6379), or a Redis Cluster of
/// several masters without replicas ([`crate::cluster`]); no persistence unless asked for.
/// Every node is killed on drop and its directory removed. What is read from it (`INFO`, the
/// CPU it used, the commands it ran) is summed over the masters.
#[derive(Debug)]
pub struct Redis {
    /// The node, or the cluster's masters.
    nodes: Vec<Node>,
    cluster: bool,
    /// What `HERALD_REDIS_URL` takes: the node's URL, or every master's, comma-separated.
    pub url: String,
}

impl Redis {
    /// One node on a free port; `appendonly` turns on the append-only file with
    /// `appendfsync everysec`.
    pub async fn start(appendonly: bool) -> anyhow::Result<Self> {
        let port = loop {
            let p = free_port()?;
            if p != 6379 {
                break p;
            }
        };
        let node = Node::start(port, appendonly, &[]).await?;
        Ok(Self {
            url: node.url(),
            nodes: vec![node],
            cluster: false,
        })
    }

    /// One node when `masters` is 0, else a Redis Cluster of that many masters.
    pub async fn start_with(masters: usize, appendonly: bool) -> anyhow::Result<Self> {
        if masters == 0 {
            return Self::start(appendonly).await;
        }
        let nodes = crate::cluster::start(masters, appendonly).await?;
        Ok(Self {
            url: nodes.iter().map(Node::url).collect::<Vec<_>>().join(","),
            nodes,
            cluster: true,
        })
    }

    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// Masters (1 for one node).
    pub fn masters(&self) -> usize {
        self.nodes.len()
    }

    /// The process of every master.
    pub fn pids(&self) -> Vec<u32> {
        self.nodes.iter().filter_map(Node::pid).collect()
    }

    /// The environment that points a `herald` process at this Redis.
    pub fn herald_env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![("HERALD_REDIS_URL", self.url.clone())];
        if self.cluster {
            env.push(("HERALD_REDIS_CLUSTER", "true".to_owned()));
        }
        env
    }

    /// A connection for keyed commands and the store's calls: to the node, or a cluster
    /// connection that follows the slot map.
    pub async fn conn(&self) -> anyhow::Result<herald_store::Conn> {
        if self.cluster {
            let urls: Vec<String> = self.nodes.iter().map(Node::url).collect();
            let client = redis::cluster::ClusterClient::new(urls)?;
            Ok(herald_store::Conn::Cluster(
                client.get_async_connection().await?,
            ))
        } else {
            Ok(herald_store::Conn::Node(self.nodes[0].conn().await?))
        }
    }

    /// The master (its index, in the order of [`Redis::url`]) that serves `key`; 0 on one
    /// node. The cluster's slots are split as [`crate::cluster`] split them.
    pub async fn master_of_key(&self, key: &str) -> anyhow::Result<usize> {
        if !self.cluster {
            return Ok(0);
        }
        let mut c = self.nodes[0].conn().await?;
        let slot: u32 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut c)
            .await?;
        Ok(crate::cluster::master_of_slot(slot, self.nodes.len()))
    }

    /// A plain connection to each master, in order.
    pub async fn master_conns(&self) -> anyhow::Result<Vec<redis::aio::MultiplexedConnection>> {
        let mut conns = Vec::new();
        for n in &self.nodes {
            conns.push(n.conn().await?);
        }
        Ok(conns)
    }

    /// One numeric field of an `INFO` section, per master.
    pub async fn info_each(&self, section: &str, field: &str) -> anyhow::Result<Vec<u64>> {
        let mut out = Vec::new();
        for mut c in self.master_conns().await? {
            out.push(info_u64(&mut c, section, field).await?);
        }
        Ok(out)
    }

    /// One numeric field of an `INFO` section, summed over the masters.
    pub async fn info_sum(&self, section: &str, field: &str) -> anyhow::Result<u64> {
        Ok(self.info_each(section, field).await?.iter().sum())
    }

    /// CPU seconds (system + user) each master has used so far, from `INFO cpu`.
    pub async fn used_cpu_each(&self) -> anyhow::Result<Vec<f64>> {
        let mut out = Vec::new();
        for mut c in self.master_conns().await? {
            let cpu = info(&mut c, "cpu").await?;
            let field = |f: &str| -> anyhow::Result<f64> {
                cpu.get(f)
                    .with_context(|| format!("INFO cpu without {f}"))?
                    .parse()
                    .with_context(|| format!("INFO cpu {f} is not a number"))
            };
            out.push(field("used_cpu_sys")? + field("used_cpu_user")?);
        }
        Ok(out)
    }

    /// CPU time the masters' processes have used so far, in seconds, from `/proc`.
    pub fn cpu_seconds(&self) -> f64 {
        self.pids().into_iter().map(|p| cpu_seconds(Some(p))).sum()
    }

    /// `INFO commandstats` summed over the masters.
    pub async fn commandstats(&self) -> anyhow::Result<BTreeMap<String, (u64, u64)>> {
        let mut sum: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for mut c in self.master_conns().await? {
            for (name, (calls, usec)) in commandstats(&mut c).await? {
                let e = sum.entry(name).or_default();
                e.0 += calls;
                e.1 += usec;
            }
        }
        Ok(sum)
    }

    /// [`monitor`] on every master at once, the counts summed.
    pub async fn monitor(
        &self,
        duration: Duration,
    ) -> anyhow::Result<(BTreeMap<String, u64>, BTreeMap<String, u64>)> {
        let each =
            futures::future::try_join_all(self.nodes.iter().map(|n| monitor(n.port, duration)))
                .await?;
        let (mut top, mut lua) = (BTreeMap::new(), BTreeMap::new());
        for (t, l) in each {
            for (name, n) in t {
                *top.entry(name).or_insert(0) += n;
            }
            for (name, n) in l {
                *lua.entry(name).or_insert(0) += n;
            }
        }
        Ok((top, lua))
    }

    /// Jobs still in the store (every record in every shard's `jobs` hash: due, scheduled, in
    /// flight, parked or dead), and the dead ones.
    pub async fn jobs_in_store(&self, namespace: &str, shards: u16) -> anyhow::Result<(u64, u64)> {
        let conn = self.conn().await?;
        // One pipeline per shard: on a cluster, a pipeline's keys must share a slot.
        let counts = futures::future::try_join_all((0..shards).map(|s| {
            let mut conn = conn.clone();
            async move {
                let (jobs, dead): (u64, u64) = redis::pipe()
                    .cmd("HLEN")
                    .arg(format!("{namespace}:v2:{{{namespace}.{s}}}:jobs"))
                    .cmd("ZCARD")
                    .arg(format!("{namespace}:v2:{{{namespace}.{s}}}:dead"))
                    .query_async(&mut conn)
                    .await?;
                anyhow::Ok((jobs, dead))
            }
        }))
        .await?;
        Ok(counts
            .into_iter()
            .fold((0, 0), |(j, d), (sj, sd)| (j + sj, d + sd)))
    }
}

/// One section of Redis `INFO`, as field → value.
pub async fn info(
    conn: &mut redis::aio::MultiplexedConnection,
    section: &str,
) -> anyhow::Result<BTreeMap<String, String>> {
    let text: String = redis::cmd("INFO").arg(section).query_async(conn).await?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect())
}

/// One numeric field of an `INFO` section.
pub async fn info_u64(
    conn: &mut redis::aio::MultiplexedConnection,
    section: &str,
    field: &str,
) -> anyhow::Result<u64> {
    info(conn, section)
        .await?
        .get(field)
        .with_context(|| format!("INFO {section} without {field}"))?
        .parse()
        .with_context(|| format!("INFO {section} {field} is not a number"))
}

/// `INFO commandstats` as command → (calls, usec).
pub async fn commandstats(
    conn: &mut redis::aio::MultiplexedConnection,
) -> anyhow::Result<BTreeMap<String, (u64, u64)>> {
    Ok(info(conn, "commandstats")
        .await?
        .into_iter()
        .filter_map(|(k, v)| {
            let name = k.strip_prefix("cmdstat_")?.to_owned();
            let field = |f: &str| {
                v.split(',')
                    .find_map(|x| x.strip_prefix(f))
                    .and_then(|x| x.parse::<u64>().ok())
            };
            Some((name, (field("calls=")?, field("usec=")?)))
        })
        .collect())
}

/// Counts the commands clients send to Redis for `duration`, by name, through `MONITOR`;
/// commands that scripts run (shown by `MONITOR` as coming from `lua`) are counted apart.
/// Returns (top-level counts, in-script counts).
pub async fn monitor(
    port: u16,
    duration: Duration,
) -> anyhow::Result<(BTreeMap<String, u64>, BTreeMap<String, u64>)> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let (read, mut write) = stream.into_split();
    write.write_all(b"MONITOR\r\n").await?;
    let mut lines = BufReader::new(read).lines();
    let ok = lines.next_line().await?.context("MONITOR: no answer")?;
    anyhow::ensure!(ok == "+OK", "MONITOR answered {ok:?}");
    let (mut top, mut lua) = (BTreeMap::new(), BTreeMap::new());
    let end = Instant::now() + duration;
    loop {
        let line = match tokio::time::timeout_at(end.into(), lines.next_line()).await {
            Err(_) => break,
            Ok(line) => line?.context("MONITOR connection closed")?,
        };
        // +1712345678.123456 [0 127.0.0.1:52345] "BZPOPMIN" "herald:v2:wake" "29.5"
        let Some((origin, rest)) = line.split_once("] ") else {
            continue;
        };
        let name = rest
            .split('"')
            .nth(1)
            .unwrap_or_default()
            .to_ascii_uppercase();
        let map = if origin.ends_with(" lua") {
            &mut lua
        } else {
            &mut top
        };
        *map.entry(name).or_insert(0) += 1;
    }
    Ok((top, lua))
}

/// Numeric fields of `/proc/<pid>/status` (`"VmHWM:"`, `"Threads:"`, …), in the order asked.
pub fn proc_status<const N: usize>(pid: u32, names: [&str; N]) -> anyhow::Result<[u64; N]> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let mut values = [0; N];
    for (value, name) in values.iter_mut().zip(names) {
        *value = status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("/proc/{pid}/status without {name}"))?;
    }
    Ok(values)
}

/// `VmHWM` (peak resident set) and `VmRSS` of a process, in KiB.
pub fn memory_kib(pid: u32) -> anyhow::Result<(u64, u64)> {
    let [hwm, rss] = proc_status(pid, ["VmHWM:", "VmRSS:"])?;
    Ok((hwm, rss))
}

/// CPU time (user + system) a process has used so far, in seconds; 0 when unknown.
pub fn cpu_seconds(pid: Option<u32>) -> f64 {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let Ok(stat) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    // The fields after the command name, which is in parentheses and may hold spaces.
    let Some((_, rest)) = stat.rsplit_once(") ") else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name and state.
    let ticks: u64 = fields
        .get(11..13)
        .into_iter()
        .flatten()
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    ticks as f64 / 100.0
}

/// The machine's CPU time so far, from `/proc/stat`, in ticks (1/100 s).
#[derive(Debug, Clone, Copy, Default)]
pub struct MachineTicks {
    /// user, nice, system, irq, softirq: time some process or the kernel ran.
    pub busy: u64,
    /// Time the hypervisor gave this machine's CPUs to someone else.
    pub steal: u64,
    pub all: u64,
}

pub fn machine_ticks() -> MachineTicks {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return MachineTicks::default();
    };
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    MachineTicks {
        busy: at(0) + at(1) + at(2) + at(5) + at(6),
        steal: at(7),
        all: (0..8).map(at).sum(),
    }
}

/// How much of the machine was not ours during a measurement: the share of CPU time the
/// hypervisor stole, and the share other processes used (the machine's busy time minus
/// `ours`, the CPU seconds of the benchmark's own processes over the same span).
pub fn noise_since(before: MachineTicks, ours: f64) -> serde_json::Value {
    let now = machine_ticks();
    let all = now.all.saturating_sub(before.all).max(1) as f64;
    let steal = now.steal.saturating_sub(before.steal) as f64 / all;
    let busy = now.busy.saturating_sub(before.busy) as f64 / 100.0;
    let other = ((busy - ours) / (all / 100.0)).max(0.0);
    serde_json::json!({
        "cpu_steal_share": (steal * 1000.0).round() / 1000.0,
        "other_processes_cpu_share": (other * 1000.0).round() / 1000.0,
    })
}

/// `herald worker` processes; killed on drop.
#[derive(Debug)]
pub struct Fleet {
    children: Vec<tokio::process::Child>,
}

impl Fleet {
    /// Starts `n` workers at once against `redis` (one node or a cluster), each with
    /// `HERALD_ALLOW_TARGETS=127.0.0.0/8` (the receiver is on loopback), a metrics server on a
    /// free port of `127.0.0.1` (as deployed workers have one: one of them samples the store for
    /// it), and `env` on top; then waits until each says it is ready.
    pub async fn start(
        herald: &Path,
        redis: &Redis,
        n: usize,
        env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        Self::start_each(herald, redis, &vec![env.to_vec(); n]).await
    }

    /// As [`Fleet::start`], each worker serving `/metrics` on `127.0.0.1` at a free port of its
    /// own; returns the ports in the workers' order.
    pub async fn start_with_metrics(
        herald: &Path,
        redis: &Redis,
        n: usize,
        env: &[(&str, String)],
    ) -> anyhow::Result<(Self, Vec<u16>)> {
        let ports = (0..n)
            .map(|_| free_port())
            .collect::<anyhow::Result<Vec<_>>>()?;
        let envs: Vec<Vec<(&str, String)>> = ports
            .iter()
            .map(|p| {
                let mut e = env.to_vec();
                e.push(("HERALD_METRICS_ADDR", format!("127.0.0.1:{p}")));
                e
            })
            .collect();
        Ok((Self::start_each(herald, redis, &envs).await?, ports))
    }

    /// One worker per element of `envs`, each with that environment on top of the defaults.
    async fn start_each(
        herald: &Path,
        redis: &Redis,
        envs: &[Vec<(&str, String)>],
    ) -> anyhow::Result<Self> {
        let mut children = Vec::new();
        let mut outputs = Vec::new();
        for env in envs {
            let mut cmd = tokio::process::Command::new(herald);
            cmd.arg("worker");
            for (k, v) in redis.herald_env() {
                cmd.env(k, v);
            }
            cmd.env("HERALD_METRICS_ADDR", "127.0.0.1:0")
                .env("HERALD_ALLOW_TARGETS", "127.0.0.0/8")
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .kill_on_drop(true);
            for (k, v) in env {
                cmd.env(k, v);
            }
            let mut child = cmd
                .spawn()
                .with_context(|| format!("starting {} worker", herald.display()))?;
            outputs.push(BufReader::new(child.stderr.take().expect("piped")).lines());
            children.push(child);
        }
        for mut lines in outputs {
            let mut seen = Vec::new();
            loop {
                let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
                    .await
                    .context("a worker did not become ready within 30 s")??
                    .with_context(|| {
                        format!("a worker exited before it was ready: {}", seen.join("\n"))
                    })?;
                if line.contains("herald worker ready") {
                    break;
                }
                seen.push(line);
            }
            // Keep reading, so that the worker never blocks on a full pipe; show problems.
            tokio::spawn(async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    // The bench's Redis keeps nothing on purpose, and the isolation scenario's
                    // hanging endpoint and the outage scenario's bad ones fail on purpose;
                    // every other warning shows.
                    let expected = line.contains("Redis has no persistence")
                        || line.contains("endpoint_id=hanging")
                        || line.contains("endpoint_id=bad-");
                    if (line.contains("WARN") || line.contains("ERROR")) && !expected {
                        eprintln!("worker: {line}");
                    }
                }
            });
        }
        Ok(Self { children })
    }

    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().filter_map(|c| c.id()).collect()
    }

    /// Peak resident set of each worker so far, in KiB.
    pub fn peak_rss_kib(&self) -> Vec<u64> {
        self.pids()
            .into_iter()
            .filter_map(|pid| memory_kib(pid).ok().map(|(hwm, _)| hwm))
            .collect()
    }

    pub async fn stop(mut self) {
        for c in &mut self.children {
            let _ = c.kill().await;
        }
    }
}

/// A `herald serve` process (the API), killed on drop.
pub struct Serve {
    pub child: tokio::process::Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
}

impl Serve {
    /// Starts `herald serve` on a free port over `redis` (namespace `namespace`, `shards`
    /// shards), accepting the hashed token `hashed`, and waits until it answers `/healthz`.
    /// Its request log is written as in production (`RUST_LOG=info`), then dropped.
    pub async fn start(
        herald: &Path,
        redis: &Redis,
        namespace: &str,
        shards: u16,
        hashed: &str,
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let child = tokio::process::Command::new(herald)
            .arg("serve")
            .envs(redis.herald_env())
            .env("HERALD_NAMESPACE", namespace)
            .env("HERALD_SHARDS", shards.to_string())
            .env("HERALD_API_TOKENS", hashed)
            .env("HERALD_API_ADDR", format!("127.0.0.1:{port}"))
            .env("HERALD_ALLOW_TARGETS", "127.0.0.0/8")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting herald serve")?;
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::builder().no_proxy().build()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while client.get(format!("{base}/healthz")).send().await.is_err() {
            anyhow::ensure!(Instant::now() < deadline, "herald serve did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self { child, base })
    }
}

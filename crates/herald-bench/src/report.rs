//! The readable side of a result: one row per figure, next to the target of issue 6 (or the
//! aim of issue 2) and whether it was met.

use serde_json::Value;

/// One line of the summary.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    pub figure: String,
    pub measured: String,
    pub target: String,
    /// `Some(true)` met, `Some(false)` missed, `None` no target.
    pub met: Option<bool>,
    /// Share of the machine's CPU time others had during the measurement (stolen by the
    /// hypervisor, or used by other processes): the figure's noise.
    pub others_cpu_share: Option<f64>,
}

fn row(figure: impl Into<String>, measured: String, target: &str, met: Option<bool>) -> Row {
    Row {
        figure: figure.into(),
        measured,
        target: target.into(),
        met,
        others_cpu_share: None,
    }
}

/// The noise of a result with a `noise` object: steal plus other processes' share.
fn noise(v: &Value) -> Option<f64> {
    let n = v.get("noise")?;
    Some(n["cpu_steal_share"].as_f64()? + n["other_processes_cpu_share"].as_f64()?)
}

fn with_noise(mut r: Row, n: Option<f64>) -> Row {
    r.others_cpu_share = n;
    r
}

/// ", on N masters" for a result measured on a Redis Cluster; nothing on one node.
fn on_cluster(v: &Value) -> String {
    if v["redis_cluster"].as_bool() == Some(true) {
        format!(", on {} masters", v["redis_masters"])
    } else {
        String::new()
    }
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// Thousands separated by commas, no decimals.
fn n(x: f64) -> String {
    if !x.is_finite() {
        return "?".into();
    }
    let s = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if x < 0.0 {
        format!("-{out}")
    } else {
        out
    }
}

/// The rows for whatever scenarios `results` holds (keyed by scenario name).
pub fn summary(results: &Value) -> Vec<Row> {
    let mut rows = Vec::new();
    if let Some(t) = results.get("throughput") {
        let c = &t["ceiling"];
        rows.push(with_noise(
            row(
                format!("ceiling: bare reqwest loop, {} in flight", c["concurrency"]),
                format!("{} req/s", n(f(&c["requests_per_s"]))),
                "",
                None,
            ),
            noise(c),
        ));
        for r in t["runs"].as_array().into_iter().flatten() {
            let rate = f(&r["deliveries_per_s"]);
            let ratio = f(&r["ratio_to_ceiling"]);
            rows.push(with_noise(
                row(
                    format!(
                        "end-to-end, {} worker(s), {} jobs{}",
                        r["workers"],
                        n(f(&r["jobs"])),
                        on_cluster(r)
                    ),
                    format!("{} /s ({ratio:.2} of ceiling)", n(rate)),
                    ">= 20,000 /s and >= 0.75",
                    Some(rate >= 20_000.0 && ratio >= 0.75),
                ),
                noise(r),
            ));
        }
    }
    if let Some(l) = results.get("latency") {
        let (p50, p99) = (f(&l["p50_ms"]), f(&l["p99_ms"]));
        rows.push(with_noise(
            row(
                format!(
                    "latency at {} /s offered, {} workers (p50 / p99 / max)",
                    l["offered_rate_per_s"], l["workers"]
                ),
                format!("{p50:.2} / {p99:.2} / {:.2} ms", f(&l["max_ms"])),
                "p50 < 2 ms, p99 < 10 ms",
                Some(p50 < 2.0 && p99 < 10.0),
            ),
            noise(l),
        ));
    }
    if let Some(b) = results.get("backlog") {
        let ratio = f(&b["ratio"]);
        let worst = match (noise(&b["empty"]), noise(&b["with_backlog"])) {
            (Some(x), Some(y)) => Some(x.max(y)),
            (x, y) => x.or(y),
        };
        rows.push(with_noise(
            row(
                format!(
                    "backlog: {} jobs scheduled later, {} workers",
                    n(f(&b["backlog"])),
                    b["empty"]["workers"]
                ),
                format!(
                    "{} /s vs {} /s empty ({ratio:.2})",
                    n(f(&b["with_backlog"]["deliveries_per_s"])),
                    n(f(&b["empty"]["deliveries_per_s"]))
                ),
                "within 10 % (>= 0.90)",
                Some(ratio >= 0.90),
            ),
            worst,
        ));
    }
    if let Some(e) = results.get("enqueue") {
        let mut first_bytes = None;
        for r in e["runs"].as_array().into_iter().flatten() {
            let rate = f(&r["jobs_per_s"]);
            rows.push(with_noise(
                row(
                    format!(
                        "enqueue_batch ({} per call), {} caller(s)",
                        r["batch"], r["callers"]
                    ),
                    format!("{} jobs/s", n(rate)),
                    ">= 100,000 jobs/s",
                    Some(rate >= 100_000.0),
                ),
                noise(r),
            ));
            first_bytes.get_or_insert(f(&r["redis_bytes_per_job_over_payload"]));
        }
        if let Some(over) = first_bytes {
            rows.push(row(
                format!(
                    "Redis memory per queued job, {} B payload",
                    e["payload_bytes"]
                ),
                format!("payload + {} B", n(over)),
                "< payload + 300 B",
                Some(over < 300.0),
            ));
        }
    }
    if let Some(m) = results.get("memory") {
        let peak = f(&m["worker_peak_rss_mib"]);
        rows.push(row(
            format!(
                "worker peak RSS, {} in flight (seen {})",
                m["in_flight_target"], m["max_in_flight_seen"]
            ),
            format!("{peak:.1} MiB"),
            "< 64 MiB",
            Some(peak < 64.0),
        ));
        let c2r = &m["claim_to_receipt_ms"];
        if let Some(p99) = c2r["p99"].as_f64() {
            rows.push(row(
                format!(
                    "claim to receipt, {} in flight: p50 / p99 / max",
                    m["in_flight_target"]
                ),
                format!("{} / {} / {} ms", c2r["p50"], c2r["p99"], c2r["max"]),
                "p99 < 50 ms",
                Some(p99 < 50.0),
            ));
        }
    }
    if let Some(p) = results.get("production") {
        let (h, c) = (&p["herald"], &p["ceiling"]);
        let what = format!(
            "production: HTTPS to {} names, {} in flight{}",
            n(f(&p["names"])),
            p["in_flight"],
            if p["http2"].as_bool() == Some(true) {
                ", HTTP/2"
            } else {
                ""
            }
        );
        let cpu_ratio = f(&p["herald_to_ceiling"]["cpu_us_per_delivery"]);
        rows.push(with_noise(
            row(
                format!("{what}: CPU per delivery (workers + Redis)"),
                format!(
                    "{:.0} µs ({:.2}× the bare client's {:.0} µs)",
                    f(&h["cpu_us_per_delivery"]),
                    cpu_ratio,
                    f(&c["cpu_us_per_delivery"])
                ),
                "≤ 1.3× the bare client's",
                cpu_ratio.is_finite().then_some(cpu_ratio <= 1.3),
            ),
            noise(h),
        ));
        rows.push(row(
            format!("{what}: deliveries/s"),
            format!(
                "{} /s (bare client {} /s)",
                n(f(&h["deliveries_per_s"])),
                n(f(&c["deliveries_per_s"]))
            ),
            "",
            None,
        ));
        let resumed = f(&h["resumed_share_to_seen_name"]);
        rows.push(row(
            format!("{what}: new connections to a name met before that resume TLS"),
            format!("{:.1} %", resumed * 100.0),
            "≥ 90 %",
            resumed.is_finite().then_some(resumed >= 0.9),
        ));
        let per_name = &h["dns_queries_per_resolving_name"];
        let most = f(&per_name["max"]);
        rows.push(row(
            format!(
                "{what}: DNS queries per name that resolves (TTL {} s)",
                p["dns"]["ttl_s"]
            ),
            format!("mean {:.2}, at most {most:.0}", f(&per_name["mean"])),
            "≤ 1 per name per TTL",
            Some(most <= 1.0),
        ));
        rows.push(row(
            format!("{what}: worker peak RSS, threads"),
            format!(
                "{:.1} MiB, {} threads",
                f(&h["peak_rss_mib"]),
                h["peak_threads"]
            ),
            "",
            None,
        ));
    }
    if let Some(i) = results.get("ingest") {
        let what = format!(
            "ingest: {} single-job POSTs over {} connections{}",
            n(f(&i["jobs"])),
            i["connections"],
            if i["worker"].as_bool() == Some(true) {
                ", one worker delivering"
            } else {
                ""
            }
        );
        let serve = f(&i["serve_cpu_ms_per_job"]);
        rows.push(with_noise(
            row(
                format!("{what}: `serve` CPU per enqueue"),
                format!("{serve:.3} ms"),
                "≤ 0.05 ms",
                Some(serve <= 0.05),
            ),
            noise(i),
        ));
        rows.push(row(
            format!("{what}: enqueued, end to end"),
            format!(
                "{} /s, {} /s",
                n(f(&i["enqueued_per_s"])),
                n(f(&i["end_to_end_per_s"]))
            ),
            "",
            None,
        ));
    }
    if let Some(i) = results.get("idle") {
        rows.push(row(
            format!(
                "idle fleet of {}: top-level commands{}",
                i["workers"],
                on_cluster(i)
            ),
            format!(
                "{:.2} /s ({:.3} per worker)",
                f(&i["top_level_commands_per_s"]),
                f(&i["top_level_commands_per_s_per_worker"])
            ),
            "a handful /s (issue 2)",
            None,
        ));
        rows.push(row(
            format!("idle fleet of {}: total_commands_processed", i["workers"]),
            format!("{:.2} /s", f(&i["total_commands_processed_per_s"])),
            "",
            None,
        ));
        let p = &i["pickup"];
        rows.push(row(
            "pickup latency, idle fleet (p50 / p99 / max)",
            format!(
                "{:.2} / {:.2} / {:.2} ms",
                f(&p["p50_ms"]),
                f(&p["p99_ms"]),
                f(&p["max_ms"])
            ),
            "a few ms (issue 2)",
            None,
        ));
    }
    if let Some(r) = results.get("redis") {
        for run in r["runs"].as_array().into_iter().flatten() {
            rows.push(with_noise(
                row(
                    format!(
                        "redis: claim + ack, no HTTP, {} loops, {} per claim{}",
                        run["loops"],
                        run["claim_batch"],
                        on_cluster(r)
                    ),
                    format!(
                        "{} jobs/s; CPU per job: Redis {:.1} µs, client {:.1} µs",
                        n(f(&run["jobs_per_s"])),
                        f(&run["redis_cpu_us_per_job"]),
                        f(&run["client_cpu_us_per_job"])
                    ),
                    "",
                    None,
                ),
                noise(run),
            ));
        }
    }
    if let Some(i) = results.get("isolation") {
        let (with, without) = (&i["with_hanging"], &i["without_hanging"]);
        let ratio = f(&i["delivered_rate_ratio"]);
        rows.push(with_noise(
            row(
                format!(
                    "isolation: {} healthy endpoints at {} /s, one hanging ({} jobs queued)",
                    i["healthy_endpoints"],
                    i["offered_rate_per_s"],
                    n(f(&with["hanging_jobs"]))
                ),
                format!(
                    "{} /s vs {} /s without it ({ratio:.2})",
                    n(f(&with["delivered_per_s"])),
                    n(f(&without["delivered_per_s"]))
                ),
                ">= 0.95",
                Some(ratio >= 0.95),
            ),
            noise(with),
        ));
        let (p50, p99, missing) = (f(&with["p50_ms"]), f(&with["p99_ms"]), f(&with["missing"]));
        let measured = if p99.is_finite() {
            format!("{p50:.2} / {p99:.2} ms, {} missing", n(missing))
        } else {
            format!("none delivered, {} missing", n(missing))
        };
        rows.push(with_noise(
            row(
                "isolation: healthy latency next to the hanging one (p50 / p99)",
                measured,
                "p99 < 250 ms, none missing",
                Some(p99 < 250.0 && missing == 0.0),
            ),
            noise(with),
        ));
    }
    if let Some(a) = results.get("api") {
        for r in a["routes"].as_array().into_iter().flatten() {
            let p99 = f(&r["p99_ms"]);
            rows.push(with_noise(
                row(
                    format!(
                        "api: {} ({} endpoints, {} dead letters; p50 / p99)",
                        r["route"].as_str().unwrap_or("?"),
                        n(f(&a["endpoints"])),
                        n(f(&a["dead_letters"]))
                    ),
                    format!("{:.2} / {p99:.2} ms", f(&r["p50_ms"])),
                    "p99 < 20 ms",
                    Some(p99 < 20.0),
                ),
                noise(a),
            ));
        }
    }
    if let Some(o) = results.get("outage") {
        for r in o["runs"].as_array().into_iter().flatten() {
            rows.push(with_noise(
                row(
                    format!("outage: {}", run_name(r)),
                    format!(
                        "worst window {} on time, p99 {}; max {}; bad {} /s; on time again {}",
                        share(&r["worst_window_on_time_share"]),
                        secs(&r["worst_window_p99_ms"]),
                        secs(&r["healthy_max_ms"]),
                        r["bad_delivered_per_s_before_heal"],
                        recovery(r),
                    ),
                    "",
                    None,
                ),
                noise(r),
            ));
        }
    }
    rows
}

/// "K = 50, hang" for a run of the outage scenario.
fn run_name(r: &Value) -> String {
    match r["kind"].as_str() {
        Some(kind) => format!("K = {}, {kind}", r["k"]),
        None => format!("K = {}", r["k"]),
    }
}

/// A share as a percentage, "-" when absent.
fn share(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "-".into(), |s| format!("{:.1} %", s * 100.0))
}

/// Milliseconds as seconds (or ms under one second), "-" when absent.
fn secs(v: &Value) -> String {
    match v.as_f64() {
        None => "-".into(),
        Some(ms) if ms < 1000.0 => format!("{ms:.0} ms"),
        Some(ms) => format!("{:.1} s", ms / 1000.0),
    }
}

/// When the healthy endpoints were on time again, against the heal.
fn recovery(r: &Value) -> String {
    match (
        r["healthy_on_time_from_s"].as_f64(),
        r["healthy_recovered_after_heal_s"].as_f64(),
    ) {
        (Some(0.0), _) => "throughout".into(),
        (Some(_), Some(after)) if after > 0.0 => format!("{after:.0} s after the heal"),
        (Some(from), _) => format!("from {from:.0} s (by the heal)"),
        _ => "not within the run".into(),
    }
}

/// When the bad endpoints' backlog was drained.
fn drained(r: &Value) -> String {
    match (r["bad_drained_at_s"].as_f64(), r["heal_at_s"].as_f64()) {
        _ if r["k"].as_u64() == Some(0) => "-".into(),
        (Some(at), Some(heal)) if at > heal => format!("{:.0} s after the heal", at - heal),
        (Some(at), _) => format!("at {at:.1} s, before the heal"),
        (None, _) => "not within the run".into(),
    }
}

/// Columns aligned on the widest cell, the first left-aligned, the others right-aligned.
fn grid(head: &[&str], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..head.len())
        .map(|c| {
            rows.iter()
                .map(|r| r[c].chars().count())
                .chain([head[c].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (c, cell) in cells.iter().enumerate() {
            let pad = widths[c] - cell.chars().count();
            if c == 0 {
                out.push_str(cell);
                out.push_str(&" ".repeat(pad));
            } else {
                out.push_str("  ");
                out.push_str(&" ".repeat(pad));
                out.push_str(cell);
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(head.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// The outage scenario's tables, when `results` holds it: one per run, a row per window, then
/// one row per run.
pub fn outage_tables(results: &Value) -> String {
    let Some(o) = results.get("outage") else {
        return String::new();
    };
    let opt = |v: &Value| match v {
        Value::Null => "-".to_owned(),
        v => v.to_string(),
    };
    let mut out = String::new();
    let runs = o["runs"].as_array().cloned().unwrap_or_default();
    for r in &runs {
        out.push_str(&format!(
            "\noutage, {}: healthy jobs by the window they were due in; bad deliveries and \
             attempts by the window they happened in; heal at {} s\n",
            run_name(r),
            r["heal_at_s"]
        ));
        let rows: Vec<Vec<String>> = r["windows"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|w| {
                let attempts = w["attempts"]
                    .as_object()
                    .map(|a| {
                        a.iter()
                            .map(|(k, v)| format!("{k} {v}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default();
                vec![
                    format!("{}-{} s", w["from_s"], w["to_s"]),
                    w["healthy_due"].to_string(),
                    share(&w["healthy_on_time_share"]),
                    w["healthy_missing"].to_string(),
                    secs(&w["healthy_p50_ms"]),
                    secs(&w["healthy_p99_ms"]),
                    secs(&w["healthy_max_ms"]),
                    format!("{}", w["bad_delivered_per_s"]),
                    w["bad_failed_requests"].to_string(),
                    opt(&w["in_flight"]),
                    opt(&w["disabled_endpoints"]),
                    attempts,
                ]
            })
            .collect();
        out.push_str(&grid(
            &[
                "window",
                "due",
                "<= 1 s",
                "missing",
                "p50",
                "p99",
                "max",
                "bad 2xx/s",
                "bad other",
                "in flight",
                "disabled",
                "attempts (workers)",
            ],
            &rows,
        ));
    }
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r["k"].to_string(),
                r["kind"].as_str().unwrap_or("-").to_owned(),
                share(&r["worst_window_on_time_share"]),
                secs(&r["worst_window_p99_ms"]),
                secs(&r["healthy_max_ms"]),
                r["healthy_missing"].to_string(),
                format!(
                    "{} / {}",
                    r["bad_delivered_per_s_before_heal"], r["bad_delivered_per_s_after_heal"]
                ),
                recovery(r),
                drained(r),
            ]
        })
        .collect();
    out.push_str("\noutage, every run\n");
    out.push_str(&grid(
        &[
            "K",
            "kind",
            "worst <= 1 s",
            "worst p99",
            "max",
            "missing",
            "bad 2xx/s before / after heal",
            "healthy on time again",
            "bad backlog drained",
        ],
        &rows,
    ));
    out.push('\n');
    out
}

/// The rows as an aligned text table.
pub fn table(rows: &[Row]) -> String {
    let verdict = |r: &Row| match r.met {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "",
    };
    let w0 = rows
        .iter()
        .map(|r| r.figure.len())
        .max()
        .unwrap_or(0)
        .max(6);
    let w1 = rows
        .iter()
        .map(|r| r.measured.len())
        .max()
        .unwrap_or(0)
        .max(8);
    let w2 = rows
        .iter()
        .map(|r| r.target.len())
        .max()
        .unwrap_or(0)
        .max(6);
    let mut out = format!(
        "{:<w0$}  {:<w1$}  {:<w2$}  {:<6}  others' CPU\n",
        "figure", "measured", "target", ""
    );
    out.push_str(&format!("{}\n", "-".repeat(w0 + w1 + w2 + 25)));
    for r in rows {
        let others = r
            .others_cpu_share
            .map(|x| format!("{:.0} %", x * 100.0))
            .unwrap_or_default();
        out.push_str(&format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:<6}  {others}\n",
            r.figure,
            r.measured,
            r.target,
            verdict(r)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_get_thousands_separators() {
        assert_eq!(n(0.0), "0");
        assert_eq!(n(999.4), "999");
        assert_eq!(n(1000.0), "1,000");
        assert_eq!(n(1234567.0), "1,234,567");
        assert_eq!(n(-20000.0), "-20,000");
    }

    #[test]
    fn rows_follow_the_results_present() {
        let v = serde_json::json!({
            "latency": {"offered_rate_per_s": 2000, "workers": 2, "p50_ms": 1.0, "p99_ms": 12.0, "max_ms": 20.0},
            "memory": {"in_flight_target": 1000, "max_in_flight_seen": 1000, "worker_peak_rss_mib": 40.0},
        });
        let rows = summary(&v);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].met, Some(false));
        assert_eq!(rows[1].met, Some(true));
        assert!(table(&rows).contains("MISSED"));
    }

    #[test]
    fn isolation_misses_when_a_healthy_job_is_missing_or_none_arrived() {
        let v = serde_json::json!({"isolation": {
            "healthy_endpoints": 50, "offered_rate_per_s": 300, "delivered_rate_ratio": 0.99,
            "without_hanging": {"delivered_per_s": 300.0},
            "with_hanging": {"hanging_jobs": 2000, "delivered_per_s": 297.0,
                             "p50_ms": 1.0, "p99_ms": 3.0, "missing": 2},
        }});
        let rows = summary(&v);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].met, Some(true));
        assert_eq!(rows[1].met, Some(false));

        let v = serde_json::json!({"isolation": {
            "delivered_rate_ratio": 0.0,
            "without_hanging": {"delivered_per_s": 300.0},
            "with_hanging": {"delivered_per_s": 0.0, "p50_ms": null, "p99_ms": null,
                             "missing": 3900},
        }});
        let rows = summary(&v);
        assert_eq!(rows[0].met, Some(false));
        assert_eq!(rows[1].met, Some(false));
        assert!(rows[1].measured.starts_with("none delivered"));
    }
}

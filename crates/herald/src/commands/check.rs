//! `herald check`: the store's invariants, verified and on request repaired; exit 1 while a
//! violation remains.

use herald_store::CheckReport;

use crate::cli::{CheckArgs, Global};
use crate::commands::{open_store, print_json};
use crate::failure::store_error;

pub async fn run(global: &Global, args: &CheckArgs) -> anyhow::Result<()> {
    let store = open_store(global).await?;
    let report = store
        .check_invariants(args.repair)
        .await
        .map_err(store_error)?;
    if global.json {
        print_json(&report)?;
    } else {
        print_text(&report);
    }
    let left = report.violations.iter().filter(|v| !v.repaired).count();
    if left == 0 {
        return Ok(());
    }
    let fixable = report
        .violations
        .iter()
        .filter(|v| !v.repaired && v.kind.repairable())
        .count();
    let hint = match fixable {
        0 => String::new(),
        n => format!("; `herald check --repair` fixes {n} of them"),
    };
    anyhow::bail!(
        "{left} violation{} of the store's invariants{hint}",
        if left == 1 { "" } else { "s" }
    )
}

fn print_text(report: &CheckReport) {
    let repaired = report.violations.iter().filter(|v| v.repaired).count();
    let summary = match (report.violations.len(), repaired) {
        (0, _) => "no violation".to_owned(),
        (n, 0) => format!("{n} violation{}", if n == 1 { "" } else { "s" }),
        (n, r) => format!(
            "{n} violation{}, {r} repaired",
            if n == 1 { "" } else { "s" }
        ),
    };
    outln!(
        "checked {} shards, {} jobs, {} endpoints: {summary}",
        report.shards,
        report.jobs,
        report.endpoints
    );
    if report.violations.is_empty() {
        return;
    }
    let kind_width = report
        .violations
        .iter()
        .map(|v| v.kind.as_str().len())
        .max()
        .unwrap_or(0)
        .max(4);
    let subject_width = report
        .violations
        .iter()
        .map(|v| v.subject.len())
        .max()
        .unwrap_or(0)
        .max(7);
    outln!(
        "{:kind_width$}  {:>5}  {:subject_width$}  {:8}  DETAIL",
        "KIND",
        "SHARD",
        "SUBJECT",
        "REPAIRED"
    );
    for v in &report.violations {
        let shard = v.shard.map_or_else(|| "-".to_owned(), |s| s.to_string());
        let repaired = match (v.repaired, v.kind.repairable()) {
            (true, _) => "yes",
            (false, true) => "no",
            (false, false) => "no fix",
        };
        outln!(
            "{:kind_width$}  {shard:>5}  {:subject_width$}  {repaired:8}  {}",
            v.kind.as_str(),
            v.subject,
            v.detail
        );
    }
}

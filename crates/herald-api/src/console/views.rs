//! The console's pages, rendered on the server (every value escaped by `maud`): the layout,
//! login, overview, endpoints, one endpoint, the dead-letter store, the job lookup, and what a
//! refused request shows. Forms post back to the server; nothing needs JavaScript.

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup, DOCTYPE};

use crate::model::{
    Attempt, DeadLetterEntry, Endpoint, EndpointSummary, Job, JobCounts, LimitsInfo, StatsReport,
};

use super::session::{Operator, Refusal};

/// A time on the Redis clock, as people read it (UTC).
pub fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// A page as an HTML answer that no cache keeps.
pub fn page(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CACHE_CONTROL, "no-store"),
        ],
        markup.into_string(),
    )
        .into_response()
}

/// Which part of the console a page belongs to, for the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Overview,
    Endpoints,
    Dead,
    Jobs,
    None,
}

/// The frame of every page: head, navigation, the notice left by the last form, the content.
pub fn layout(
    title: &str,
    section: Section,
    op: Option<&Operator>,
    notice: Option<&str>,
    content: Markup,
) -> Markup {
    let nav = |href: &str, label: &str, this: Section| {
        html! {
            a href=(href) class=[(section == this).then_some("current")] { (label) }
        }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · herald" }
                link rel="stylesheet" href="/console.css";
            }
            body {
                header.top {
                    a.brand href="/" { "herald" }
                    @if let Some(op) = op {
                        nav {
                            (nav("/", "Overview", Section::Overview))
                            (nav("/endpoints", "Endpoints", Section::Endpoints))
                            (nav("/dead", "Dead letters", Section::Dead))
                            (nav("/jobs", "Job lookup", Section::Jobs))
                        }
                        form.logout method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(op.csrf);
                            span.scope { (op.scope) " token" }
                            button.link type="submit" { "Log out" }
                        }
                    }
                }
                main {
                    @if let Some(text) = notice {
                        p.notice role="status" { (text) }
                    }
                    (content)
                }
            }
        }
    }
}

/// A page that says what went wrong.
pub fn error_page(status: StatusCode, detail: &str) -> Response {
    error_page_of(status, detail, None)
}

/// An error page that keeps the navigation of the operator's session.
pub fn error_page_of(status: StatusCode, detail: &str, op: Option<&Operator>) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    page(
        status,
        layout(
            title,
            Section::None,
            op,
            None,
            html! {
                h1 { (title) }
                p.error { (detail) }
                p { a href="/" { "Back to the overview" } }
            },
        ),
    )
}

/// The login form; `csrf` pairs with the login cookie.
pub fn login(csrf: &str, error: Option<&str>) -> Markup {
    layout(
        "Log in",
        Section::None,
        None,
        None,
        html! {
            section.login {
                h1 { "Log in" }
                p { "Paste an API token (" code { "herald token new --scope read|admin" } ")." }
                @if let Some(e) = error {
                    p.error role="alert" { (e) }
                }
                form method="post" action="/login" {
                    input type="hidden" name="csrf" value=(csrf);
                    label for="token" { "Token" }
                    input #token type="password" name="token" autocomplete="off" required autofocus;
                    button type="submit" { "Log in" }
                }
            }
        },
    )
}

/// A state badge.
fn state(enabled: bool) -> Markup {
    html! {
        @if enabled { span.badge.ok { "enabled" } } @else { span.badge.bad { "disabled" } }
    }
}

fn limits(l: &LimitsInfo) -> Markup {
    html! {
        (l.in_flight) " / " (l.current_limit)
        @if l.current_limit < l.max_in_flight { " (of " (l.max_in_flight) ")" }
    }
}

fn attempt_outcome(a: &Attempt) -> Markup {
    let ok = a.outcome == "delivered";
    html! {
        span.badge.ok[ok].bad[!ok] { (a.outcome) }
        @if let Some(status) = a.status { " " (status) }
    }
}

/// The counts of the overview.
fn counts(c: &JobCounts, disabled: u64) -> Markup {
    let card = |label: &str, value: u64, href: Option<&str>| {
        html! {
            div.card {
                div.value { (value) }
                div.label {
                    @if let Some(h) = href { a href=(h) { (label) } } @else { (label) }
                }
            }
        }
    };
    html! {
        div.cards {
            (card("due", c.due, None))
            (card("scheduled", c.scheduled, None))
            (card("in flight", c.in_flight, None))
            (card("parked", c.parked, None))
            (card("dead", c.dead, Some("/dead")))
            (card("disabled endpoints", disabled, Some("/endpoints?status=disabled")))
            (card("held-back endpoints", c.held_back_endpoints, None))
        }
    }
}

/// Rows of endpoints.
fn endpoint_table(items: &[EndpointSummary]) -> Markup {
    html! {
        table {
            thead { tr {
                th { "Endpoint" } th { "URL" } th { "State" } th.num { "Strikes" }
                th.num { "Queued" } th.num { "In flight / limit" } th { "Last attempt" }
            } }
            tbody {
                @for e in items {
                    tr {
                        td { a href=(format!("/endpoints/{}", e.id)) { (e.id) } }
                        td.url { (e.url) }
                        td {
                            (state(e.enabled))
                            @if let Some(d) = &e.disabled { " " span.why { (d.reason) } }
                        }
                        td.num { (e.strikes) }
                        td.num { (e.queued) }
                        td.num { (limits(&e.limits)) }
                        td {
                            @if let Some(a) = &e.last_attempt {
                                (attempt_outcome(a)) " " span.when { (time(a.at_ms)) }
                            } @else { span.none { "none" } }
                        }
                    }
                }
                @if items.is_empty() {
                    tr { td.none colspan="7" { "No endpoint on this page." } }
                }
            }
        }
    }
}

/// Rows of dead letters, with their buttons when the operator may use them.
fn dead_table(items: &[DeadLetterEntry], op: &Operator, back: &str) -> Markup {
    html! {
        table {
            thead { tr {
                th { "Discarded" } th { "Job" } th { "Endpoint" } th.num { "Attempts" }
                th { "Reason" } th { "" }
            } }
            tbody {
                @for d in items {
                    tr {
                        td.when { (time(d.dead_at_ms)) }
                        td { a.mono href=(format!("/jobs?id={}", d.id)) { (d.id) } }
                        td {
                            @if let Some(e) = &d.endpoint {
                                a href=(format!("/endpoints/{e}")) { (e) }
                            } @else { span.none { "unreadable" } }
                        }
                        td.num { @if let Some(a) = d.attempts { (a) } }
                        td.reason { @if let Some(r) = &d.last_error { (r) } }
                        td.actions {
                            form.inline method="post" action=(format!("/dead/{}/replay", d.id)) {
                                input type="hidden" name="csrf" value=(op.csrf);
                                input type="hidden" name="back" value=(back);
                                button type="submit" disabled[!op.is_admin()] { "Replay" }
                            }
                            form.inline method="post" action=(format!("/dead/{}/purge", d.id)) {
                                input type="hidden" name="csrf" value=(op.csrf);
                                input type="hidden" name="back" value=(back);
                                button.danger type="submit" disabled[!op.is_admin()] { "Purge" }
                            }
                        }
                    }
                }
                @if items.is_empty() {
                    tr { td.none colspan="6" { "No dead letter on this page." } }
                }
            }
        }
    }
}

/// A note for read-only sessions, where buttons are.
fn read_only_note(op: &Operator) -> Markup {
    html! {
        @if !op.is_admin() {
            p.note { "This session's token has the read scope: the buttons need an admin token." }
        }
    }
}

/// The overview: jobs by state, disabled endpoints, recent failures.
pub fn overview(
    op: &Operator,
    notice: Option<&str>,
    stats: &StatsReport,
    disabled: &[EndpointSummary],
    more_disabled: bool,
    recent: &[DeadLetterEntry],
) -> Markup {
    layout(
        "Overview",
        Section::Overview,
        Some(op),
        notice,
        html! {
            h1 { "Overview" }
            (counts(&stats.jobs, stats.disabled_endpoints))
            @if !stats.busiest.is_empty() {
                h2 { "Holding the most delivery slots" }
                p.hint { "Endpoints with the most deliveries in flight now. Those judged slow are served from the workers' slow lanes, so they cannot hold the others back." }
                table {
                    thead { tr { th { "Endpoint" } th.num { "In flight" } th { "Speed" } } }
                    tbody {
                        @for b in &stats.busiest {
                            tr {
                                td { a href=(format!("/endpoints/{}", b.id)) { (b.id) } }
                                td.num { (b.in_flight) }
                                td { @if b.slow { span.badge.bad { "slow" } } @else { "normal" } }
                            }
                        }
                    }
                }
            }
            h2 { "Disabled endpoints" }
            @if disabled.is_empty() {
                p.none { "None: every endpoint is enabled." }
            } @else {
                (endpoint_table(disabled))
                @if more_disabled {
                    p { a href="/endpoints?status=disabled" { "All disabled endpoints" } }
                }
            }
            h2 { "Recent failures" }
            p.hint { "The latest jobs discarded into the dead-letter store." }
            (dead_table(recent, op, "/dead"))
            p { a href="/dead" { "The dead-letter store" } }
        },
    )
}

/// The endpoint list with its search form.
pub fn endpoints(
    op: &Operator,
    notice: Option<&str>,
    search: &str,
    status: &str,
    items: &[EndpointSummary],
    next: Option<&str>,
) -> Markup {
    layout(
        "Endpoints",
        Section::Endpoints,
        Some(op),
        notice,
        html! {
            h1 { "Endpoints" }
            form.filters method="get" action="/endpoints" {
                label { "Id contains " input type="search" name="search" value=(search); }
                label { "State "
                    select name="status" {
                        @for (value, label) in [("any", "any"), ("enabled", "enabled"), ("disabled", "disabled")] {
                            option value=(value) selected[status == value] { (label) }
                        }
                    }
                }
                button type="submit" { "Search" }
            }
            (endpoint_table(items))
            @if let Some(cursor) = next {
                p.pager {
                    a href=(format!("/endpoints?{}", super::query(&[("search", search), ("status", status), ("cursor", cursor)]))) { "Next page" }
                }
            }
        },
    )
}

/// One endpoint's page.
pub fn endpoint(op: &Operator, notice: Option<&str>, e: &Endpoint) -> Markup {
    layout(
        &e.id,
        Section::Endpoints,
        Some(op),
        notice,
        html! {
                h1 { "Endpoint " span.mono { (e.id) } " " (state(e.enabled)) }
                p.url { (e.url) }
                @if let Some(d) = &e.disabled {
                    p.error { "Disabled since " (time(d.at_ms)) ": " (d.reason)
                        @if let Some(s) = d.strikes { " (" (s) " strikes)" } }
                }
                (endpoint_actions(op, e))
                (endpoint_state(e))
                (endpoint_subscriptions(e))
                (attempt_log(e))
                p { a href=(format!("/dead?endpoint={}", e.id)) { "This endpoint's dead letters" } }
        },
    )
}

/// The endpoint page's forms: enable or disable, test event, secret rotation.
fn endpoint_actions(op: &Operator, e: &Endpoint) -> Markup {
    let action = |verb: &str| format!("/endpoints/{}/{verb}", e.id);
    html! {
        section.actions {
            (read_only_note(op))
            @if e.enabled {
                form.inline method="post" action=(action("disable")) {
                    input type="hidden" name="csrf" value=(op.csrf);
                    input type="text" name="reason" placeholder="reason (optional)" aria-label="Reason";
                    button type="submit" disabled[!op.is_admin()] { "Disable" }
                }
            } @else {
                form.inline method="post" action=(action("enable")) {
                    input type="hidden" name="csrf" value=(op.csrf);
                    button type="submit" disabled[!op.is_admin()] { "Enable" }
                }
            }
            form.inline method="post" action=(action("test")) {
                input type="hidden" name="csrf" value=(op.csrf);
                button type="submit" disabled[!op.is_admin()] { "Send test event" }
            }
            form.inline method="post" action=(action("rotate-secret")) {
                input type="hidden" name="csrf" value=(op.csrf);
                input type="text" name="grace" value="24h" size="6" aria-label="Grace period of the old secrets";
                button type="submit" disabled[!op.is_admin()] { "Rotate secret" }
            }
        }
    }
}

/// The endpoint page's facts: strikes, backlog, flow control, secrets, times.
fn endpoint_state(e: &Endpoint) -> Markup {
    let l = &e.limits;
    html! {
        h2 { "State" }
        table.facts {
            tr { th { "Strikes" } td { (e.strikes) } }
            tr { th { "Queued jobs" } td { (e.queued) } }
            tr { th { "Parked jobs" } td { (e.parked) } }
            tr { th { "In flight" } td { (l.in_flight) } }
            tr { th { "In-flight limit" } td { (l.max_in_flight)
                @if l.current_limit < l.max_in_flight { " (" (l.current_limit) " now: the receiver struggled lately)" } } }
            tr { th { "Rate limit" } td { @if let Some(r) = &l.rate { (r) } @else { "none" } } }
            @if let Some(p) = l.paused_until_ms {
                tr { th { "Paused until" } td { (time(p)) " (Retry-After)" } }
            }
            @if l.slow {
                tr { th { "Speed" } td { span.badge.bad { "slow" } " served from the workers' slow lanes until a delivery comes back quicker" } }
            }
            tr { th { "Signing" } td { (e.active_secrets) " active secret(s)" } }
            tr { th { "Created" } td { (time(e.created_at_ms)) } }
            tr { th { "Updated" } td { (time(e.updated_at_ms)) } }
            @if let Some(c) = e.changed_at_ms {
                tr { th { "Changed" } td { (time(c)) " (attempts claimed before it no longer strike)" } }
            }
        }
    }
}

/// The endpoint page's subscriptions.
fn endpoint_subscriptions(e: &Endpoint) -> Markup {
    html! {
        h2 { "Subscriptions" }
        @if e.subscriptions.is_empty() {
            p.none { "None." }
        } @else {
            table {
                thead { tr { th { "Service" } th { "Level" } th { "Components" } } }
                tbody {
                    @for s in &e.subscriptions {
                        tr {
                            td { (s.service) }
                            td { (s.level.to_string()) }
                            td { @if s.components.is_empty() { span.none { "all" } } @else { (s.components.join(", ")) } }
                        }
                    }
                }
            }
        }
    }
}

/// The endpoint page's attempt log, newest first.
fn attempt_log(e: &Endpoint) -> Markup {
    html! {
        h2 { "Attempt log" }
        p.hint { "The latest attempts, newest first: every failure, and successes sampled." }
        table {
            thead { tr {
                th { "When" } th { "Job" } th.num { "Attempt" } th { "Outcome" }
                th.num { "Latency" } th { "Error" }
            } }
            tbody {
                @for a in &e.attempts {
                    tr {
                        td.when { (time(a.at_ms)) }
                        td { a.mono href=(format!("/jobs?id={}", a.job_id)) { (a.job_id) } }
                        td.num { (a.attempt) }
                        td { (attempt_outcome(a)) }
                        td.num { (a.latency_ms) " ms" }
                        td.reason { @if let Some(err) = &a.error { (err) } }
                    }
                }
                @if e.attempts.is_empty() {
                    tr { td.none colspan="6" { "No attempt yet." } }
                }
            }
        }
    }
}

/// The dead-letter filters as the page shows them.
#[derive(Debug, Default, Clone)]
pub struct DeadFilters {
    pub endpoint: String,
    pub reason: String,
    pub since: String,
    pub until: String,
}

impl DeadFilters {
    /// Whether no filter is set: the whole store.
    pub fn is_empty(&self) -> bool {
        self.endpoint.is_empty()
            && self.reason.is_empty()
            && self.since.is_empty()
            && self.until.is_empty()
    }

    /// The filters and the session's form token as a bulk form's hidden fields.
    fn hidden(&self, op: &Operator) -> Markup {
        html! {
            input type="hidden" name="csrf" value=(op.csrf);
            input type="hidden" name="endpoint" value=(self.endpoint);
            input type="hidden" name="reason" value=(self.reason);
            input type="hidden" name="since" value=(self.since);
            input type="hidden" name="until" value=(self.until);
        }
    }
}

/// The dead-letter store, filtered, with replay and purge.
#[allow(clippy::too_many_arguments)]
pub fn dead(
    op: &Operator,
    notice: Option<&str>,
    error: Option<&str>,
    f: &DeadFilters,
    items: &[DeadLetterEntry],
    next: Option<&str>,
    back: &str,
) -> Markup {
    let filtered = !f.is_empty();
    let hidden = f.hidden(op);
    layout(
        "Dead letters",
        Section::Dead,
        Some(op),
        notice,
        html! {
            h1 { "Dead letters" }
            @if let Some(e) = error { p.error { (e) } }
            form.filters method="get" action="/dead" {
                label { "Endpoint " input type="text" name="endpoint" value=(f.endpoint); }
                label { "Reason contains " input type="text" name="reason" value=(f.reason); }
                label { "Since (UTC) " input type="datetime-local" step="1" name="since" value=(f.since); }
                label { "Until (UTC) " input type="datetime-local" step="1" name="until" value=(f.until); }
                button type="submit" { "Filter" }
                @if filtered { " " a href="/dead" { "Clear" } }
            }
            section.actions {
                (read_only_note(op))
                form.inline method="post" action="/dead/replay" {
                    (hidden)
                    button type="submit" disabled[!op.is_admin()] {
                        @if filtered { "Replay all matching" } @else { "Replay all" }
                    }
                }
                form.inline method="post" action="/dead/purge" {
                    (hidden)
                    button.danger type="submit" disabled[!op.is_admin()] {
                        @if filtered { "Purge all matching" } @else { "Purge all" }
                    }
                }
            }
            (dead_table(items, op, back))
            @if let Some(cursor) = next {
                p.pager {
                    a href=(format!("/dead?{}", super::query(&[("endpoint", &f.endpoint), ("reason", &f.reason), ("since", &f.since), ("until", &f.until), ("cursor", cursor)]))) { "Next page" }
                }
            }
        },
    )
}

/// A bulk action on the dead-letter store, to confirm: what it does, to how many jobs, and
/// the button that does it (the filters carried along) beside the way back.
pub fn confirm_bulk(
    op: &Operator,
    action: BulkAction,
    count: u64,
    f: &DeadFilters,
    back: &str,
) -> Markup {
    let (verb, path, what) = match action {
        BulkAction::Replay => (
            "Replay",
            "/dead/replay",
            "They are delivered again at once, each with a fresh retry schedule.",
        ),
        BulkAction::Purge => (
            "Purge",
            "/dead/purge",
            "They are deleted for good: their payloads cannot be recovered.",
        ),
    };
    let jobs = if count == 1 { "job" } else { "jobs" };
    let title = format!("{verb} {count} dead {jobs}?");
    layout(
        &title,
        Section::Dead,
        Some(op),
        None,
        html! {
            h1 { (title) }
            p {
                @if f.is_empty() {
                    "Every job in the dead-letter store. "
                } @else {
                    "The dead jobs matching the filter"
                    @if !f.endpoint.is_empty() { " endpoint " code { (f.endpoint) } }
                    @if !f.reason.is_empty() { ", reason containing " code { (f.reason) } }
                    @if !f.since.is_empty() { ", since " (f.since) }
                    @if !f.until.is_empty() { ", until " (f.until) }
                    ". "
                }
                (what)
                " Jobs that match by the time you confirm are taken too."
            }
            section.actions {
                form.inline method="post" action=(path) {
                    (f.hidden(op))
                    input type="hidden" name="confirm" value=(count);
                    @if action == BulkAction::Purge {
                        button.danger type="submit" { (verb) " " (count) " " (jobs) }
                    } @else {
                        button type="submit" { (verb) " " (count) " " (jobs) }
                    }
                }
                " "
                a href=(back) { "Cancel" }
            }
        },
    )
}

/// Which bulk action [`confirm_bulk`] confirms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkAction {
    Replay,
    Purge,
}

/// The job lookup, with the job found (or why not).
pub fn job(
    op: &Operator,
    notice: Option<&str>,
    id: &str,
    found: Option<&Job>,
    error: Option<&str>,
) -> Markup {
    layout(
        "Job lookup",
        Section::Jobs,
        Some(op),
        notice,
        html! {
            h1 { "Job lookup" }
            form.filters method="get" action="/jobs" {
                label { "Job id " input.mono type="search" name="id" value=(id) size="34" placeholder="01J… or msg_01J…"; }
                button type="submit" { "Look up" }
            }
            @if let Some(e) = error { p.error { (e) } }
            @if let Some(j) = found {
                table.facts {
                    tr { th { "Id" } td.mono { (j.id) } }
                    tr { th { "State" } td { span.badge { (serde_json::to_value(j.state).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()) } } }
                    @if let Some(e) = &j.endpoint { tr { th { "Endpoint" } td { a href=(format!("/endpoints/{e}")) { (e) } } } }
                    @if let Some(a) = j.attempts { tr { th { "Attempts" } td { (a) } } }
                    @if let Some(t) = j.enqueued_at_ms { tr { th { "Enqueued" } td { (time(t)) } } }
                    @if let Some(t) = j.next_attempt_at_ms { tr { th { "Next attempt" } td { (time(t)) } } }
                    @if let Some(t) = j.lease_deadline_ms { tr { th { "Lease until" } td { (time(t)) } } }
                    @if let Some(t) = j.dead_at_ms { tr { th { "Discarded" } td { (time(t)) } } }
                    @if let Some(e) = &j.last_error { tr { th { "Last error" } td.reason { (e) } } }
                    tr { th { "Shard" } td { (j.shard) } }
                }
                @if let Some(p) = &j.payload {
                    h2 { "Payload" }
                    pre { (serde_json::to_string_pretty(p).unwrap_or_default()) }
                }
                @if let Some(raw) = &j.raw_record {
                    h2 { "Stored record (unreadable)" }
                    pre { (raw) }
                }
            }
        },
    )
}

/// A refused console request: to the login page, or an error page.
impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Login => Redirect::to("/login").into_response(),
            Refusal::Forbidden(why) => error_page(StatusCode::FORBIDDEN, why),
            Refusal::Store(p) => error_page(p.status(), &p.detail),
        }
    }
}

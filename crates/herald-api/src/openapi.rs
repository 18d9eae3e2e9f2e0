//! The OpenAPI 3.1 document of the API, generated from the handlers and types: served at
//! `/openapi.json`, and checked in as `docs/openapi.json` (a test fails when the two differ;
//! `UPDATE_OPENAPI=1 cargo test -p herald-api openapi` rewrites the file).

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::problem::Problem;
use crate::v1;

/// Says every route needs a bearer token.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token from `herald token new --scope read|admin`; `read` allows \
                         every GET, `admin` everything.",
                    ))
                    .build(),
            ),
        );
    }
}

/// Liveness: answers `ok` without a token.
#[utoipa::path(
    operation_id = "healthz",
    get,
    path = "/healthz",
    tag = "server",
    responses((status = 200, description = "The server runs", body = String, content_type = "text/plain")),
    security(())
)]
#[allow(dead_code)] // Documents the route served in lib.rs.
fn healthz() {}

/// The API's OpenAPI document.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "herald management API",
        description = "Endpoints, subscriptions, events, jobs and the dead-letter store of one \
                       herald deployment: the same operations as the `herald` command. Errors \
                       are `application/problem+json` (RFC 9457); listings are paged with \
                       cursors; times are ms since the Unix epoch (Redis clock).",
        license(name = "Apache-2.0")
    ),
    paths(
        healthz,
        v1::endpoints::list,
        v1::endpoints::get,
        v1::endpoints::set,
        v1::endpoints::delete,
        v1::endpoints::enable,
        v1::endpoints::disable,
        v1::endpoints::rotate_secret,
        v1::endpoints::send_test,
        v1::endpoints::attempts,
        v1::subscriptions::of_endpoint,
        v1::subscriptions::set,
        v1::subscriptions::remove,
        v1::subscriptions::of_service,
        v1::jobs::publish,
        v1::jobs::enqueue,
        v1::jobs::enqueue_batch,
        v1::jobs::get,
        v1::jobs::stats,
        v1::dead::list,
        v1::dead::replay_one,
        v1::dead::purge_one,
        v1::dead::replay_matching,
        v1::dead::purge_matching,
    ),
    // The error body every problem response names; the responses refer to it by name only.
    components(schemas(Problem)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "endpoints", description = "One webhook per dashboard: URL, secrets, limits, state"),
        (name = "subscriptions", description = "Which dashboards hear of which services"),
        (name = "jobs", description = "Events, raw jobs, job lookup, counts"),
        (name = "dead letters", description = "Jobs that were discarded"),
        (name = "server", description = "The server itself"),
    )
)]
pub struct ApiDoc;

/// The document, as `/openapi.json` serves it and `docs/openapi.json` holds it.
pub fn document() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serialises");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/openapi.json` is the document the code generates: CI fails on drift.
    #[test]
    fn openapi_document_is_checked_in() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
        let generated = document();
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(path, &generated).expect("write docs/openapi.json");
            return;
        }
        let checked_in = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            checked_in == generated,
            "docs/openapi.json differs from the document the code generates; regenerate it with \
             `UPDATE_OPENAPI=1 cargo test -p herald-api openapi` and commit it"
        );
    }

    /// Every `$ref` of the document names a schema it defines: client generators refuse a
    /// document with one that does not resolve.
    #[test]
    fn every_reference_resolves() {
        fn refs<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
            match v {
                serde_json::Value::Object(map) => {
                    if let Some(r) = map.get("$ref").and_then(|r| r.as_str()) {
                        out.push(r);
                    }
                    map.values().for_each(|v| refs(v, out));
                }
                serde_json::Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let doc: serde_json::Value = serde_json::from_str(&document()).unwrap();
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(found.contains(&"#/components/schemas/Problem"));
        for r in found {
            let pointer = r
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("{r}: not local"));
            assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
        }
    }

    #[test]
    fn the_document_is_openapi_3_1_and_lists_every_route() {
        let doc: serde_json::Value = serde_json::from_str(&document()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        for path in [
            "/api/v1/endpoints",
            "/api/v1/endpoints/{id}",
            "/api/v1/endpoints/{id}/test",
            "/api/v1/services/{service}/subscribers",
            "/api/v1/events",
            "/api/v1/dead-letters/replay",
            "/api/v1/stats",
        ] {
            assert!(paths.contains_key(path), "{path} missing");
        }
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
    }
}

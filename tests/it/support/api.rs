//! The API server of `herald serve`, run in-process (`herald_api::run` on port 0) against the
//! test's Redis, with an admin and a read token, and a small HTTP client for it.

use std::net::SocketAddr;
use std::time::Duration;

use herald_api::auth::{new_token, Scope, Tokens};
use herald_api::ApiConfig;
use herald_store::{Namespace, Store, StoreConfig};
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// An API server running on its own runtime until dropped.
#[derive(Debug)]
pub struct ApiServer {
    runtime: Option<tokio::runtime::Runtime>,
    addr: SocketAddr,
    shutdown: CancellationToken,
    store: Store,
    client: reqwest::Client,
    /// A token of scope `admin`.
    pub admin: String,
    /// A token of scope `read`.
    pub read: String,
    /// The hashed forms the server was given, admin first.
    pub hashed: [String; 2],
}

/// One answer of the server.
#[derive(Debug, Clone)]
pub struct Answer {
    /// What was asked, for messages.
    pub call: String,
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    /// The `Content-Type`, or "".
    pub fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics if it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{}: body is not JSON ({e}): {}", self.call, self.text()))
    }

    /// Asserts the status, and returns the JSON body.
    pub fn expect(&self, status: u16) -> Value {
        assert_eq!(
            self.status,
            status,
            "{} answered {} {}",
            self.call,
            self.status,
            self.text()
        );
        if self.body.is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }

    /// Asserts an RFC 9457 problem with this status, and returns it.
    pub fn problem(&self, status: u16) -> Value {
        assert_eq!(
            self.status,
            status,
            "{} answered {} {}",
            self.call,
            self.status,
            self.text()
        );
        assert_eq!(
            self.content_type(),
            "application/problem+json",
            "{}: {}",
            self.call,
            self.text()
        );
        let p = self.json();
        assert_eq!(p["status"], status, "{}: {p}", self.call);
        assert_eq!(p["type"], "about:blank", "{}: {p}", self.call);
        assert!(
            p["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{}: {p}",
            self.call
        );
        assert!(
            p["detail"].as_str().is_some_and(|t| !t.is_empty()),
            "{}: {p}",
            self.call
        );
        assert!(p["code"].as_str().is_some(), "{}: {p}", self.call);
        p
    }
}

impl ApiServer {
    /// Starts a server for `namespace` with `shards` shards of the Redis at `redis_url`.
    pub fn start(redis_url: &str, namespace: &str, shards: u16) -> ApiServer {
        Self::start_with(redis_url, namespace, shards, |_| {})
    }

    /// [`ApiServer::start`], with the configuration changed by `tune` first (its tokens are
    /// the admin and read tokens of this server, which `tune` may replace).
    pub fn start_with(
        redis_url: &str,
        namespace: &str,
        shards: u16,
        tune: impl FnOnce(&mut ApiConfig),
    ) -> ApiServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("API server runtime");
        let admin = new_token(Scope::Admin);
        let read = new_token(Scope::Read);
        let tokens = Tokens::parse(&format!("{},{}", admin.hashed, read.hashed)).expect("tokens");
        let mut cfg = ApiConfig::new(tokens);
        tune(&mut cfg);
        let ns = Namespace::new(namespace).expect("namespace");
        let store = Store::open(StoreConfig::new(redis_url, ns, shards)).expect("store");
        let shutdown = CancellationToken::new();
        let addr = runtime.block_on(async {
            store.check().await.expect("store check");
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind the API server");
            let addr = listener.local_addr().expect("API address");
            tokio::spawn(herald_api::run(
                cfg,
                store.clone(),
                listener,
                shutdown.clone(),
            ));
            addr
        });
        ApiServer {
            runtime: Some(runtime),
            addr,
            shutdown,
            store,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .build()
                .expect("HTTP client"),
            admin: admin.token,
            read: read.token,
            hashed: [admin.hashed, read.hashed],
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The store the server uses, for setting up and checking what the API did.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Runs `f` to completion on the server's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.as_ref().expect("running").block_on(f)
    }

    /// Sends a request: `body` as JSON when given, `token` as a bearer token when given, and
    /// `headers` as they are.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .client
            .request(method.clone(), format!("{}{path}", self.url()));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        self.send(format!("{method} {path}"), req)
    }

    /// Sends a raw request built from the client.
    pub fn send(&self, call: String, req: reqwest::RequestBuilder) -> Answer {
        self.block_on(async {
            let resp = tokio::time::timeout(Duration::from_secs(60), req.send())
                .await
                .unwrap_or_else(|_| panic!("{call}: no answer within 60 s"))
                .unwrap_or_else(|e| panic!("{call}: {e}"));
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = resp.bytes().await.expect("body").to_vec();
            Answer {
                call,
                status,
                headers,
                body,
            }
        })
    }

    /// A raw request builder for `path`.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.url()))
    }

    /// `GET path` with the admin token.
    pub fn get(&self, path: &str) -> Answer {
        self.call("GET", path, Some(&self.admin), None, &[])
    }

    /// `method path` with the admin token and a JSON body.
    pub fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        self.call(method, path, Some(&self.admin), body.as_ref(), &[])
    }

    /// Every item of a paged listing at `path` (which has a query already or not), following
    /// `next_cursor`; also returns how many pages it took.
    pub fn all_pages(&self, path: &str) -> (Vec<Value>, usize) {
        let mut items = Vec::new();
        let mut pages = 0;
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut next = path.to_owned();
        loop {
            pages += 1;
            assert!(pages < 10_000, "{path}: the listing never ends");
            let page = self.get(&next).expect(200);
            items.extend(page["items"].as_array().expect("items").iter().cloned());
            match page["next_cursor"].as_str() {
                Some(cursor) => next = format!("{path}{sep}cursor={cursor}"),
                None => {
                    assert!(page["next_cursor"].is_null(), "{page}");
                    return (items, pages);
                }
            }
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

/// `GET path` on `addr` with a bearer token, over a plain TCP connection (for servers run as
/// processes); returns the status and the body.
pub fn get_with_token(addr: &str, path: &str, token: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .expect("write request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status line from {addr}: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of the `csrf` field of the first form of a page.
pub fn form_token(page: &str) -> String {
    let start = page
        .find("name=\"csrf\" value=\"")
        .unwrap_or_else(|| panic!("no csrf field in the page:\n{page}"))
        + "name=\"csrf\" value=\"".len();
    page[start..]
        .split('"')
        .next()
        .expect("the field's value")
        .to_owned()
}

/// The `Set-Cookie` header that sets cookie `name`, if any.
pub fn set_cookie<'a>(answer: &'a Answer, name: &str) -> Option<&'a str> {
    answer
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
}

/// The value a `Set-Cookie` header gives its cookie.
pub fn cookie_value(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .and_then(|pair| pair.split_once('='))
        .map(|(_, v)| v.to_owned())
        .expect("name=value")
}

/// A logged-in console session: its cookie and its form token.
#[derive(Debug)]
pub struct Console<'a> {
    api: &'a ApiServer,
    pub cookie: String,
    pub csrf: String,
}

impl ApiServer {
    /// Logs in to the console with `token` as a browser does (the login form, its cookie and
    /// form token), and returns the session.
    pub fn login(&self, token: &str) -> Console<'_> {
        let form = self.call("GET", "/login", None, None, &[]);
        assert_eq!(form.status, 200, "{}", form.text());
        let login_cookie = cookie_value(set_cookie(&form, "herald_login").expect("login cookie"));
        let req = self
            .request(Method::POST, "/login")
            .header("cookie", format!("herald_login={login_cookie}"))
            .form(&[("token", token), ("csrf", &form_token(&form.text()))]);
        let answer = self.send("POST /login".into(), req);
        assert_eq!(answer.status, 303, "login refused: {}", answer.text());
        assert_eq!(answer.headers["location"], "/");
        let cookie = cookie_value(set_cookie(&answer, "herald_session").expect("session cookie"));
        let mut console = Console {
            api: self,
            cookie,
            csrf: String::new(),
        };
        let home = console.get("/");
        assert_eq!(home.status, 200, "{}", home.text());
        console.csrf = form_token(&home.text());
        console
    }
}

impl Console<'_> {
    /// `GET path` in this session.
    pub fn get(&self, path: &str) -> Answer {
        let req = self
            .api
            .request(Method::GET, path)
            .header("cookie", format!("herald_session={}", self.cookie));
        self.api.send(format!("GET {path} (console)"), req)
    }

    /// Posts a form with the session's form token added.
    pub fn post(&self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let mut all: Vec<(&str, &str)> = vec![("csrf", &self.csrf)];
        all.extend_from_slice(fields);
        self.post_raw(path, &all)
    }

    /// Posts a form as given (no form token added).
    pub fn post_raw(&self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let req = self
            .api
            .request(Method::POST, path)
            .header("cookie", format!("herald_session={}", self.cookie))
            .form(fields);
        self.api.send(format!("POST {path} (console)"), req)
    }

    /// Posts a form and follows its redirect; returns the page it led to.
    pub fn submit(&self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let answer = self.post(path, fields);
        assert_eq!(answer.status, 303, "{}: {}", answer.call, answer.text());
        let to = answer.headers["location"]
            .to_str()
            .expect("location")
            .to_owned();
        self.get(&to)
    }
}

//! What the capability tests talk to: a real HTTP service on 127.0.0.1:0
//! and a fresh schema in the real PostgreSQL.
//!
//! No test sends traffic to any address but loopback: refusal tests use
//! loopback destinations that are not allow-listed, and the private,
//! link-local and metadata ranges are tested on the address check itself
//! (host/src/capability/net.rs).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// A local HTTP service with the routes the scripts call.
pub struct Upstream {
    /// `http://127.0.0.1:<port>`
    pub base: String,
    /// `127.0.0.1:<port>`, for the allow-list.
    pub authority: String,
    /// Requests received, of any route.
    pub hits: Arc<AtomicUsize>,
    _shutdown: oneshot::Sender<()>,
}

type Params = Query<Vec<(String, String)>>;

fn pairs(params: Vec<(String, String)>) -> Value {
    Value::Object(params.into_iter().map(|(k, v)| (k, Value::String(v))).collect())
}

fn header_text(headers: &HeaderMap, name: &str) -> Value {
    headers.get(name).and_then(|v| v.to_str().ok()).map_or(Value::Null, |v| json!(v))
}

impl Upstream {
    pub async fn start() -> Upstream {
        Upstream::serve(tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind upstream"))
    }

    /// Serves the routes on `listener` (which may belong to another network
    /// namespace).
    pub fn serve(listener: tokio::net::TcpListener) -> Upstream {
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        let app =
            Router::new()
                .route(
                    "/json",
                    get(|Query(q): Params, headers: HeaderMap| async move {
                        axum::Json(json!({"method": "GET", "query": pairs(q), "x_key": header_text(&headers, "x-key")}))
                    }),
                )
                .route("/text", get(|| async { "hello, plain text" }))
                .route(
                    "/status/{code}",
                    any(|Path(code): Path<u16>| async move {
                        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
                        (status, axum::Json(json!({"error": format!("status {code}")})))
                    }),
                )
                .route(
                    "/echo",
                    post(|Query(q): Params, headers: HeaderMap, body: String| async move {
                        axum::Json(json!({
                            "method": "POST",
                            "query": pairs(q),
                            "content_type": header_text(&headers, "content-type"),
                            "body": body,
                        }))
                    }),
                )
                .route(
                    "/users/{id}",
                    get(|Path(id): Path<i64>| async move {
                        if id == 404 {
                            return (StatusCode::NOT_FOUND, axum::Json(json!({"error": "no such user"})));
                        }
                        (
                            StatusCode::OK,
                            axum::Json(json!({"id": id, "tier": if id % 2 == 0 { "gold" } else { "basic" }})),
                        )
                    }),
                )
                .route(
                    "/slow",
                    get(|| async {
                        tokio::time::sleep(Duration::from_secs(3)).await;
                        "late"
                    }),
                )
                .route(
                    "/wait/{ms}",
                    get(|Path(ms): Path<u64>| async move {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        "waited"
                    }),
                )
                .route("/big", get(|| async { "x".repeat(200 << 10) }))
                .route(
                    "/redirect",
                    any(|Query(q): Params| async move {
                        let to = q.into_iter().find(|(k, _)| k == "to").map(|(_, v)| v).unwrap_or_default();
                        Response::builder()
                            .status(StatusCode::FOUND)
                            .header(header::LOCATION, to)
                            .body(axum::body::Body::empty())
                            .map_or_else(
                                |_| StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                                IntoResponse::into_response,
                            )
                    }),
                )
                .layer(axum::middleware::from_fn_with_state(
                    counted,
                    |State(hits): State<Arc<AtomicUsize>>,
                     req: axum::extract::Request,
                     next: axum::middleware::Next| async move {
                        hits.fetch_add(1, Ordering::SeqCst);
                        next.run(req).await
                    },
                ));
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Upstream { base: format!("http://{addr}"), authority: addr.to_string(), hits, _shutdown: tx }
    }

    pub fn port(&self) -> &str {
        self.authority.rsplit(':').next().unwrap_or_default()
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// The PostgreSQL the tests use as its administrator (`AVAP_TEST_PG_URL`,
/// else the machine's local server, trust auth, database `test`). The host
/// under test never connects with it: it refuses a superuser.
pub fn pg_url() -> String {
    std::env::var("AVAP_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Runs `sql` (several statements) as the administrator.
pub async fn pg_admin(sql: &str) -> Result<(), tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    client.batch_execute(sql).await
}

/// A least-privileged role (`deploy/postgres-role.sql`'s shape: it may log
/// in and use its own schema, nothing else) with a fresh schema holding the
/// fixture tables. Dropped with both when it goes out of scope.
pub struct PgSchema {
    pub name: String,
    pub role: String,
}

const FIXTURE: &str = "
    CREATE TABLE {s}.users (id integer PRIMARY KEY, name text NOT NULL, email text, active boolean NOT NULL,
        score numeric(6,2), joined timestamptz NOT NULL, born date, meta jsonb);
    INSERT INTO {s}.users VALUES
        (1, 'Ann', 'ann@example.com', true, 91.50, '2024-03-01T09:30:00Z', '1990-05-17', '{\"plan\": \"pro\"}'),
        (2, 'Bob', NULL, false, 47.25, '2024-06-15T18:00:00Z', NULL, NULL),
        (3, 'Cy', 'cy@example.com', true, 78, '2025-01-02T00:00:00Z', '2001-12-31', '{\"plan\": \"free\", \"tags\": [1, 2]}');
    CREATE TABLE {s}.events (id serial PRIMARY KEY, user_id integer NOT NULL, kind text NOT NULL,
        at timestamp NOT NULL DEFAULT now());
";

impl PgSchema {
    pub async fn create() -> PgSchema {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let name = format!("avap_e2e_{}_{nanos}", std::process::id());
        let role = format!("{name}_role");
        let setup = format!(
            "CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;
             CREATE SCHEMA {name} AUTHORIZATION {role};
             SET ROLE {role};
             {fixture}
             RESET ROLE;",
            fixture = FIXTURE.replace("{s}", &name)
        );
        pg_admin(&setup).await.unwrap_or_else(|e| panic!("creating the fixture schema and role failed: {e:?}"));
        PgSchema { name, role }
    }

    /// Runs `sql` as the administrator with the role's rights (`SET ROLE`),
    /// the schema first on the search path: for objects an operator makes
    /// for scripts, such as functions, which scripts may not create.
    pub async fn as_owner(&self, sql: &str) {
        let wrapped =
            format!("SET ROLE {}; SET search_path = {}; {sql}; RESET ROLE; RESET search_path;", self.role, self.name);
        pg_admin(&wrapped).await.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }

    /// The database URL of the role, with its schema first on the search path.
    pub fn url(&self) -> String {
        let base = pg_url();
        let (scheme, rest) = base.split_once("://").unwrap_or(("postgres", base.as_str()));
        let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
        let host = host.split_once('?').map_or(host, |(h, _)| h);
        format!("{scheme}://{}@{host}?options=-c%20search_path%3D{}", self.role, self.name)
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let (schema, role) = (self.name.clone(), self.role.clone());
        // The host's pooled connections may still be open: end them first.
        let cleanup = format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}';
             DROP SCHEMA IF EXISTS {schema} CASCADE; DROP OWNED BY {role}; DROP ROLE IF EXISTS {role};"
        );
        // A runtime of its own on a thread of its own: drop may run inside a runtime.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                for _ in 0..20 {
                    if pg_admin(&cleanup).await.is_ok() {
                        return Some(());
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                None
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("warning: could not drop the test schema {} and role {}", self.name, self.role);
        }
    }
}

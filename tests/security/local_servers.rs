//! What a page in the developer's browser, or a server on the network, can
//! do to a host meant for one machine: DNS rebinding against a host on
//! loopback, and the compile store's link to its database.

use super::*;

/// A page whose name a rebinding DNS points at 127.0.0.1 sends its own name
/// in `Host`: a host listening on loopback answers it 421, on every route,
/// before anything runs; loopback names still work.
#[tokio::test]
async fn rebinding_a_loopback_host_reads_nothing() {
    let _serial = SERIAL.lock().await;
    let upstream = Upstream::start().await;
    let server = Server::start(config(|c| {
        c.bind = IpAddr::V4(Ipv4Addr::LOCALHOST);
        c.http_allow = upstream.authority.parse().expect("allow-list");
    }))
    .await;
    let port = server.base.rsplit(':').next().expect("port").to_string();
    let script = format!("RequestGet(\"{}/text\", , , r)\naddResult(r)", upstream.base);
    let request = |host: String, path: &'static str| {
        let client = server.client.clone();
        let url = format!("{}{path}", server.base);
        let script = script.clone();
        async move {
            let req = if path == "/api/v1/execute" {
                client.post(url).json(&json!({ "script": script }))
            } else {
                client.get(url)
            };
            let resp = req.header("host", host).send().await.expect("request");
            (resp.status().as_u16(), resp.text().await.unwrap_or_default())
        }
    };
    let mut refused = 0;
    for path in ["/health", "/metrics", "/openapi.json", "/readyz", "/api/v1/execute"] {
        for host in [format!("rebind.attacker.example:{port}"), "attacker.example".into(), format!("10.0.0.1:{port}")] {
            let (status, text) = request(host.clone(), path).await;
            assert_eq!(status, 421, "{host}{path}: {text}");
            assert!(text.contains("\"kind\":\"misdirected_host\""), "{text}");
            assert!(!text.contains("capabilities") && !text.contains("avap_"), "{host}{path} leaked: {text}");
            refused += 1;
        }
    }
    assert_eq!(upstream.hits(), 0, "a misdirected request ran its script");
    for host in
        [format!("127.0.0.1:{port}"), format!("localhost:{port}"), format!("[::1]:{port}"), "app.localhost".into()]
    {
        let (status, text) = request(host.clone(), "/api/v1/execute").await;
        assert_eq!(status, 200, "{host}: {text}");
    }
    assert_eq!(upstream.hits(), 4);
    // A host listening on every interface (a container) is not held to names.
    let open = Server::start(config(|_| {})).await;
    let resp = open.client.get(format!("{}/readyz", open.base)).header("host", "avap.internal").send().await;
    assert_eq!(resp.expect("readyz").status().as_u16(), 200);
    report(format!("rebinding: {refused} requests for other names refused 421 by a loopback host, 0 scripts run"));
}

/// The compile store replaces a package only for the caller that stored
/// it, and writes to the schema it is given whatever the connection's
/// `search_path` says.
#[tokio::test]
async fn compile_store_rows_belong_to_their_caller() {
    use common::fixtures::{PgSchema, pg_admin};
    let _serial = SERIAL.lock().await;
    let schema = PgSchema::create().await;
    // The connection's search_path names `public` first (where this role may
    // not create anything): the store must not depend on it.
    let url = schema.url().replace(&format!("search_path%3D{}", schema.name), "search_path%3Dpublic");
    let server = Server::start(config(|c| {
        c.compile_store = url.clone();
        c.compile_store_schema = schema.name.clone();
        c.api_tokens = "alice-token-1,bob-token-22".parse().expect("tokens");
    }))
    .await;
    let compile = |token: &'static str, script: &'static str| {
        let client = server.client.clone();
        let url = format!("{}/api/v1/compile", server.base);
        async move {
            let resp = client
                .post(url)
                .bearer_auth(token)
                .json(&json!({"name": "shared_cmd", "script": script}))
                .send()
                .await
                .expect("compile");
            (resp.status().as_u16(), resp.json::<Value>().await.expect("json"))
        }
    };
    let (status, first) = compile("alice-token-1", "addVar(a, 'alice')\naddResult(a)").await;
    assert_eq!((status, &first["stored"]), (200, &json!(true)), "{first}");
    let (status, refused) = compile("bob-token-22", "addVar(a, 'bob')\naddResult(a)").await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["kind"], json!("conflict"), "{refused}");
    let (status, again) = compile("alice-token-1", "addVar(a, 'alice again')\naddResult(a)").await;
    assert_eq!(status, 200, "{again}");

    let read = |sql: String| async move {
        let (client, connection) =
            tokio_postgres::connect(&common::fixtures::pg_url(), tokio_postgres::NoTls).await.expect("connect");
        tokio::spawn(connection);
        client.query(&sql, &[]).await.expect("query")
    };
    let rows =
        read(format!("SELECT bytecode, owner FROM {}.avap_bytecode WHERE command_name = 'shared_cmd'", schema.name))
            .await;
    assert_eq!(rows.len(), 1);
    let (bytecode, owner): (Vec<u8>, String) = (rows[0].get(0), rows[0].get(1));
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::STANDARD;
    assert_eq!(engine.encode(&bytecode), again["package"].as_str().expect("package"), "Alice's latest, not Bob's");
    assert!(owner.starts_with("token:") && owner.len() == "token:".len() + 16, "{owner}");
    assert!(!owner.contains("alice"), "the token itself is not stored");
    let public = read(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' AND table_name = 'avap_bytecode'"
            .into(),
    )
    .await;
    let in_public: i64 = public[0].get(0);
    assert_eq!(in_public, 0, "nothing went through search_path into public");
    // A row with no owner (the original server's) is replaced by nobody.
    pg_admin(&format!(
        "INSERT INTO {}.avap_bytecode (command_name, bytecode) VALUES ('legacy_cmd', '\\x00')",
        schema.name
    ))
    .await
    .expect("a legacy row");
    let legacy = server
        .client
        .post(format!("{}/api/v1/compile", server.base))
        .bearer_auth("alice-token-1")
        .json(&json!({"name": "legacy_cmd", "script": "addVar(a, 1)"}))
        .send()
        .await
        .expect("compile");
    assert_eq!(legacy.status().as_u16(), 409);
    report(
        "compile store: a package stored by one token is not replaced by another (409), nor a row with no owner".into(),
    );
}

/// `--compile-store` with libpq's default `sslmode=prefer` toward a server
/// that is not on this machine asks for TLS first and never sends the
/// password in the clear: a fake server on a namespace address records the
/// first message it gets and, if it is a startup message, asks for a
/// cleartext password.
#[test]
fn compile_store_asks_a_remote_server_for_tls() {
    let _serial = SERIAL.blocking_lock();
    let ns = match netns::Namespaces::create() {
        Ok(ns) => ns,
        Err(netns::Refused(why)) if why.contains("Operation not permitted") && std::env::var_os("CI").is_none() => {
            report(format!("compile store TLS: SKIPPED, this kernel or sandbox refuses network namespaces ({why})"));
            return;
        }
        Err(netns::Refused(why)) => panic!("could not create the test's network namespaces: {why}"),
    };
    let client = ns.client.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || netns::enter(&client))
        .build()
        .expect("runtime");
    let ns = Arc::new(ns);
    let inner = ns.clone();
    std::thread::spawn(move || {
        netns::enter(&inner.client);
        runtime.block_on(async move {
            let addr = SocketAddr::new(IpAddr::V4(netns::TARGET_V4), 5432);
            let listener = netns::listeners_in(&inner.target, &[addr]).into_iter().next().expect("listener");
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio");
            let seen: Arc<std::sync::Mutex<Vec<u8>>> = Arc::default();
            let record = seen.clone();
            tokio::spawn(async move {
                while let Ok((mut stream, _)) = listener.accept().await {
                    let record = record.clone();
                    tokio::spawn(async move {
                        let mut first = [0u8; 8];
                        if stream.read_exact(&mut first).await.is_err() {
                            return;
                        }
                        record.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(&first);
                        if first == [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f] {
                            // SSLRequest: no TLS here, so the client must give up.
                            let _ = stream.write_all(b"N").await;
                            return;
                        }
                        // A startup message in plaintext: ask for the password in clear.
                        let mut rest = vec![0u8; 4096];
                        let _ = stream.read(&mut rest).await;
                        let _ = stream.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3]).await;
                        let mut password = vec![0u8; 4096];
                        if let Ok(n) = stream.read(&mut password).await {
                            record.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(&password[..n]);
                        }
                    });
                }
            });
            let url = format!("postgres://compiler:hunter2-secret@{}:5432/avap", netns::TARGET_V4);
            let server = Server::start(config(|c| c.compile_store = url)).await;
            let (status, body, _) =
                server.post("/api/v1/compile", json!({"name": "x", "script": "addVar(a, 1)"})).await;
            assert_eq!(status, 500, "the store could not be reached over TLS: {body}");
            let seen = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
            assert!(seen.len() >= 8, "the fake server saw no connection");
            assert_eq!(&seen[..8], &[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f], "the first message is not an SSLRequest");
            let text = String::from_utf8_lossy(&seen);
            assert!(!text.contains("hunter2-secret"), "the password went out in the clear: {text}");
            report(
                "compile store: sslmode=prefer toward a server on another address asked for TLS, sent no password"
                    .into(),
            );
        })
    })
    .join()
    .expect("the compile-store TLS test panicked");
}

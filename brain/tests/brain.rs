//! avap-brain over real gRPC on loopback: catalog contents, auth, lookups,
//! health, and the watched catalog folder; its ports under idle and
//! hostile connections ([`ports`]); the Python it serves to the original
//! servers, run ([`python`]).

#[path = "brain/ports.rs"]
mod ports;
#[path = "brain/python.rs"]
mod python;

use std::path::Path;
use std::time::Duration;

use avap_brain::{Brain, BrainConfig};
use avap_wire::auth::{AUTH_METADATA, CLIENT_METADATA, DEFAULT_API_KEY, DEFAULT_INTERNAL_KEY, HOST_CLIENT};
use avap_wire::catalog::{
    GUEST_ARTIFACT_ENTRY, TYPE_AVAP, TYPE_FUNCTION, TYPE_GUEST_ARTIFACT, TYPE_GUEST_VM, entry_hash, version_hash,
};
use avap_wire::guest_sig::{
    ArtifactClaim, ArtifactStatement, GuestSignature, GuestSigningKey, SignatureFile, dev_signing_key,
};
use avap_wire::keys::{KeyScheme, Keys};
use avap_wire::manifest::{MANIFEST_ENTRY, Manifest};
use avap_wire::package;
use avap_wire::pb::{CatalogResponse, CommandRequest, CommandResponse, DefinitionEngineClient, Empty};
use tokio::sync::oneshot;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Streaming};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

const GREET: &str = "function greet(who) {\n  return `hi ${who}`\n}\n";
const TWICE: &str = "function twice(a, b) {\n  return a + b\n}\n";
/// The smallest valid wasm module (magic and version only).
const TINY_WASM: &[u8] = b"\0asm\x01\0\0\0";

struct Running {
    brain: Brain,
    channel: Channel,
    stop: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<Result<(), avap_brain::BrainError>>,
}

impl Running {
    async fn start(config: BrainConfig) -> Running {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let brain = Brain::new(config).expect("brain starts");
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(brain.clone().serve(listener, async move {
            let _ = stopped.await;
        }));
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .expect("connect");
        Running { brain, channel, stop: Some(stop), server }
    }

    fn client(&self) -> DefinitionEngineClient<Channel> {
        DefinitionEngineClient::new(self.channel.clone())
    }

    async fn sync(&self) -> CatalogResponse {
        self.client().sync_catalog(authed(Empty {})).await.expect("SyncCatalog").into_inner()
    }

    async fn watch(&self) -> Streaming<CatalogResponse> {
        self.client().watch_catalog(authed(Empty {})).await.expect("WatchCatalog").into_inner()
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.server)
            .await
            .expect("server stops in time")
            .expect("server task")
            .expect("server ran cleanly");
    }
}

/// A CA (its PEM), and a certificate (PEM) and key (PEM) it signed for
/// `names`.
fn certificates(names: &[&str]) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "avap test CA");
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let key = rcgen::KeyPair::generate().expect("key");
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let cert = rcgen::CertificateParams::new(names).expect("params").signed_by(&key, &ca, &ca_key).expect("cert");
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// A call as this project's host makes it: the key, and the client
/// metadata that asks for the whole catalog.
fn authed<T>(message: T) -> Request<T> {
    let mut request = with_key(message, DEFAULT_API_KEY);
    request.metadata_mut().insert(CLIENT_METADATA, HOST_CLIENT.parse().expect("ascii"));
    request
}

fn with_key<T>(message: T, key: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(AUTH_METADATA, key.parse().expect("ascii key"));
    request
}

fn folder_config(dir: &Path) -> BrainConfig {
    BrainConfig { catalog_dir: Some(dir.to_path_buf()), poll_interval: Duration::from_millis(50), ..BrainConfig::dev() }
}

fn find<'a>(catalog: &'a CatalogResponse, name: &str) -> Option<&'a CommandResponse> {
    catalog.commands.iter().find(|c| c.name == name)
}

/// An entry's payload, verified under the catalog-entry key derived from `secret`.
fn payload<'a>(entry: &'a CommandResponse, secret: &str) -> &'a [u8] {
    let keys = Keys::new(secret.as_bytes(), KeyScheme::Separated);
    package::verify(keys.catalog_entry(), &entry.code).expect("package verifies")
}

/// The catalog's manifest, verified.
fn manifest(catalog: &CatalogResponse, secret: &str) -> Manifest {
    let keys = Keys::new(secret.as_bytes(), KeyScheme::Separated);
    Manifest::open(find(catalog, MANIFEST_ENTRY).expect("a manifest"), keys.manifest()).expect("manifest verifies")
}

/// Checks the invariants every catalog keeps: counts, hashes, every entry
/// signed, the manifest listing exactly the other entries.
fn assert_consistent(catalog: &CatalogResponse, secret: &str) {
    assert_eq!(catalog.total_count as usize, catalog.commands.len());
    let entries: Vec<&CommandResponse> = catalog.commands.iter().filter(|c| c.name != MANIFEST_ENTRY).collect();
    let owned: Vec<CommandResponse> = entries.iter().map(|e| (*e).clone()).collect();
    assert_eq!(catalog.version_hash, version_hash(&owned), "the entries' hash, the manifest left out");
    assert_eq!(entries.len() + 1, catalog.commands.len(), "exactly one manifest");
    manifest(catalog, secret).check(&entries).expect("the manifest lists the catalog");
    for entry in entries {
        payload(entry, secret);
        assert_eq!(entry.hash, entry_hash(&entry.code), "{}", entry.name);
        let interface: serde_json::Value = serde_json::from_str(&entry.interface_json).expect("interface is JSON");
        let signed = [TYPE_GUEST_VM, TYPE_GUEST_ARTIFACT].contains(&entry.r#type.as_str());
        assert_eq!(interface.is_array(), !signed, "{}", entry.name);
    }
}

/// Next catalog of a watch stream (keepalives skipped), within `secs` seconds.
async fn next_catalog(stream: &mut Streaming<CatalogResponse>, secs: u64) -> CatalogResponse {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let message = tokio::time::timeout_at(deadline, stream.message())
            .await
            .expect("a catalog in time")
            .expect("stream ok")
            .expect("stream open");
        if !message.keepalive {
            return message;
        }
    }
}

/// Polls `f` until it holds or `secs` seconds pass.
async fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

#[tokio::test]
async fn sync_catalog_serves_the_standard_commands_and_the_guest() {
    let brain = Running::start(BrainConfig::dev()).await;
    let catalog = brain.sync().await;
    assert_eq!(catalog.commands.len(), 29, "27 commands, the guest, the manifest");
    assert_eq!(catalog.total_count, 29);
    assert_consistent(&catalog, DEFAULT_INTERNAL_KEY);
    assert_eq!(catalog.commands.iter().filter(|c| c.r#type == TYPE_FUNCTION).count(), 27);

    let add_var = find(&catalog, "addVar").expect("addVar");
    let interface: serde_json::Value = serde_json::from_str(&add_var.interface_json).expect("json");
    assert_eq!(
        interface,
        serde_json::json!([{"item": "targetVarName", "type": "variable"}, {"item": "varValue", "type": "value"}])
    );
    // Its payload: the Python implementation for the original servers.
    let python = String::from_utf8_lossy(payload(add_var, DEFAULT_INTERNAL_KEY)).into_owned();
    assert_eq!(Some(python.as_str()), avap_brain::python::source("addVar"));
    assert!(python.contains("\n# AVAP command `addVar("), "{python}");
    let exception = find(&catalog, "exception").expect("exception");
    assert_eq!(exception.interface_json, r#"[{"item":"error","type":"var"}]"#);
    assert_eq!(find(&catalog, "else").expect("else").interface_json, "[]");

    let guest = find(&catalog, "avap-guest-vm").expect("guest entry");
    assert_eq!(guest.r#type, TYPE_GUEST_VM);
    assert_eq!(payload(guest, DEFAULT_INTERNAL_KEY), avap_guest_embed::GUEST_WASM);
    // Signed with the development key (--dev, no key of its own).
    let signature = GuestSignature::from_interface_json(&guest.interface_json).expect("signed");
    let dev = dev_signing_key().public();
    assert_eq!(signature.verify(avap_guest_embed::GUEST_WASM, &[dev]), Ok(dev_signing_key().public().id()));
    let pin = manifest(&catalog, DEFAULT_INTERNAL_KEY).guest.expect("the manifest pins the guest");
    assert_eq!(pin.version, avap_guest_vm::GUEST_VERSION);
    assert_eq!(pin.rollout_percent, 100);
    assert!(pin.digest.starts_with("sha256:"));
    assert_eq!(*brain.brain.catalog(), catalog);
    assert!(brain.brain.last_error().is_none());
    brain.stop().await;
}

#[tokio::test]
async fn packages_are_signed_with_the_configured_internal_key() {
    let config = BrainConfig { internal_key: "another key".into(), ..BrainConfig::dev() };
    let brain = Running::start(config).await;
    let catalog = brain.sync().await;
    assert_consistent(&catalog, "another key");
    let entry = find(&catalog, "addVar").expect("addVar");
    assert!(package::verify(DEFAULT_INTERNAL_KEY.as_bytes(), &entry.code).is_err());
    // Under its own domain: neither the secret itself nor the package key.
    assert!(package::verify(b"another key", &entry.code).is_err());
    let keys = Keys::new(b"another key", KeyScheme::Separated);
    assert!(package::verify(keys.package(), &entry.code).is_err());
    brain.stop().await;
}

#[tokio::test]
async fn every_call_needs_the_api_key() {
    let config = BrainConfig { api_key: "sesame".into(), ..BrainConfig::dev() };
    let brain = Running::start(config).await;
    let mut client = brain.client();
    let unauthenticated = |r: Result<_, tonic::Status>| match r {
        Ok(_) => panic!("accepted without the right key"),
        Err(status) => assert_eq!(status.code(), Code::Unauthenticated),
    };
    unauthenticated(client.sync_catalog(Empty {}).await.map(|_| ()));
    unauthenticated(client.sync_catalog(with_key(Empty {}, DEFAULT_API_KEY)).await.map(|_| ()));
    unauthenticated(client.sync_catalog(with_key(Empty {}, "sesame ")).await.map(|_| ()));
    unauthenticated(client.get_command(CommandRequest { name: "addVar".into() }).await.map(|_| ()));
    unauthenticated(client.watch_catalog(with_key(Empty {}, "sesam")).await.map(|_| ()));
    let ok = client.sync_catalog(with_key(Empty {}, "sesame")).await.expect("right key");
    assert_eq!(ok.into_inner().commands.len(), 27, "no client metadata: the original servers' view");
    brain.stop().await;
}

#[tokio::test]
async fn get_command_finds_entries_and_reports_unknown_names() {
    let brain = Running::start(BrainConfig::dev()).await;
    let catalog = brain.sync().await;
    let mut client = brain.client();
    for name in ["addVar", "RequestPost", "avap-guest-vm"] {
        let entry = client.get_command(authed(CommandRequest { name: name.into() })).await.expect("known");
        assert_eq!(Some(&entry.into_inner()), find(&catalog, name));
    }
    for name in ["nope", "addvar", ""] {
        let status = client.get_command(authed(CommandRequest { name: name.into() })).await.expect_err("unknown");
        assert_eq!(status.code(), Code::NotFound, "{name:?}");
    }
    brain.stop().await;
}

#[tokio::test]
async fn health_reports_serving_without_auth() {
    let brain = Running::start(BrainConfig::dev()).await;
    let mut health = HealthClient::new(brain.channel.clone());
    for service in ["avap.DefinitionEngine", ""] {
        let response =
            health.check(HealthCheckRequest { service: service.into() }).await.expect("health check").into_inner();
        assert_eq!(response.status, ServingStatus::Serving as i32, "{service:?}");
    }
    brain.stop().await;
}

#[tokio::test]
async fn folder_commands_are_served_and_watched() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("greet.avap"), GREET).expect("write");
    std::fs::write(dir.path().join("notes.txt"), "ignored").expect("write");
    let brain = Running::start(folder_config(dir.path())).await;

    let first = brain.sync().await;
    assert_eq!(first.commands.len(), 30);
    assert_consistent(&first, DEFAULT_INTERNAL_KEY);
    let greet = find(&first, "greet").expect("greet");
    assert_eq!(greet.r#type, TYPE_AVAP);
    assert_eq!(greet.interface_json, r#"[{"item":"who","type":"value"}]"#);
    assert_eq!(payload(greet, DEFAULT_INTERNAL_KEY), GREET.as_bytes());

    let mut watch = brain.watch().await;
    assert_eq!(next_catalog(&mut watch, 5).await, first);

    // A new valid command: pushed to watchers, then returned by SyncCatalog.
    std::fs::write(dir.path().join("twice.avap"), TWICE).expect("write");
    let second = next_catalog(&mut watch, 5).await;
    assert_eq!(second.commands.len(), 31);
    assert_ne!(second.version_hash, first.version_hash);
    assert!(
        manifest(&second, DEFAULT_INTERNAL_KEY).serial > manifest(&first, DEFAULT_INTERNAL_KEY).serial,
        "every publication has a newer serial"
    );
    assert_consistent(&second, DEFAULT_INTERNAL_KEY);
    let twice = find(&second, "twice").expect("twice");
    assert_eq!(twice.interface_json, r#"[{"item":"a","type":"value"},{"item":"b","type":"value"}]"#);
    assert_eq!(brain.sync().await, second);

    // An invalid file: the previous catalog stays, the error names the file.
    std::fs::write(dir.path().join("broken.avap"), "function broken(a {\n  return a\n}\n").expect("write");
    assert!(eventually(5, || brain.brain.last_error().is_some()).await, "error reported");
    let errors = brain.brain.last_error().expect("error");
    let text = errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
    assert!(text.contains("broken.avap"), "{text}");
    assert!(text.contains("line 1, column"), "{text}");
    assert_eq!(errors[0].path().and_then(|p| p.file_name()), Some("broken.avap".as_ref()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(brain.sync().await, second);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), next_catalog(&mut watch, 1)).await.is_err(),
        "nothing pushed"
    );

    // Fixed: the error clears and the catalog with all three is published.
    std::fs::write(dir.path().join("broken.avap"), "function broken(a) {\n  return a\n}\n").expect("write");
    let third = next_catalog(&mut watch, 5).await;
    assert_eq!(third.commands.len(), 32);
    assert!(find(&third, "broken").is_some());
    assert!(brain.brain.last_error().is_none());

    // Removing a file removes the command.
    std::fs::remove_file(dir.path().join("greet.avap")).expect("remove");
    let fourth = next_catalog(&mut watch, 5).await;
    assert!(find(&fourth, "greet").is_none());
    assert_eq!(fourth.commands.len(), 31);
    brain.stop().await;
}

#[tokio::test]
async fn folder_files_must_define_the_command_they_are_named_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("hello.avap"), GREET).expect("write");
    std::fs::write(dir.path().join("addVar.avap"), "function addVar(a, b) {\n  return 1\n}\n").expect("write");
    let brain = Running::start(folder_config(dir.path())).await;
    // A folder that does not build at start-up: the built-in catalog, and the error.
    assert_eq!(brain.sync().await.commands.len(), 29);
    let errors = brain.brain.last_error().expect("errors");
    let files: Vec<_> = errors.iter().filter_map(|e| e.path()?.file_name()?.to_str()).collect();
    assert_eq!(files, ["addVar.avap", "hello.avap"]);

    std::fs::rename(dir.path().join("hello.avap"), dir.path().join("greet.avap")).expect("rename");
    std::fs::remove_file(dir.path().join("addVar.avap")).expect("remove");
    assert!(eventually(5, || brain.brain.catalog().commands.len() == 30).await, "fixed folder published");
    assert!(brain.brain.last_error().is_none());
    brain.stop().await;
}

#[tokio::test]
async fn guest_vm_wasm_in_the_folder_overrides_the_built_in_module() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("guest-vm.wasm"), TINY_WASM).expect("write");
    let brain = Running::start(folder_config(dir.path())).await;
    let catalog = brain.sync().await;
    assert_eq!(catalog.commands.len(), 29);
    let guest = find(&catalog, "avap-guest-vm").expect("guest");
    assert_eq!(payload(guest, DEFAULT_INTERNAL_KEY), TINY_WASM);
    assert_eq!(manifest(&catalog, DEFAULT_INTERNAL_KEY).guest.expect("pin").version, "", "no version record");

    // Not a wasm module: rejected, the previous module stays.
    let mut watch = brain.watch().await;
    assert_eq!(next_catalog(&mut watch, 5).await, catalog);
    std::fs::write(dir.path().join("guest-vm.wasm"), b"not wasm").expect("write");
    assert!(eventually(5, || brain.brain.last_error().is_some()).await);
    assert_eq!(brain.sync().await, catalog);

    // Removed: back to the built-in module.
    std::fs::remove_file(dir.path().join("guest-vm.wasm")).expect("remove");
    let back = next_catalog(&mut watch, 5).await;
    let guest = find(&back, "avap-guest-vm").expect("guest");
    assert_eq!(payload(guest, DEFAULT_INTERNAL_KEY), avap_guest_embed::GUEST_WASM);
    brain.stop().await;
}

#[tokio::test]
async fn watch_streams_end_when_the_server_shuts_down() {
    let brain = Running::start(BrainConfig::dev()).await;
    let mut watch = brain.watch().await;
    next_catalog(&mut watch, 5).await;
    brain.stop().await;
    let end = tokio::time::timeout(Duration::from_secs(5), watch.message()).await.expect("stream ends");
    assert!(!matches!(end, Ok(Some(_))));
}

#[test]
fn the_published_default_keys_and_plaintext_need_a_flag() {
    let refused = |config: BrainConfig| Brain::new(config).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(refused(BrainConfig::default()).contains("AVAP_INTERNAL_KEY is the published default"));
    let secret = "a secret of at least thirty-two bytes".to_string();
    let token = "a token of sixteen bytes".to_string();
    let own_keys = BrainConfig { internal_key: secret.clone(), api_key: token, ..BrainConfig::default() };
    assert!(refused(BrainConfig { internal_key: secret, ..BrainConfig::default() }).contains("API_KEY"));
    let short = BrainConfig { internal_key: "k".into(), allow_plaintext: true, ..own_keys.clone() };
    assert!(refused(short).contains("AVAP_INTERNAL_KEY is 1 bytes"));
    let dev_key = Some(std::sync::Arc::new(dev_signing_key()));
    let published = BrainConfig { guest_signing_key: dev_key, allow_plaintext: true, ..own_keys.clone() };
    assert!(refused(published).contains("development key"));
    assert!(refused(own_keys.clone()).contains("no TLS certificate"), "plaintext needs a flag");
    assert!(Brain::new(BrainConfig { allow_plaintext: true, ..own_keys }).is_ok());
    assert!(Brain::new(BrainConfig::dev()).is_ok());
    assert!(Brain::new(BrainConfig { original_servers: true, ..BrainConfig::default() }).is_ok());
}

#[tokio::test]
async fn original_servers_mode_signs_entries_with_the_secret_itself() {
    let brain = Running::start(BrainConfig { original_servers: true, ..BrainConfig::default() }).await;
    let catalog = brain.sync().await;
    let entry = find(&catalog, "addVar").expect("addVar");
    assert!(package::verify(DEFAULT_INTERNAL_KEY.as_bytes(), &entry.code).is_ok(), "what the originals verify");
    assert!(find(&catalog, "avap-guest-vm").is_none(), "no guest key: no guest entry");
    brain.stop().await;
}

/// What an original language server gets (a call without `x-avap-client`):
/// the `function` entries only, each a package it verifies with the secret
/// itself, and neither the guest module nor the manifest nor AVAP source,
/// which it would try to compile as Python.
#[tokio::test]
async fn clients_that_are_not_hosts_get_only_the_function_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("greet.avap"), GREET).expect("write");
    let key = std::sync::Arc::new(GuestSigningKey::generate().expect("key"));
    let config = BrainConfig {
        original_servers: true,
        guest_signing_key: Some(key),
        catalog_dir: Some(dir.path().to_path_buf()),
        ..BrainConfig::default()
    };
    let brain = Running::start(config).await;
    let full = brain.sync().await;
    assert!(
        find(&full, "avap-guest-vm").is_some()
            && find(&full, "greet").is_some()
            && find(&full, MANIFEST_ENTRY).is_some()
    );
    let mut client = brain.client();
    let original = client.sync_catalog(with_key(Empty {}, DEFAULT_API_KEY)).await.expect("sync").into_inner();
    assert_eq!(original.commands.len(), 27);
    assert_eq!(original.total_count, 27);
    assert_eq!(original.version_hash, version_hash(&original.commands));
    for entry in &original.commands {
        assert_eq!(entry.r#type, TYPE_FUNCTION, "{}", entry.name);
        let payload = package::verify(DEFAULT_INTERNAL_KEY.as_bytes(), &entry.code).expect("the secret itself");
        assert!(std::str::from_utf8(payload).is_ok(), "{}: the original decodes payloads as UTF-8", entry.name);
    }
    for name in ["avap-guest-vm", MANIFEST_ENTRY, "greet"] {
        let status =
            client.get_command(with_key(CommandRequest { name: name.into() }, DEFAULT_API_KEY)).await.expect_err(name);
        assert_eq!(status.code(), Code::NotFound, "{name}");
    }
    let add_var = client.get_command(with_key(CommandRequest { name: "addVar".into() }, DEFAULT_API_KEY)).await;
    assert_eq!(Some(&add_var.expect("addVar").into_inner()), find(&full, "addVar"));
    // Another value of the metadata is not the host either.
    let mut other = with_key(Empty {}, DEFAULT_API_KEY);
    other.metadata_mut().insert(CLIENT_METADATA, "avap-host-impostor".parse().expect("ascii"));
    assert_eq!(client.sync_catalog(other).await.expect("sync").into_inner().commands.len(), 27);
    let mut watch = client.watch_catalog(with_key(Empty {}, DEFAULT_API_KEY)).await.expect("watch").into_inner();
    assert_eq!(next_catalog(&mut watch, 10).await, original);
    brain.stop().await;
}

#[tokio::test]
async fn a_folder_guest_needs_its_signature_file_or_a_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let release = GuestSigningKey::generate().expect("key");
    std::fs::write(dir.path().join("guest-vm.wasm"), TINY_WASM).expect("write");
    let config = BrainConfig {
        dev: false,
        allow_plaintext: true,
        internal_key: "k".into(),
        api_key: DEFAULT_API_KEY.into(),
        original_servers: true,
        ..folder_config(dir.path())
    };
    let brain = Running::start(config).await;
    let errors = brain.brain.last_error().expect("an unsigned module is an error");
    assert!(errors[0].to_string().contains("not signed"), "{}", errors[0]);
    assert!(find(&brain.sync().await, "avap-guest-vm").is_none(), "the built-in catalog, no guest (no key)");

    // What `avap-brain sign-guest` writes, beside the module.
    let file = release.sign_file(TINY_WASM);
    std::fs::write(dir.path().join("guest-vm.wasm.sig"), serde_json::to_string_pretty(&file).expect("json"))
        .expect("write");
    let sig = file.signature();
    std::fs::write(dir.path().join("rollout.json"), r#"{"percent": 25}"#).expect("write");
    assert!(eventually(5, || brain.brain.last_error().is_none()).await, "signed: published");
    let catalog = brain.sync().await;
    let guest = find(&catalog, "avap-guest-vm").expect("guest");
    let carried = GuestSignature::from_interface_json(&guest.interface_json).expect("signature");
    assert_eq!(carried, sig);
    assert_eq!(carried.verify(TINY_WASM, &[release.public()]), Ok(release.public().id()));
    let keys = Keys::new(b"k", KeyScheme::Original);
    let pin = Manifest::open(find(&catalog, MANIFEST_ENTRY).expect("manifest"), keys.manifest())
        .expect("opens")
        .guest
        .expect("pin");
    assert_eq!(pin.rollout_percent, 25);

    // Only the roll-out changes: a new catalog (new serial) all the same.
    let serial = brain.brain.serial();
    std::fs::write(dir.path().join("rollout.json"), r#"{"percent": 100}"#).expect("write");
    assert!(eventually(5, || brain.brain.serial() > serial).await, "the roll-out change is published");
    brain.stop().await;
}

#[tokio::test]
async fn idle_watch_streams_get_keepalives() {
    let brain =
        Running::start(BrainConfig { keepalive_interval: Duration::from_millis(50), ..BrainConfig::dev() }).await;
    let mut watch = brain.watch().await;
    let first = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .expect("in time")
        .expect("ok")
        .expect("open");
    assert!(!first.keepalive && !first.commands.is_empty());
    for _ in 0..3 {
        let next = tokio::time::timeout(Duration::from_secs(5), watch.message())
            .await
            .expect("in time")
            .expect("ok")
            .expect("open");
        assert!(next.keepalive, "only keepalives while nothing changes");
        assert!(next.commands.is_empty());
        assert_eq!(next.version_hash, first.version_hash);
    }
    brain.stop().await;
}

#[test]
fn keygen_and_sign_guest_make_a_signature_hosts_verify() {
    use std::process::Command;
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = env!("CARGO_BIN_EXE_avap-brain");
    let key = dir.path().join("release.key");
    let out = Command::new(bin).args(["keygen", "--out"]).arg(&key).output().expect("keygen");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let public: avap_wire::guest_sig::GuestPublicKey =
        String::from_utf8_lossy(&out.stdout).trim().parse().expect("keygen prints the public key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key).expect("key file").permissions().mode();
        assert_eq!(mode & 0o077, 0, "the secret key is readable by its owner only: {mode:o}");
    }
    let again = Command::new(bin).args(["keygen", "--out"]).arg(&key).output().expect("keygen");
    assert!(!again.status.success(), "keygen never overwrites a key");

    let shown = Command::new(bin).args(["public-key", "--key"]).arg(&key).output().expect("public-key");
    assert_eq!(String::from_utf8_lossy(&shown.stdout).trim(), public.to_string());

    let module = dir.path().join("guest-vm.wasm");
    std::fs::write(&module, TINY_WASM).expect("write");
    let signed = Command::new(bin).args(["sign-guest", "--key"]).arg(&key).arg(&module).output().expect("sign");
    assert!(signed.status.success(), "{}", String::from_utf8_lossy(&signed.stderr));
    let file: SignatureFile =
        serde_json::from_slice(&std::fs::read(dir.path().join("guest-vm.wasm.sig")).expect("the .sig file"))
            .expect("a signature");
    assert_eq!(file.public.as_deref(), Some(public.to_string().as_str()), "the .sig carries the public key");
    let sig = file.signature();
    assert_eq!(sig.verify(TINY_WASM, std::slice::from_ref(&public)), Ok(public.id()));
    assert!(sig.verify(b"\0asm\x01\0\0\0\0", &[public]).is_err(), "bound to the module's bytes");

    std::fs::write(&module, "(module)").expect("write");
    let text = Command::new(bin).args(["sign-guest", "--key"]).arg(&key).arg(&module).output().expect("sign");
    assert!(!text.status.success(), "only wasm binaries are signed");
}

/// `GET path` on the ops port, over a plain TCP connection.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: brain\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status line");
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn the_ops_port_serves_probes_and_metrics_and_drains() {
    let dir = tempfile::tempdir().expect("tempdir");
    let brain = Running::start(folder_config(dir.path())).await;
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = http.local_addr().expect("addr");
    let (stop_http, http_stopped) = oneshot::channel::<()>();
    let ops = tokio::spawn(brain.brain.clone().serve_http(http, async move {
        let _ = http_stopped.await;
    }));
    assert_eq!(http_get(addr, "/livez").await.0, 200);
    assert_eq!(http_get(addr, "/readyz").await, (200, r#"{"status":"ready"}"#.to_string()));

    let mut watch = brain.watch().await;
    next_catalog(&mut watch, 5).await;
    std::fs::write(dir.path().join("greet.avap"), GREET).expect("write");
    next_catalog(&mut watch, 5).await;
    let (status, metrics) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200);
    for line in [
        "avap_brain_catalog_entries 30",
        "avap_brain_publishes_total 2",
        "avap_brain_watchers 1",
        "avap_brain_calls_total{rpc=\"WatchCatalog\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
    assert!(metrics.contains(&format!("avap_brain_catalog_serial {}", brain.brain.serial())), "{metrics}");
    // The Prometheus naming rules: prefix, snake_case, counters sampled as _total.
    for family in metrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let (name, kind) = family.split_once(' ').expect("# TYPE name kind");
        assert!(name.starts_with("avap_brain_"), "{name}");
        assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'), "{name}");
        if kind == "counter" {
            assert!(metrics.contains(&format!("\n{name}_total")), "{name}");
        }
    }
    std::fs::write(dir.path().join("broken.avap"), "function broken(a {\n}\n").expect("write");
    assert!(eventually(5, || brain.brain.last_error().is_some()).await);
    assert!(http_get(addr, "/metrics").await.1.contains("avap_brain_folder_refusals_total 1"));
    drop(watch);
    assert!(
        eventually(5, || brain.brain.metrics().encode().contains("avap_brain_watchers 0")).await,
        "a closed stream is no longer counted"
    );

    // Shutdown: /readyz says so while the ops port is still up.
    let probe = brain.brain.clone();
    brain.stop().await;
    assert!(probe.metrics().draining());
    let (status, body) = http_get(addr, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("draining"), "{body}");
    let _ = stop_http.send(());
    ops.await.expect("task").expect("ops port served cleanly");
}

/// Every standard command's Python payload compiles as Python 3 (what an
/// original server does with it first, `compile(source, name, "exec")`),
/// and none is the old comment-only stub.
#[test]
fn every_standard_command_carries_python_that_compiles() {
    assert_eq!(avap_brain::python::STANDARD.len(), 27);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut files = Vec::new();
    for (name, source) in avap_brain::python::STANDARD {
        let path = dir.path().join(format!("{name}.py"));
        std::fs::write(&path, source).expect("write");
        files.push(path);
        let code_lines = source.lines().filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#')).count();
        assert!(code_lines >= 1, "{name} has no code");
    }
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg("import sys\nfor f in sys.argv[1:]:\n    compile(open(f, encoding='utf-8').read(), f, 'exec')\nprint('ok', len(sys.argv) - 1)")
        .args(&files)
        .output()
        .expect("python3 runs (CI installs it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok 27");
}

/// A manifest expires, and the brain seals its catalog again (same entries,
/// a newer serial, a later expiry) every quarter of the validity, pushed to
/// watchers: a host whose manifest expired has stopped hearing from it.
#[tokio::test]
async fn the_catalog_is_sealed_again_before_its_manifest_expires() {
    let config = BrainConfig { manifest_ttl: Duration::from_millis(400), ..BrainConfig::dev() };
    let brain = Running::start(config).await;
    let mut watch = brain.watch().await;
    let first = next_catalog(&mut watch, 5).await;
    let m1 = manifest(&first, DEFAULT_INTERNAL_KEY);
    assert_eq!(m1.format, 2);
    let now = avap_wire::manifest::now_ms();
    assert!(m1.expires_at_ms > now && m1.expires_at_ms <= now + 400, "{} against {now}", m1.expires_at_ms);
    let second = next_catalog(&mut watch, 5).await;
    let m2 = manifest(&second, DEFAULT_INTERNAL_KEY);
    assert!(m2.serial > m1.serial && m2.expires_at_ms > m1.expires_at_ms);
    assert_eq!(second.version_hash, first.version_hash, "the same entries");
    assert_eq!(m2.entries, m1.entries);
    assert!(m2.expires_at_ms - avap_wire::manifest::now_ms() > 200, "sealed again well before it expires");
    assert_consistent(&second, DEFAULT_INTERNAL_KEY);
    brain.stop().await;
}

/// Every entry's interface is in its manifest entry and in the version
/// hash: what a host acts on is what the brain signed.
#[tokio::test]
async fn manifests_bind_every_entrys_interface() {
    let brain = Running::start(BrainConfig::dev()).await;
    let catalog = brain.sync().await;
    let m = manifest(&catalog, DEFAULT_INTERNAL_KEY);
    let add_result = find(&catalog, "addResult").expect("addResult");
    let listed = m.entries.iter().find(|e| e.name == "addResult").expect("listed");
    assert_eq!(listed.interface, avap_wire::catalog::interface_hash(&add_result.interface_json));
    let mut altered = catalog.clone();
    for e in altered.commands.iter_mut().filter(|e| e.name == "addResult") {
        e.interface_json = e.interface_json.replace("sourceVariable", "sourceVariablf");
    }
    let entries: Vec<&CommandResponse> = altered.commands.iter().filter(|c| c.name != MANIFEST_ENTRY).collect();
    let err = m.check(&entries).expect_err("an altered interface");
    assert!(err.to_string().contains("`addResult` (function): its interface_json"), "{err}");
    brain.stop().await;
}

/// A roll-out copied as documented (the module, then its `.sig`) never
/// publishes a mismatched pair: while they do not match the brain waits
/// (no error, the previous catalog stays), then publishes the matching
/// pair. Past the grace a pair that still does not match is an error.
#[tokio::test]
async fn a_guest_copied_before_its_signature_waits_for_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let release = std::sync::Arc::new(GuestSigningKey::generate().expect("key"));
    let (v1, v2): (&[u8], &[u8]) = (TINY_WASM, b"\0asm\x01\0\0\0\0\0");
    let sig_path = dir.path().join("guest-vm.wasm.sig");
    let write_sig = |module: &[u8]| {
        // A .sig as older versions of sign-guest wrote it (no public key):
        // the brain checks it with its own key.
        let text = serde_json::to_string_pretty(&release.sign(module)).expect("json");
        std::fs::write(&sig_path, text).expect("write");
    };
    std::fs::write(dir.path().join("guest-vm.wasm"), v1).expect("write");
    write_sig(v1);
    let config = BrainConfig {
        guest_signing_key: Some(release.clone()),
        guest_pair_grace: Duration::from_secs(30),
        ..folder_config(dir.path())
    };
    let brain = Running::start(config).await;
    let mut published = brain.brain.subscribe();
    let serial = brain.brain.serial();
    let collector = tokio::spawn(async move {
        let mut seen = Vec::new();
        while published.changed().await.is_ok() {
            seen.push(published.borrow_and_update().clone());
        }
        seen
    });

    // The module first: for a while the pair does not match.
    std::fs::write(dir.path().join("guest-vm.wasm"), v2).expect("write");
    assert!(eventually(5, || brain.brain.waiting_for_guest_pair()).await, "waiting");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(brain.brain.last_error().is_none(), "a copy in progress is not an error");
    assert_eq!(brain.brain.serial(), serial, "nothing published meanwhile");
    assert!(brain.brain.metrics().encode().contains("avap_brain_guest_pair_waiting 1"));
    // Then its signature: the pair is published.
    write_sig(v2);
    assert!(eventually(5, || brain.brain.serial() > serial).await, "the matching pair is published");
    assert!(!brain.brain.waiting_for_guest_pair());
    let catalog = brain.sync().await;
    assert_eq!(payload(find(&catalog, "avap-guest-vm").expect("guest"), DEFAULT_INTERNAL_KEY), v2);
    brain.stop().await;
    for catalog in collector.await.expect("collector") {
        let guest = find(&catalog, "avap-guest-vm").expect("guest");
        let sig = GuestSignature::from_interface_json(&guest.interface_json).expect("signed");
        let module = payload(guest, DEFAULT_INTERNAL_KEY);
        assert!(sig.verify(module, &[release.public()]).is_ok(), "a mismatched pair was published");
    }
}

#[tokio::test]
async fn a_pair_that_never_matches_is_an_error_after_the_grace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let release = GuestSigningKey::generate().expect("key");
    std::fs::write(dir.path().join("guest-vm.wasm"), b"\0asm\x01\0\0\0\0\0").expect("write");
    // sign-guest's .sig for another module: it carries its public key, so
    // the brain checks it without any key of its own.
    let sig = serde_json::to_string_pretty(&release.sign_file(TINY_WASM)).expect("json");
    std::fs::write(dir.path().join("guest-vm.wasm.sig"), sig).expect("write");
    let config = BrainConfig { guest_pair_grace: Duration::from_millis(300), ..folder_config(dir.path()) };
    let brain = Running::start(config).await;
    assert!(brain.brain.waiting_for_guest_pair() || brain.brain.last_error().is_some());
    assert!(eventually(5, || brain.brain.last_error().is_some()).await, "reported once the grace is over");
    let text = brain.brain.last_error().expect("error")[0].to_string();
    assert!(text.contains("guest-vm.wasm.sig") && text.contains("waiting for the pair to match"), "{text}");
    assert!(!brain.brain.waiting_for_guest_pair());
    assert!(brain.brain.metrics().encode().contains("avap_brain_folder_refusals_total 1"));
    let guest = find(&brain.sync().await, "avap-guest-vm").map(|g| payload(g, DEFAULT_INTERNAL_KEY).to_vec());
    assert_eq!(guest.as_deref(), Some(avap_guest_embed::GUEST_WASM), "the built-in catalog meanwhile");
    brain.stop().await;
}

/// What `avap precompile` writes for `module` (the brain cannot tell
/// machine code from any other bytes, nor check the engine: hosts do).
fn precompiled(dir: &Path, key: &GuestSigningKey, artifact: &[u8], module: &[u8]) -> ArtifactStatement {
    use sha2::Digest as _;
    let statement = ArtifactStatement {
        artifact: sha2::Sha256::digest(artifact).into(),
        module: sha2::Sha256::digest(module).into(),
        compiled: sha2::Sha256::digest(b"the module as hosts compile it").into(),
        engine: [9; 32],
    };
    std::fs::write(dir.join("guest-vm.cwasm"), artifact).expect("write");
    let sig = serde_json::to_string_pretty(&key.sign_artifact(&statement)).expect("json");
    std::fs::write(dir.join("guest-vm.cwasm.sig"), sig).expect("write");
    statement
}

/// The precompiled guest is published beside its module as one more
/// sealed entry, only with its signature and only for the module being
/// published: a pair half copied, or of another module, waits (no error,
/// nothing published meanwhile); past the grace it is a folder error.
#[tokio::test]
async fn a_precompiled_guest_is_published_beside_its_module_and_waits_for_its_pair() {
    let dir = tempfile::tempdir().expect("tempdir");
    let release = GuestSigningKey::generate().expect("key");
    let (v1, v2): (&[u8], &[u8]) = (TINY_WASM, b"\0asm\x01\0\0\0\0\0");
    let write_module = |module: &[u8]| {
        std::fs::write(dir.path().join("guest-vm.wasm"), module).expect("write");
        let sig = serde_json::to_string_pretty(&release.sign_file(module)).expect("json");
        std::fs::write(dir.path().join("guest-vm.wasm.sig"), sig).expect("write");
    };
    write_module(v1);
    let statement = precompiled(dir.path(), &release, b"machine code of v1", v1);
    let config = BrainConfig { guest_pair_grace: Duration::from_secs(30), ..folder_config(dir.path()) };
    let brain = Running::start(config).await;
    assert!(brain.brain.last_error().is_none(), "{:?}", brain.brain.last_error());
    let catalog = brain.sync().await;
    assert_consistent(&catalog, DEFAULT_INTERNAL_KEY);
    let entry = find(&catalog, GUEST_ARTIFACT_ENTRY).expect("the artifact entry");
    assert_eq!(entry.r#type, TYPE_GUEST_ARTIFACT);
    assert_eq!(payload(entry, DEFAULT_INTERNAL_KEY), b"machine code of v1");
    let claim = ArtifactClaim::from_interface_json(&entry.interface_json).expect("a claim");
    assert!(!entry.interface_json.contains("public"), "{}", entry.interface_json);
    assert_eq!(claim.verify(&statement, &[release.public()]), Ok(release.public().id()), "the release's signature");
    assert!(
        manifest(&catalog, DEFAULT_INTERNAL_KEY).entries.iter().any(|e| e.name == GUEST_ARTIFACT_ENTRY),
        "sealed like every entry"
    );
    // Never to the original servers.
    let original = brain.client().sync_catalog(with_key(Empty {}, DEFAULT_API_KEY)).await.expect("sync").into_inner();
    assert!(find(&original, GUEST_ARTIFACT_ENTRY).is_none());

    // A new module: the old artifact is of another module, so the brain
    // waits for the new one rather than publishing a mismatched pair.
    let serial = brain.brain.serial();
    write_module(v2);
    assert!(eventually(5, || brain.brain.waiting_for_guest_pair()).await, "waiting");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(brain.brain.last_error().is_none(), "a copy in progress is not an error");
    assert_eq!(brain.brain.serial(), serial, "nothing published meanwhile");
    // The artifact copied, its .sig not yet: still waiting.
    std::fs::write(dir.path().join("guest-vm.cwasm"), b"machine code of v2").expect("write");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(brain.brain.serial(), serial, "an artifact whose .sig is of the old one is not published");
    let statement = precompiled(dir.path(), &release, b"machine code of v2", v2);
    assert!(eventually(5, || brain.brain.serial() > serial).await, "the matching pair is published");
    let catalog = brain.sync().await;
    assert_consistent(&catalog, DEFAULT_INTERNAL_KEY);
    let entry = find(&catalog, GUEST_ARTIFACT_ENTRY).expect("the artifact entry");
    assert_eq!(payload(entry, DEFAULT_INTERNAL_KEY), b"machine code of v2");
    let claim = ArtifactClaim::from_interface_json(&entry.interface_json).expect("a claim");
    assert!(claim.verify(&statement, &[release.public()]).is_ok());

    // The artifact's .sig removed: past the grace, a folder error naming it.
    brain.stop().await;
    std::fs::remove_file(dir.path().join("guest-vm.cwasm.sig")).expect("remove");
    let config = BrainConfig { guest_pair_grace: Duration::from_millis(200), ..folder_config(dir.path()) };
    let brain = Running::start(config).await;
    assert!(eventually(5, || brain.brain.last_error().is_some()).await, "reported once the grace is over");
    let text = brain.brain.last_error().expect("error")[0].to_string();
    assert!(text.contains("guest-vm.cwasm") && text.contains("no guest-vm.cwasm.sig"), "{text}");
    brain.stop().await;

    // An artifact and no module to publish it with (no guest-vm.wasm, no key).
    let lone = tempfile::tempdir().expect("tempdir");
    precompiled(lone.path(), &release, b"machine code", TINY_WASM);
    let config = BrainConfig {
        dev: false,
        allow_plaintext: true,
        internal_key: "k".into(),
        api_key: DEFAULT_API_KEY.into(),
        original_servers: true,
        ..folder_config(lone.path())
    };
    let brain = Running::start(config).await;
    let errors = brain.brain.last_error().expect("an artifact without a module is an error");
    assert!(errors[0].to_string().contains("no guest module is published"), "{}", errors[0]);
    brain.stop().await;
}

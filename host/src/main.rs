use clap::Parser;

use avap_host::{AppState, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let telemetry = avap_host::telemetry::init(config.log_format);
    let state = AppState::new(&config).await?;
    if config.standalone {
        tracing::info!("standalone: serving the built-in catalog and guest");
    } else {
        let sync = avap_host::catalog::sync::SyncConfig::from_config(&config)?;
        avap_host::catalog::sync::start(state.clone(), sync).await;
    }
    let addr = config.listen_addr();
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr().unwrap_or(addr);
    let reach = match local.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::SocketAddr::from(([127, 0, 0, 1], local.port())),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, local.port()))
        }
        _ => local,
    };
    tracing::info!(
        %local,
        "avap-host listening; try: curl -s http://{reach}/api/v1/execute -d '{{\"script\": \"addVar(a, 1)\\naddResult(a)\"}}'"
    );
    if !addr.ip().is_loopback() && !state.front.tokens_required() {
        tracing::warn!(
            %addr,
            "listening beyond this machine with no AVAP_API_TOKENS: anyone who can reach this port can run scripts"
        );
    }
    avap_host::serve(listener, state, shutdown_signal()).await?;
    telemetry.flush();
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
    tracing::info!("shutting down");
}

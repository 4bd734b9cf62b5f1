use clap::Parser;

use avap_host::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let telemetry = avap_host::telemetry::init(config.log_format);
    let result = avap_host::run(config, avap_host::shutdown_signal()).await;
    telemetry.flush();
    result
}

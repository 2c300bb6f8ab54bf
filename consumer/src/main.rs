//! `consumer`: parses the configuration, sets up logging and signals, and runs [`consumer::app`];
//! `consumer replay ...` runs [`consumer::replay`] instead.

use anyhow::bail;
use clap::Parser as _;
use consumer::config::Config;
use consumer::replay::ReplayArgs;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // One subcommand, so the consumer's own flags stay at the top level (and in its --help).
    if std::env::args_os().nth(1).is_some_and(|a| a == "replay") {
        let argv = std::iter::once(std::ffi::OsString::from("consumer replay"))
            .chain(std::env::args_os().skip(2));
        let args = ReplayArgs::parse_from(argv);
        logging::init(args.log_format, "consumer-replay");
        let shutdown = service::shutdown::on_signal("no more republishing");
        let summary = consumer::replay::run(&args, shutdown).await?;
        print!("{summary}");
        if summary.failed() > 0 {
            bail!("{} republish(es) failed", summary.failed());
        }
        return Ok(());
    }
    let config = Config::parse();
    logging::init(config.log_format, "consumer");
    config.validate()?;
    let shutdown = service::shutdown::on_signal("no more pulls, flushing");
    consumer::app::run(config, shutdown).await
}

//! `jitctl run-schedules`: delivers the expiry schedules of `SCHEDULE_GROUP` to the functions
//! `cargo lambda watch` serves, because moto stores schedules but never fires them; and sends the
//! sweep to `revoke`, as the deployed sweep schedule does. The logic is
//! `jit_schedule_runner::ScheduleRunner` (`devtools/schedule-runner`); this only reads the options
//! and prints.

use anyhow::{bail, Context};
use clap::Args;
use jit_schedule_runner::{sqs::SqsRelay, FunctionNames, LocalLambda, RunOptions, ScheduleRunner};
use jit_shared::{
    adapters::scheduler,
    clock::{Clock, SystemClock},
    config::Config,
};
use std::{process::ExitCode, sync::Arc, time::Duration};

/// One invocation may wait for `cargo lambda watch` to compile the function first.
const INVOKE_TIMEOUT: Duration = Duration::from_secs(300);
/// The deployed sweep's default rate (`SweepScheduleExpression`, `rate(1 minute)`).
const DEFAULT_SWEEP_EVERY: Duration = Duration::from_secs(60);

#[derive(Args)]
pub struct RunSchedulesArgs {
    /// The local Lambda endpoint (`cargo lambda watch -P PORT`): a delivery is
    /// `POST {lambda-url}/2015-03-31/functions/{name}/invocations`.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:9000")]
    lambda_url: String,
    /// How often to look for due schedules: whole seconds, or a duration (1s, 2m).
    #[arg(long, value_name = "DURATION", default_value = "1", value_parser = parse_seconds)]
    interval: Duration,
    /// How often to send the sweep event to `revoke` (default 60 s; 0 disables). With --once, the
    /// sweep is sent only when this is given.
    #[arg(long, value_name = "DURATION", value_parser = parse_seconds)]
    sweep_every: Option<Duration>,
    /// Deliver what is due now, then exit (non-zero if a delivery failed).
    #[arg(long)]
    once: bool,
    /// A deployed function name (or ARN) and the local function that stands for it, e.g.
    /// `stack-revoke=revoke`. Without one, `<anything>-revoke` reaches `revoke` (and likewise
    /// `sync`, `grant`). Repeatable.
    #[arg(long = "function-name-map", value_name = "DEPLOYED=LOCAL", value_parser = FunctionNames::parse_mapping)]
    function_name_map: Vec<(String, String)>,
}

/// Whole seconds (`0` = off), or a duration such as `1s`, `2m`, `PT1M`.
fn parse_seconds(value: &str) -> Result<Duration, String> {
    match value.trim().parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => jit_shared::domain::model::parse(value).map_err(|e| e.to_string()),
    }
}

pub async fn run(sdk: &aws_config::SdkConfig, config: &Config, args: RunSchedulesArgs) -> anyhow::Result<ExitCode> {
    if args.interval.is_zero() {
        bail!("--interval must be positive");
    }
    let invoker =
        LocalLambda::new(&args.lambda_url, INVOKE_TIMEOUT).map_err(anyhow::Error::msg).context("--lambda-url")?;
    let functions = args
        .function_name_map
        .into_iter()
        .fold(FunctionNames::default(), |names, (deployed, local)| names.map(deployed, local));
    let invoker: Arc<dyn jit_schedule_runner::LambdaInvoker> = Arc::new(invoker);
    let mut runner =
        ScheduleRunner::new(scheduler::client(sdk), config.schedule_group.clone(), functions, invoker.clone());
    // With the fan-out configured, the fanned-out sync's parts go to `sync` too (Lambda's SQS
    // event source mapping in AWS).
    if let Some(fanout) = &config.fanout {
        runner = runner.with_relay(SqsRelay::new(aws_sdk_sqs::Client::new(sdk), &fanout.queue_url, invoker));
    }
    if args.once {
        let deliveries = runner.tick(SystemClock.now()).await?;
        let mut ok = true;
        for delivery in &deliveries {
            println!("{delivery}");
            ok &= delivery.succeeded();
        }
        for part in runner.relay_parts().await {
            println!("{part}");
            ok &= part.succeeded();
        }
        if args.sweep_every.is_some_and(|d| !d.is_zero()) {
            let sweep = runner.sweep().await;
            println!("{sweep}");
            ok &= sweep.succeeded();
        }
        if deliveries.is_empty() {
            eprintln!("no schedule of group {} is due", config.schedule_group);
        }
        return Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    }

    let sweep_every = match args.sweep_every {
        None => Some(DEFAULT_SWEEP_EVERY),
        Some(d) => (!d.is_zero()).then_some(d),
    };
    eprintln!(
        "delivering the due schedules of group {} to {} every {:?}{}; Ctrl-C stops",
        config.schedule_group,
        args.lambda_url,
        args.interval,
        sweep_every.map(|d| format!(", the sweep every {d:?}")).unwrap_or_default()
    );
    let options = RunOptions { interval: args.interval, sweep_every };
    // Ctrl-C stops the loop between deliveries. Stopping at any point would be safe too: a schedule
    // invoked but not yet deleted is delivered again, and revocation is idempotent.
    runner
        .run(
            &options,
            &SystemClock,
            async {
                let _ = tokio::signal::ctrl_c().await;
            },
            |delivery| println!("{delivery}"),
        )
        .await;
    Ok(ExitCode::SUCCESS)
}

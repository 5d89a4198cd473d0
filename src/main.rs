//! The `wicket` binary: parse, initialise logging, run, and turn failure into a clear
//! message and exit code. Everything else lives in the library.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use wicket::admin::check;
use wicket::cli::{Cli, Command, RunArgs};
use wicket::controller::cluster::{self, lease::ElectionSettings, ClusterOptions};
use wicket::{app, demo, migrate, telemetry};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = telemetry::init(&cli.log_level, cli.log_format) {
        eprintln!("wicket: {e}");
        return ExitCode::from(2);
    }
    match run(cli.command, cli.worker_threads) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wicket: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command, workers: usize) -> anyhow::Result<ExitCode> {
    match command {
        Command::Check(args) => {
            let checked = check::check(&args.dir, &args.controller.settings(), args.json)?;
            print!("{}", checked.output);
            Ok(if checked.has_problems {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Migrate(args) => {
            let settings = args.controller.settings();
            // A file, or NAMESPACE/NAME in the manifests or the cluster.
            let file = args
                .nginx_configmap
                .as_deref()
                .filter(|v| std::path::Path::new(v).is_file());
            let from_file = match file {
                Some(path) => {
                    let text =
                        std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
                    Some(
                        serde_yaml_ng::from_str::<k8s_openapi::api::core::v1::ConfigMap>(&text)
                            .with_context(|| format!("{path} is not a ConfigMap"))?,
                    )
                }
                None => None,
            };
            let by_name = args.nginx_configmap.as_deref().filter(|_| file.is_none());
            let (index, found) = match &args.manifests {
                Some(dir) => {
                    let index = wicket::controller::files::ManifestDir::open(dir)?.load();
                    let found = by_name.and_then(|n| migrate::config_map_in(&index, n));
                    (index, found)
                }
                None => {
                    let rt = runtime(1)?;
                    let client = rt.block_on(cluster::connect(CONNECT_TIMEOUT))?;
                    rt.block_on(migrate::load_cluster(client, by_name))?
                }
            };
            if let (Some(name), None) = (by_name, &found) {
                anyhow::bail!("ConfigMap {name} not found (give NAMESPACE/NAME, or a file)");
            }
            let config = from_file.or(found);
            let report = migrate::migrate(&index, &settings, &args.from_class, config.as_ref());
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", migrate::to_text(&report));
            }
            Ok(if report.refused {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Routes(args) => {
            let out = runtime(1)?.block_on(wicket::admin::inspect::routes(
                &args.admin.url,
                args.host.as_deref(),
                args.json,
            ))?;
            print!("{out}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Explain(args) => {
            let out = runtime(1)?.block_on(wicket::admin::inspect::explain(
                &args.admin.url,
                &args.host,
                &args.path,
                args.json,
            ))?;
            print!("{out}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Echo(args) => {
            runtime(workers)?.block_on(async {
                let server = wicket::echo::EchoServer::start(&args.name, args.addr)
                    .await
                    .with_context(|| format!("cannot listen on {}", args.addr))?;
                tracing::info!(addr = %server.addr, name = %server.name, "echo server listening");
                app::shutdown_signal().await;
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo(args) => {
            runtime(workers)?.block_on(demo::run(&args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => {
            let config = app::Config {
                http_addr: args.http_addr,
                https_addr: args.https_addr,
                admin_addr: args.admin_addr,
                settings: args.controller.settings(),
                proxy: args.proxy.settings(),
                max_connections: args.proxy.max_connections,
                client_timeouts: args.proxy.client_timeouts(),
                outliers: args.proxy.outliers(),
                proxy_protocol: args.proxy.proxy_protocol,
                shutdown_delay: args.proxy.shutdown_delay,
                shutdown_timeout: args.proxy.shutdown_timeout,
                access_log: args.proxy.access_log,
            };
            let runtime = runtime(workers)?;
            let source = match args.manifests.clone() {
                Some(dir) => app::Source::Manifests(dir),
                None => {
                    let client = runtime.block_on(cluster::connect(CONNECT_TIMEOUT))?;
                    app::Source::Cluster(Box::new(cluster_options(client, &args)))
                }
            };
            runtime.block_on(app::run(config, source))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// How long start-up waits for the API server to answer.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Cluster mode settings: the flags, plus who and where this pod is (`POD_NAME` and
/// `POD_NAMESPACE` from the downward API; outside a pod, the host name and the kubeconfig
/// context's namespace).
fn cluster_options(client: kube::Client, args: &RunArgs) -> ClusterOptions {
    let namespace = std::env::var("POD_NAMESPACE")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let identity = std::env::var("POD_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "wicket".to_owned());
            // Two processes on one host must not share an identity.
            format!("{host}-{}", std::process::id())
        });
    ClusterOptions {
        client,
        namespaces: args.cluster.watch_namespace.clone(),
        publish: args.cluster.publish(),
        election: ElectionSettings {
            name: args.cluster.election_id.clone(),
            namespace,
            identity,
            lease_duration: args.cluster.election_lease_duration,
        },
        controller_name: args.controller.controller_name.clone(),
        gateway_api_recheck: (!args.cluster.no_gateway_api).then_some(cluster::GATEWAY_API_RECHECK),
    }
}

/// One worker: a single-threaded runtime (no work-stealing machinery to pay for on one
/// CPU). More: the multi-threaded one with that many workers.
fn runtime(workers: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let workers = match workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

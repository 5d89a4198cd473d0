//! Wiring only: a source feeds the controller, the controller publishes snapshots, the
//! listeners serve them; and the shutdown sequence (not ready → stop accepting → drain).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info};

use crate::admin::metrics::Metrics;
use crate::admin::{Admin, Health};
use crate::controller::cluster::{self, ClusterOptions};
use crate::controller::files::{DirWatch, FilesError, ManifestDir};
use crate::controller::publish::{Publisher, SharedSnapshot};
use crate::controller::{translate, Settings};
use crate::proxy::conn::{ClientTimeouts, Connections};
use crate::proxy::listen::{ListenerSettings, Phase};
use crate::proxy::observe::{AccessLog, AccessLogFormat, Observer};
use crate::proxy::outlier::{OutlierSettings, Outliers};
use crate::proxy::passthrough::Passthrough;
use crate::proxy::tls::{self, Terminator, TlsError, TlsStats};
use crate::proxy::{listen, Balancer, Proxy, ProxySettings};

/// How often expired client-IP pins are swept even when nothing changes.
const BALANCER_SWEEP: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
pub struct Config {
    pub http_addr: SocketAddr,
    pub https_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub settings: Settings,
    pub proxy: ProxySettings,
    pub max_connections: usize,
    /// Client connections: the first request head and keep-alive idle time.
    pub client_timeouts: ClientTimeouts,
    /// Passive health: when failing endpoints are taken out of rotation.
    pub outliers: OutlierSettings,
    /// The HTTP and HTTPS listeners expect a PROXY protocol header on every connection.
    pub proxy_protocol: bool,
    pub shutdown_delay: Duration,
    pub shutdown_timeout: Duration,
    /// Access-log lines to stdout, one per request.
    pub access_log: AccessLogFormat,
}

impl Config {
    /// Loopback listeners on free ports and the default settings (tests, demo).
    pub fn local() -> Self {
        Self {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            https_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            settings: Settings::default(),
            proxy: ProxySettings::default(),
            max_connections: 16_384,
            client_timeouts: ClientTimeouts::default(),
            outliers: OutlierSettings::default(),
            proxy_protocol: false,
            shutdown_delay: Duration::ZERO,
            shutdown_timeout: Duration::from_secs(10),
            access_log: AccessLogFormat::Off,
        }
    }
}

/// Where objects come from.
#[derive(Clone, Debug)]
pub enum Source {
    Manifests(PathBuf),
    /// Watch the API server (boxed: it carries a client).
    Cluster(Box<ClusterOptions>),
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Manifests(#[from] FilesError),
    #[error(transparent)]
    Listen(#[from] std::io::Error),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// A started instance.
pub struct Running {
    pub http_addr: SocketAddr,
    pub https_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// TLS handshakes and failures since start.
    pub tls_stats: TlsStats,
    /// Every Prometheus metric (also on the admin port's `/metrics`).
    pub metrics: Arc<Metrics>,
    snapshot: SharedSnapshot,
    health: Arc<Health>,
    shutdown_delay: Duration,
    stop_listeners: watch::Sender<Phase>,
    stop_controller: watch::Sender<bool>,
    listeners: Vec<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
}

/// Binds the listeners and starts every task; returns once serving (the first snapshot
/// may still be loading: `/readyz` says when it is in).
pub async fn start(config: Config, source: Source) -> Result<Running, StartError> {
    let (dir, source_options) = match source {
        Source::Manifests(dir) => (Some(ManifestDir::open(dir)?), None),
        Source::Cluster(options) => (None, Some(options)),
    };

    let http = listen::bind(config.http_addr, "HTTP").await?;
    let https = listen::bind(config.https_addr, "HTTPS").await?;
    let admin = listen::bind(config.admin_addr, "admin").await?;
    let http_addr = http.local_addr()?;
    let https_addr = https.local_addr()?;
    let admin_addr = admin.local_addr()?;

    let metrics = Arc::new(Metrics::new());
    let publisher = Publisher::new().with_metrics(metrics.clone());
    let snapshot = publisher.shared();
    let generations = publisher.subscribe();
    let health = Arc::new(Health::default());
    let outliers = Arc::new(Outliers::new(config.outliers, metrics.clone()));
    if config.proxy.session_cookie_key.is_none() {
        tracing::debug!(
            "no --session-cookie-key: persistent session cookies are keyed for this process only"
        );
    }
    let balancer = Arc::new(Balancer::with_cookie_key(
        outliers.clone(),
        config.proxy.session_cookie_key.as_deref(),
    ));
    let (stop_listeners, listeners_rx) = watch::channel(Phase::Serving);
    let (stop_controller, controller_rx) = watch::channel(false);

    let mut background = vec![tokio::spawn(maintain_balancer(
        balancer.clone(),
        snapshot.clone(),
        generations,
        controller_rx.clone(),
    ))];
    let sweep_stop = controller_rx.clone();
    let reaper_stop = controller_rx.clone();
    let mut info = crate::admin::dashboard::RunInfo {
        mode: String::new(),
        listeners: vec![
            ("http", http_addr),
            ("https", https_addr),
            ("admin", admin_addr),
        ],
        leader: None,
    };
    match (dir, source_options) {
        (Some(dir), _) => {
            info.mode = format!("manifests {}", dir.root().display());
            background.push(tokio::spawn(run_manifests(
                dir,
                config.settings.clone(),
                publisher,
                controller_rx,
            )));
        }
        (None, Some(options)) => {
            info.mode = "cluster".to_owned();
            let (tasks, leader) =
                cluster::start(*options, config.settings.clone(), publisher, controller_rx);
            info.leader = Some(leader);
            background.extend(tasks);
        }
        (None, None) => {}
    }

    let fallback = tls::self_signed()?;
    if config.settings.default_certificate.is_none() {
        info!(
            name = tls::SELF_SIGNED_NAME,
            "no --default-certificate: clients without SNI and TLS hosts without a usable certificate get a self-signed certificate made at start-up"
        );
    }
    let tls_stats = TlsStats {
        handshakes: metrics.tls_handshakes.clone(),
        failures: metrics.tls_handshake_failures.clone(),
        served: Arc::default(),
    };
    let terminator = Arc::new(Terminator::new(
        snapshot.clone(),
        fallback,
        tls_stats.clone(),
    )?);

    let mut proxy_settings = config.proxy.clone();
    if proxy_settings.https_redirect_port == 0 {
        // 0: redirect to this instance's own HTTPS port (the demo, tests).
        proxy_settings.https_redirect_port = https_addr.port();
    }
    let proxy = Arc::new(
        Proxy::new(
            snapshot.clone(),
            balancer.clone(),
            &proxy_settings,
            Arc::new(Observer::new(
                metrics.clone(),
                AccessLog::stdout(config.access_log),
            )),
        )
        .map_err(TlsError::Config)?,
    );
    background.push(tokio::spawn(sweep_idle_connections(
        proxy.clone(),
        metrics.clone(),
        sweep_stop,
    )));
    let proxy_handler = move |conn, req| {
        let proxy = proxy.clone();
        async move { proxy.handle(conn, req).await }
    };
    let admin_service = Admin::new(snapshot.clone(), health.clone())
        .with_tls(tls_stats.clone())
        .with_metrics(metrics.clone())
        .with_outliers(outliers)
        .with_info(info);
    let admin_handler = move |_conn, req| {
        let admin = admin_service.clone();
        async move { admin.handle(req).await }
    };
    // One registry (and limit) for the client connections of both traffic listeners, one
    // for the admin listener's probes and people.
    let clients = Connections::new(
        config.max_connections,
        config.client_timeouts,
        Some(metrics.clone()),
    );
    let probes = Connections::new(
        ADMIN_MAX_CONNECTIONS,
        config.client_timeouts,
        Some(metrics.clone()),
    );
    for registry in [&clients, &probes] {
        let mut stop = reaper_stop.clone();
        background.push(tokio::spawn(registry.clone().run_reaper(async move {
            let _ = stop.wait_for(|s| *s).await;
        })));
    }
    let passthrough = config.settings.ssl_passthrough.then(|| {
        Arc::new(Passthrough::new(
            snapshot.clone(),
            balancer.clone(),
            config.proxy.upstream.connect_timeout,
            config.proxy.upstream.read_timeout,
            config.client_timeouts.header,
            config.proxy.source.clone(),
        ))
    });
    let traffic = |name| ListenerSettings {
        name,
        connections: clients.clone(),
        drain_timeout: config.shutdown_timeout,
        proxy_protocol: config.proxy_protocol,
        trusted: config.proxy.trusted_proxies.clone(),
        passthrough: None,
    };
    let listeners = vec![
        tokio::spawn(listen::run(
            http,
            None,
            proxy_handler.clone(),
            traffic("http"),
            listeners_rx.clone(),
            metrics.clone(),
        )),
        tokio::spawn(listen::run(
            https,
            Some(terminator),
            proxy_handler,
            ListenerSettings {
                passthrough,
                ..traffic("https")
            },
            listeners_rx.clone(),
            metrics.clone(),
        )),
        tokio::spawn(listen::run(
            admin,
            None,
            admin_handler,
            ListenerSettings {
                name: "admin",
                connections: probes,
                proxy_protocol: false,
                trusted: Arc::default(),
                ..traffic("admin")
            },
            listeners_rx,
            metrics.clone(),
        )),
    ];
    info!(http = %http_addr, https = %https_addr, admin = %admin_addr, "listening");
    Ok(Running {
        http_addr,
        https_addr,
        admin_addr,
        tls_stats,
        metrics,
        snapshot,
        health,
        shutdown_delay: config.shutdown_delay,
        stop_listeners,
        stop_controller,
        listeners,
        background,
    })
}

/// The admin port serves probes and people, not traffic.
const ADMIN_MAX_CONNECTIONS: usize = 64;

impl Running {
    /// The current snapshot, as the proxy sees it.
    /// Waits until the first routing table is in (at most `limit`); true once it is.
    pub async fn ready(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while !self.snapshot.load().is_ready() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    pub fn snapshot(&self) -> SharedSnapshot {
        self.snapshot.clone()
    }

    /// Not ready at once; keep serving for the shutdown delay, telling clients to go
    /// elsewhere; stop accepting; let requests in flight finish (bounded); stop the
    /// controller.
    pub async fn shutdown(self) {
        self.health.begin_shutdown();
        if !self.shutdown_delay.is_zero() {
            info!(delay = ?self.shutdown_delay, "not ready; serving until the shutdown delay ends, with Connection: close and GOAWAY");
            let _ = self.stop_listeners.send(Phase::GoAway);
            tokio::time::sleep(self.shutdown_delay).await;
        }
        let _ = self.stop_listeners.send(Phase::Drain);
        for task in self.listeners {
            let _ = task.await;
        }
        let _ = self.stop_controller.send(true);
        for task in self.background {
            let _ = task.await;
        }
        info!("stopped");
    }
}

/// Runs until SIGINT or SIGTERM, then shuts down gracefully.
pub async fn run(config: Config, source: Source) -> Result<(), StartError> {
    let running = start(config, source).await?;
    shutdown_signal().await;
    info!("shutdown requested");
    running.shutdown().await;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// The manifests controller: load, translate, publish; again on every change.
/// Reading and translating run on the blocking pool, so request workers never wait on disk.
async fn run_manifests(
    mut dir: ManifestDir,
    settings: Settings,
    publisher: Publisher,
    mut stop: watch::Receiver<bool>,
) {
    // Watch before the first read, so a change made in between is not missed.
    let mut watch = DirWatch::new(dir.root());
    info!(dir = %dir.root().display(), "serving manifests");
    // When the change being loaded was noticed (start-up for the first load).
    let mut seen = std::time::Instant::now();
    loop {
        let settings = settings.clone();
        let previous = publisher.shared().load_full();
        let loaded = tokio::task::spawn_blocking(move || {
            let index = dir.load();
            let snapshot = translate::build_reusing(&index, &settings, Some(&previous));
            (dir, snapshot)
        })
        .await;
        let snapshot;
        (dir, snapshot) = match loaded {
            Ok(loaded) => loaded,
            Err(e) => {
                error!(error = %e, "manifest reload failed; the last routing table stays in force");
                return;
            }
        };
        publisher.publish_seen(snapshot, seen);
        // The rebuild's temporaries and the old table's replaced parts are free now.
        crate::memory::release_freed();
        tokio::select! {
            more = watch.changed() => if !more { return },
            _ = stop.wait_for(|s| *s) => return,
        }
        seen = std::time::Instant::now();
    }
}

/// Closes pooled upstream connections that expired or that pods closed.
async fn sweep_idle_connections(
    proxy: Arc<Proxy>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let mut sweep = tokio::time::interval(crate::proxy::pool::IDLE_TIMEOUT / 2);
    loop {
        tokio::select! {
            _ = sweep.tick() => {
                proxy.sweep_idle_connections();
                // Pods that had no traffic for a minute leave the dashboard's window.
                metrics.traffic().sweep();
            }
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Keeps balancer state in step with the snapshots: forget removed backends and expired pins.
async fn maintain_balancer(
    balancer: Arc<Balancer>,
    snapshot: SharedSnapshot,
    mut generations: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let mut sweep = tokio::time::interval(BALANCER_SWEEP);
    loop {
        tokio::select! {
            changed = generations.changed() => if changed.is_err() { return },
            _ = sweep.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        balancer.retain(&snapshot.load());
    }
}

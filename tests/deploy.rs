//! The deployment surface, checked statically (no container engine is needed): `compose.yaml`
//! parses and everything it builds from or mounts exists; each service's configuration is
//! accepted by the program that will read it (`promtool`, `amtool`, `uspwatch check-config`,
//! Grafana's provisioning schema); the files agree with each other on ports, hosts and topics;
//! and every metric a dashboard or alert rule reads is defined in code and documented.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::dashboards::{self, metric_names_in, read_repo_file, repo_root};
use serde::Deserialize;

const PROMTOOL: &str = "/usr/bin/promtool";
const AMTOOL: &str = "/usr/bin/amtool";

/// The subset of the Compose specification these tests read.
#[derive(Debug, Deserialize)]
struct Compose {
    services: BTreeMap<String, Service>,
    #[serde(default)]
    volumes: BTreeMap<String, Option<serde_norway::Value>>,
}

#[derive(Debug, Deserialize)]
struct Service {
    image: Option<String>,
    build: Option<Build>,
    #[serde(default)]
    command: Option<serde_norway::Value>,
    #[serde(default)]
    volumes: Vec<String>,
    #[serde(default)]
    ports: Vec<String>,
    #[serde(default)]
    depends_on: Option<serde_norway::Value>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    healthcheck: Option<Healthcheck>,
}

#[derive(Debug, Deserialize)]
struct Build {
    context: String,
    dockerfile: String,
}

#[derive(Debug, Deserialize)]
struct Healthcheck {
    test: Vec<String>,
}

/// A short-syntax volume: `source:target[:mode]`.
struct Mount<'a> {
    source: &'a str,
    target: &'a str,
}

impl Service {
    fn mounts(&self) -> Vec<Mount<'_>> {
        self.volumes
            .iter()
            .map(|v| {
                let mut parts = v.splitn(3, ':');
                let source = parts.next().unwrap_or_default();
                let target = parts
                    .next()
                    .unwrap_or_else(|| panic!("volume {v:?} has no target"));
                Mount { source, target }
            })
            .collect()
    }

    /// The container path a host path is mounted at.
    fn target_of(&self, host: &str) -> Option<&str> {
        self.mounts()
            .into_iter()
            .find(|m| m.source == host)
            .map(|m| m.target)
    }

    fn command_args(&self) -> Vec<String> {
        match &self.command {
            Some(serde_norway::Value::Sequence(s)) => s
                .iter()
                .map(|v| {
                    v.as_str()
                        .expect("command arguments are strings")
                        .to_string()
                })
                .collect(),
            Some(serde_norway::Value::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        }
    }

    fn dependencies(&self) -> Vec<String> {
        match &self.depends_on {
            Some(serde_norway::Value::Sequence(s)) => s
                .iter()
                .map(|v| v.as_str().expect("depends_on entries").to_string())
                .collect(),
            Some(serde_norway::Value::Mapping(m)) => m
                .keys()
                .map(|k| k.as_str().expect("depends_on keys").to_string())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Container ports published by `host:container` entries.
    fn container_ports(&self) -> BTreeSet<u16> {
        self.ports
            .iter()
            .map(|p| {
                let container = p.rsplit(':').next().unwrap_or(p);
                let container = container.split('/').next().unwrap_or(container);
                container
                    .parse()
                    .unwrap_or_else(|e| panic!("port {p:?}: {e}"))
            })
            .collect()
    }
}

fn compose() -> Compose {
    serde_norway::from_str(&read_repo_file("compose.yaml"))
        .unwrap_or_else(|e| panic!("compose.yaml: {e}"))
}

fn service<'a>(c: &'a Compose, name: &str) -> &'a Service {
    c.services
        .get(name)
        .unwrap_or_else(|| panic!("compose.yaml has no service {name:?}"))
}

/// A relative host path of compose.yaml, resolved against the repository.
fn host_path(source: &str) -> PathBuf {
    repo_root().join(source.trim_start_matches("./"))
}

fn is_host_path(source: &str) -> bool {
    source.starts_with("./") || source.starts_with("../") || source.starts_with('/')
}

/// The gateway's configuration as compose gives it to the container.
fn compose_uspwatch_config_path(c: &Compose) -> PathBuf {
    let svc = service(c, "uspwatch");
    let args = svc.command_args();
    let pos = args
        .iter()
        .position(|a| a == "--config")
        .expect("uspwatch service runs with --config");
    let in_container = &args[pos + 1];
    let mount = svc
        .mounts()
        .into_iter()
        .find(|m| m.target == in_container)
        .unwrap_or_else(|| panic!("nothing is mounted at {in_container}"));
    host_path(mount.source)
}

/// The gateway's effective configuration in compose: the mounted file over the built-in
/// defaults, through the binary's own loader (no environment overlay).
fn compose_uspwatch_config(c: &Compose) -> uspwatch::AppConfig {
    let p = compose_uspwatch_config_path(c);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    uspwatch::config::load_from(Some(&text), &[]).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("{addr:?} has no port"))
}

/// A Debian tool the tests run. CI installs the packages (`.ci/run`); a missing tool is a
/// failure, never a skip.
fn debian_tool(path: &str, package: &str) -> PathBuf {
    let p = PathBuf::from(path);
    assert!(
        p.is_file(),
        "{path} not found: install Debian's `{package}` package (apt-get install {package}); \
         .ci/run installs it"
    );
    p
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{text}",
        out.status
    );
    text
}

/// `uspwatch check-config FILE` with no `USPWATCH__*` variables leaking in from the test's
/// environment.
fn check_config(file: &Path) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_uspwatch"));
    cmd.arg("check-config").arg(file);
    for (k, _) in std::env::vars() {
        if k.starts_with("USPWATCH__") {
            cmd.env_remove(k);
        }
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run uspwatch check-config: {e}"))
}

fn assert_check_config_passes(file: &Path) {
    let out = check_config(file);
    assert!(
        out.status.success(),
        "uspwatch check-config {} failed ({}):\n{}{}",
        file.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn compose_has_every_service_and_everything_it_references_exists() {
    let c = compose();
    let expected = [
        "kafka",
        "kafka-init",
        "uspwatch",
        "prometheus",
        "alertmanager",
        "grafana",
        "sim",
    ];
    for name in expected {
        service(&c, name);
    }
    for (name, svc) in &c.services {
        assert!(
            svc.image.is_some() || svc.build.is_some(),
            "{name}: neither image nor build"
        );
        if let Some(b) = &svc.build {
            let ctx = host_path(&b.context);
            assert!(
                ctx.is_dir(),
                "{name}: build context {} missing",
                ctx.display()
            );
            let df = ctx.join(&b.dockerfile);
            assert!(df.is_file(), "{name}: {} missing", df.display());
        }
        for m in svc.mounts() {
            if is_host_path(m.source) {
                assert!(
                    host_path(m.source).exists(),
                    "{name}: mounted {} does not exist",
                    m.source
                );
            } else {
                assert!(
                    c.volumes.contains_key(m.source),
                    "{name}: named volume {} is not declared",
                    m.source
                );
            }
            assert!(m.target.starts_with('/'), "{name}: target {}", m.target);
        }
        for d in svc.dependencies() {
            assert!(c.services.contains_key(&d), "{name} depends on unknown {d}");
        }
        if let Some(h) = &svc.healthcheck {
            assert!(
                matches!(
                    h.test.first().map(String::as_str),
                    Some("CMD" | "CMD-SHELL")
                ),
                "{name}: healthcheck test must start with CMD or CMD-SHELL"
            );
        }
    }
    // Services that others wait for must say when they are ready.
    for name in ["kafka", "uspwatch", "prometheus"] {
        assert!(
            service(&c, name).healthcheck.is_some(),
            "{name}: no healthcheck"
        );
    }
    // The fleet runs the gateway's own image.
    assert_eq!(service(&c, "sim").image, service(&c, "uspwatch").image);
}

#[test]
fn compose_files_agree_on_ports_hosts_and_topics() {
    let c = compose();
    let cfg = compose_uspwatch_config(&c);
    let gw = service(&c, "uspwatch");

    let listeners = &cfg.broker.listeners;
    let v5 = listeners.v5.expect("an MQTT 5 listener").port();
    let v311 = listeners.v311.expect("an MQTT 3.1.1 listener").port();
    let http = cfg.http.listen.port();
    let published = gw.container_ports();
    for p in [v5, v311, http] {
        assert!(
            published.contains(&p),
            "uspwatch does not publish {p}: {published:?}"
        );
    }

    let sim = service(&c, "sim").command_args().join(" ");
    assert!(
        sim.starts_with("simulate "),
        "sim runs `uspwatch simulate`: {sim}"
    );
    assert!(sim.contains(&format!("--broker uspwatch:{v5}")), "{sim}");
    assert!(
        sim.contains(&format!("--broker-v311 uspwatch:{v311}")),
        "{sim}"
    );

    // Kafka: the gateway's bootstrap address is the broker's advertised in-network listener,
    // and every topic it uses is created up front (auto-creation is off).
    let kafka = service(&c, "kafka");
    assert_eq!(
        kafka.environment["KAFKA_AUTO_CREATE_TOPICS_ENABLE"],
        "false"
    );
    let kcfg = cfg
        .pipeline
        .kafka
        .as_ref()
        .expect("compose runs uspwatch with [pipeline.kafka]");
    assert!(
        kafka.environment["KAFKA_ADVERTISED_LISTENERS"].contains(&format!("://{}", kcfg.brokers)),
        "pipeline.kafka.brokers {} is not advertised by the kafka service",
        kcfg.brokers
    );
    let init = service(&c, "kafka-init");
    assert!(
        init.dependencies().contains(&"kafka".to_string()),
        "kafka-init waits for kafka"
    );
    assert!(gw.dependencies().contains(&"kafka-init".to_string()));
    let script = init.command_args().join("\n");
    assert!(script.contains("kafka-topics.sh") && script.contains("--create"));
    let t = &kcfg.topics;
    for topic in [
        &t.events,
        &t.presence,
        &t.quarantine,
        &t.commands,
        &t.alerts,
        &cfg.command_requests.topic,
    ] {
        assert!(
            script
                .split_whitespace()
                .any(|w| w.trim_end_matches(';') == topic.as_str()),
            "kafka-init does not create {topic}"
        );
    }

    // Alertmanager: the rule engine pushes to the alertmanager service.
    let am = service(&c, "alertmanager");
    let am_url = &cfg
        .rules
        .alertmanager
        .as_ref()
        .expect("compose runs uspwatch with [rules.alertmanager]")
        .url;
    assert_eq!(am_url, "http://alertmanager:9093");
    assert!(am.container_ports().contains(&port_of(am_url)));

    // Prometheus scrapes the gateway's HTTP port.
    let prom: serde_norway::Value =
        serde_norway::from_str(&read_repo_file("deploy/prometheus.yml")).expect("prometheus.yml");
    let scrape = prom["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs")
        .iter()
        .find(|s| s["job_name"].as_str() == Some("uspwatch"))
        .expect("a uspwatch scrape job");
    assert_eq!(scrape["metrics_path"].as_str(), Some("/metrics"));
    let targets: Vec<&str> = scrape["static_configs"][0]["targets"]
        .as_sequence()
        .expect("targets")
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    assert_eq!(targets, [format!("uspwatch:{http}")]);
    let am_targets = &prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"];
    assert_eq!(am_targets[0].as_str(), Some("alertmanager:9093"));
}

#[test]
fn compose_sim_command_is_accepted_by_the_binary() {
    let c = compose();
    let args = service(&c, "sim").command_args();
    let help = run_ok(
        Command::new(env!("CARGO_BIN_EXE_uspwatch"))
            .arg(&args[0])
            .arg("--help"),
    );
    for flag in args.iter().filter(|a| a.starts_with("--")) {
        assert!(
            help.contains(flag.as_str()),
            "`uspwatch {}` has no {flag}",
            args[0]
        );
    }
    let value_of = |flag: &str| {
        let i = args.iter().position(|a| a == flag).expect(flag);
        args[i + 1].clone()
    };
    let faults = value_of("--faults");
    let parsed = uspwatch_sim::FaultSpec::parse_list(&faults)
        .unwrap_or_else(|e| panic!("--faults {faults}: {e}"));
    assert_eq!(parsed.len(), faults.split(',').count());
    value_of("--mqtt")
        .parse::<uspwatch_sim::MqttMode>()
        .unwrap_or_else(|e| panic!("--mqtt: {e}"));
    let agents: usize = value_of("--agents").parse().expect("--agents");
    assert!(agents > 0);
}

#[test]
fn compose_uspwatch_config_passes_check_config() {
    let c = compose();
    assert_check_config_passes(&compose_uspwatch_config_path(&c));
}

#[test]
fn example_config_passes_check_config() {
    assert_check_config_passes(&repo_root().join("uspwatch.example.toml"));
}

#[test]
fn a_broken_config_is_refused_by_check_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[broker]\nallow_anonymus = true\n[http]\ntokens = [\"short\"]\n",
    )
    .expect("write");
    let out = check_config(&bad);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "accepted a broken config:\n{text}");
    assert!(text.contains("allow_anonymus"), "{text}");
    assert!(text.contains("tokens"), "{text}");
}

#[test]
fn dockerfile_builds_the_gateway_and_runs_it_unprivileged() {
    let df = read_repo_file("Dockerfile");
    let lines: Vec<&str> = df
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let froms: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("FROM "))
        .copied()
        .collect();
    assert_eq!(froms.len(), 2, "multi-stage: {froms:?}");
    assert!(
        froms[0].starts_with("FROM rust:1.95-bookworm AS "),
        "{}",
        froms[0]
    );
    assert_eq!(froms[1], "FROM debian:bookworm-slim AS runtime");
    assert!(df.contains("cargo build --release --locked -p uspwatch"));
    let user = lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER");
    assert!(
        !user.starts_with("root") && !user.starts_with('0'),
        "USER {user}"
    );
    let exposed: BTreeSet<u16> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("EXPOSE "))
        .flat_map(|l| l.split_whitespace())
        .map(|p| p.parse().expect("EXPOSE port"))
        .collect();
    let c = compose();
    assert!(
        service(&c, "uspwatch")
            .container_ports()
            .is_subset(&exposed),
        "compose publishes ports the image does not EXPOSE: {exposed:?}"
    );
    assert!(lines.contains(&r#"ENTRYPOINT ["uspwatch"]"#));
    let cmd = lines
        .iter()
        .find_map(|l| l.strip_prefix("CMD "))
        .expect("CMD");
    let cmd: Vec<String> = serde_json::from_str(cmd).expect("CMD in exec form");
    assert_eq!(cmd, service(&c, "uspwatch").command_args());

    // Files copied from the build context must exist and not be excluded by .dockerignore.
    let ignored: Vec<String> = read_repo_file(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    for l in &lines {
        let Some(args) = l.strip_prefix("COPY ") else {
            continue;
        };
        if args.starts_with("--from") {
            continue;
        }
        let parts: Vec<&str> = args.split_whitespace().collect();
        for src in &parts[..parts.len() - 1] {
            if *src == "." {
                continue;
            }
            assert!(host_path(src).exists(), "COPY {src}: missing");
            assert!(
                !ignored.iter().any(|i| i == src),
                "COPY {src}: excluded by .dockerignore"
            );
        }
    }
    for needed in [
        "Cargo.toml",
        "Cargo.lock",
        "src",
        "proto",
        "broker",
        "pipeline",
    ] {
        assert!(
            !ignored.iter().any(|i| i == needed),
            ".dockerignore excludes {needed}, which the build needs"
        );
    }
}

#[test]
fn prometheus_config_and_rules_pass_promtool() {
    let promtool = debian_tool(PROMTOOL, "prometheus");
    let config = repo_root().join("deploy/prometheus.yml");
    // `check config` also checks the rule files the config names.
    let out = run_ok(
        Command::new(&promtool)
            .arg("check")
            .arg("config")
            .arg(&config),
    );
    assert!(out.contains("SUCCESS"), "{out}");
    let prom: serde_norway::Value =
        serde_norway::from_str(&read_repo_file("deploy/prometheus.yml")).expect("yaml");
    let rule_files = prom["rule_files"].as_sequence().expect("rule_files");
    assert!(!rule_files.is_empty());
    for f in rule_files {
        let f = f.as_str().expect("rule file");
        let p = repo_root().join("deploy").join(f);
        assert!(p.is_file(), "{}: missing", p.display());
        run_ok(Command::new(&promtool).arg("check").arg("rules").arg(&p));
    }
}

#[test]
fn alertmanager_config_passes_amtool() {
    let amtool = debian_tool(AMTOOL, "prometheus-alertmanager");
    let config = repo_root().join("deploy/alertmanager.yml");
    let out = run_ok(Command::new(&amtool).arg("check-config").arg(&config));
    assert!(out.contains("SUCCESS"), "{out}");
    // Fleet alerts are grouped per rule and region.
    let am: serde_norway::Value =
        serde_norway::from_str(&read_repo_file("deploy/alertmanager.yml")).expect("yaml");
    let group_by: Vec<&str> = am["route"]["group_by"]
        .as_sequence()
        .expect("route.group_by")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        group_by.contains(&"alertname") && group_by.contains(&"region"),
        "{group_by:?}"
    );
}

/// Grafana's datasource provisioning file, with only the keys it documents.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DatasourceFile {
    api_version: u32,
    datasources: Vec<Datasource>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Datasource {
    name: String,
    uid: String,
    #[serde(rename = "type")]
    kind: String,
    access: String,
    url: String,
    #[serde(default)]
    is_default: bool,
    #[serde(default)]
    editable: bool,
    #[serde(default)]
    json_data: BTreeMap<String, serde_norway::Value>,
}

/// Grafana's dashboard provider provisioning file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DashboardProviders {
    api_version: u32,
    providers: Vec<DashboardProvider>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DashboardProvider {
    name: String,
    #[serde(default)]
    org_id: u32,
    #[serde(default)]
    folder: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    disable_deletion: bool,
    #[serde(default)]
    allow_ui_updates: bool,
    #[serde(default)]
    update_interval_seconds: u32,
    options: ProviderOptions,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ProviderOptions {
    path: String,
    #[serde(default)]
    folders_from_files_structure: bool,
}

fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let d = repo_root().join(dir);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&d)
        .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no provisioning files in {dir}");
    v
}

fn datasource_uids() -> BTreeSet<String> {
    let c = compose();
    let prom: serde_norway::Value =
        serde_norway::from_str(&read_repo_file("deploy/prometheus.yml")).expect("yaml");
    let uspwatch_interval = prom["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs")
        .iter()
        .find(|s| s["job_name"].as_str() == Some("uspwatch"))
        .and_then(|s| s["scrape_interval"].as_str())
        .expect("the uspwatch job sets its scrape_interval")
        .to_string();
    let mut uids = BTreeSet::new();
    for f in yaml_files("deploy/grafana/provisioning/datasources") {
        let name = f.display().to_string();
        let text = std::fs::read_to_string(&f).expect("read");
        let ds: DatasourceFile =
            serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(ds.api_version, 1, "{name}");
        for d in ds.datasources {
            assert!(!d.name.is_empty(), "{name}: datasource without a name");
            assert_eq!(d.kind, "prometheus", "{name}");
            assert_eq!(
                d.access, "proxy",
                "{name}: the browser cannot reach prometheus:9090"
            );
            assert!(
                d.is_default,
                "{name}: dashboards fall back to the default datasource"
            );
            assert!(
                !d.editable,
                "{name}: provisioned from the repository, not edited in the UI"
            );
            // $__rate_interval is derived from it: it must be the uspwatch scrape interval.
            assert_eq!(
                d.json_data.get("timeInterval").and_then(|v| v.as_str()),
                Some(uspwatch_interval.as_str()),
                "{name}: jsonData.timeInterval"
            );
            // The data source URL is the compose service of that name.
            let host = d
                .url
                .trim_start_matches("http://")
                .split(':')
                .next()
                .unwrap_or_default()
                .to_string();
            assert!(c.services.contains_key(&host), "{name}: {}", d.url);
            assert!(uids.insert(d.uid), "{name}: duplicate uid");
        }
    }
    uids
}

#[test]
fn grafana_provisioning_parses_and_points_at_the_mounted_dashboards() {
    let c = compose();
    let grafana = service(&c, "grafana");
    assert!(!datasource_uids().is_empty());
    for (dir, container) in [
        (
            "./deploy/grafana/provisioning/datasources",
            "/etc/grafana/provisioning/datasources",
        ),
        (
            "./deploy/grafana/provisioning/dashboards",
            "/etc/grafana/provisioning/dashboards",
        ),
    ] {
        assert_eq!(
            grafana.target_of(dir),
            Some(container),
            "grafana mounts {dir}"
        );
    }
    let dashboards_at = grafana
        .target_of("./dashboards")
        .expect("grafana mounts ./dashboards");
    for f in yaml_files("deploy/grafana/provisioning/dashboards") {
        let text = std::fs::read_to_string(&f).expect("read");
        let p: DashboardProviders =
            serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert_eq!(p.api_version, 1);
        assert!(!p.providers.is_empty());
        for prov in &p.providers {
            assert_eq!(prov.kind, "file");
            assert!(!prov.name.is_empty() && !prov.folder.is_empty());
            assert_eq!(prov.org_id, 1);
            assert!(prov.update_interval_seconds > 0);
            // The repository is the source of truth: UI edits would be lost on the next load.
            assert!(prov.disable_deletion && !prov.allow_ui_updates);
            assert!(!prov.options.folders_from_files_structure);
            assert_eq!(prov.options.path, dashboards_at, "{}", f.display());
        }
    }
    if let Some(home) = grafana
        .environment
        .get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    {
        let file = home
            .strip_prefix(&format!("{dashboards_at}/"))
            .unwrap_or_else(|| panic!("home dashboard {home} is outside {dashboards_at}"));
        assert!(
            repo_root().join("dashboards").join(file).is_file(),
            "{home}"
        );
    }
}

#[test]
fn dashboards_parse_and_every_panel_queries_the_provisioned_datasource() {
    let uids = datasource_uids();
    let mut dashboard_uids = BTreeSet::new();
    let titles: BTreeSet<String> = dashboards::dashboards()
        .iter()
        .map(|(_, d)| d["title"].as_str().unwrap_or_default().to_string())
        .collect();
    for want in ["Gateway", "Fleet health", "Remediation"] {
        assert!(
            titles.iter().any(|t| t.ends_with(want)),
            "no {want} dashboard among {titles:?}"
        );
    }
    for (path, d) in dashboards::dashboards() {
        let name = path.display().to_string();
        let uid = d["uid"].as_str().unwrap_or_else(|| panic!("{name}: uid"));
        assert!(
            dashboard_uids.insert(uid.to_string()),
            "{name}: duplicate uid"
        );
        assert!(
            uid.len() <= 40,
            "{name}: Grafana uids are at most 40 characters"
        );
        let schema = d["schemaVersion"].as_u64().unwrap_or(0);
        assert!(
            (36..=41).contains(&schema),
            "{name}: schemaVersion {schema}"
        );
        let mut ids = BTreeSet::new();
        let mut charts = 0;
        for p in dashboards::panels(&d) {
            let title = p["title"].as_str().unwrap_or_default();
            assert!(!title.is_empty(), "{name}: a panel without a title");
            let id = p["id"]
                .as_u64()
                .unwrap_or_else(|| panic!("{name}: {title}: id"));
            assert!(ids.insert(id), "{name}: duplicate panel id {id}");
            let pos = &p["gridPos"];
            let (x, w) = (
                pos["x"].as_u64().unwrap_or(99),
                pos["w"].as_u64().unwrap_or(99),
            );
            assert!(x + w <= 24, "{name}: {title}: gridPos {pos}");
            if p["type"] == "row" {
                continue;
            }
            charts += 1;
            assert_eq!(p["datasource"]["type"], "prometheus", "{name}: {title}");
            let ds = p["datasource"]["uid"].as_str().unwrap_or_default();
            assert!(
                uids.contains(ds),
                "{name}: {title}: unknown datasource {ds}"
            );
            let targets = p["targets"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            assert!(!targets.is_empty(), "{name}: {title}: no targets");
            for t in targets {
                let expr = t["expr"].as_str().unwrap_or_default();
                assert!(!expr.trim().is_empty(), "{name}: {title}: empty query");
                assert!(
                    !metric_names_in(expr).is_empty(),
                    "{name}: {title}: {expr} reads no metric"
                );
                let tds = t["datasource"]["uid"].as_str().unwrap_or(ds);
                assert!(
                    uids.contains(tds),
                    "{name}: {title}: unknown datasource {tds}"
                );
            }
        }
        assert!(charts >= 4, "{name}: only {charts} panels");
    }
}

/// Grafana's variables replaced by values of the kind Grafana substitutes, so Prometheus' own
/// parser can check the query.
fn expand_grafana_variables(expr: &str) -> String {
    let out = expr
        .replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "1h")
        .replace("${instance}", ".*")
        .replace("$instance", ".*");
    assert!(!out.contains('$'), "unexpanded Grafana variable in {expr}");
    out
}

#[test]
fn dashboard_queries_are_valid_promql() {
    let promtool = debian_tool(PROMTOOL, "prometheus");
    // promtool parses PromQL only inside rule files: one recording rule per panel query.
    let mut rules = String::from("groups:\n  - name: dashboards\n    rules:\n");
    let mut n = 0;
    for (path, d) in dashboards::dashboards() {
        for p in dashboards::panels(&d) {
            for t in p["targets"].as_array().into_iter().flatten() {
                let Some(expr) = t["expr"].as_str() else {
                    continue;
                };
                n += 1;
                let expr = expand_grafana_variables(expr);
                let quoted = serde_json::to_string(&expr).expect("json string");
                rules.push_str(&format!(
                    "      # {} / {}\n      - record: dashboard_query_{n}\n        expr: {quoted}\n",
                    path.file_name().unwrap_or_default().to_string_lossy(),
                    p["title"].as_str().unwrap_or_default()
                ));
            }
        }
    }
    assert!(n > 20, "only {n} queries");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("dashboards.rules.yml");
    std::fs::write(&file, &rules).expect("write rules");
    let out = Command::new(&promtool)
        .arg("check")
        .arg("rules")
        .arg(&file)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "a dashboard query is not valid PromQL:\n{}{}\n{rules}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `pub const NAME: &str = "uspwatch_…";` in the metric modules of the crates and the binary.
fn metrics_defined_in_code() -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    for dir in ["src", "broker/src", "pipeline/src", "rules/src", "sim/src"] {
        let mut stack = vec![repo_root().join(dir)];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries {
                let p = e.expect("entry").path();
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                if p.extension().is_none_or(|x| x != "rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&p).expect("read source");
                for line in text.lines() {
                    let l = line.trim();
                    if !(l.starts_with("pub const ") || l.starts_with("pub(crate) const ")) {
                        continue;
                    }
                    let Some((_, rest)) = l.split_once(": &str = \"uspwatch_") else {
                        continue;
                    };
                    if let Some(name) = rest.strip_suffix("\";") {
                        out.insert(format!("uspwatch_{name}"), p.clone());
                    }
                }
            }
        }
    }
    out
}

/// Metric names in the first column of the tables of docs/telemetry.md.
fn metrics_documented() -> BTreeSet<String> {
    read_repo_file("docs/telemetry.md")
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`'))
        .map(|(name, _)| name.to_string())
        .filter(|n| n.starts_with("uspwatch_"))
        .collect()
}

#[test]
fn telemetry_doc_matches_the_metrics_defined_in_code() {
    let code = metrics_defined_in_code();
    let docs = metrics_documented();
    assert!(code.len() >= 10, "found only {code:?}");
    let undocumented: Vec<_> = code.keys().filter(|n| !docs.contains(*n)).collect();
    assert!(
        undocumented.is_empty(),
        "metrics defined in code but missing from docs/telemetry.md: {undocumented:?}"
    );
    let stale: Vec<_> = docs.iter().filter(|n| !code.contains_key(*n)).collect();
    assert!(
        stale.is_empty(),
        "docs/telemetry.md lists metrics no code defines: {stale:?}"
    );
}

#[test]
fn every_dashboard_and_alert_metric_is_defined_and_documented() {
    let code = metrics_defined_in_code();
    let docs = metrics_documented();
    let mut used = dashboards::dashboard_metric_names();
    assert!(used.len() >= 10, "{used:?}");
    let rules: serde_norway::Value =
        serde_norway::from_str(&read_repo_file("deploy/prometheus-rules.yml")).expect("yaml");
    for g in rules["groups"].as_sequence().expect("groups") {
        for r in g["rules"].as_sequence().expect("rules") {
            let expr = r["expr"].as_str().expect("expr");
            let names = metric_names_in(expr);
            assert!(
                !names.is_empty(),
                "alert expression reads no metric: {expr}"
            );
            used.extend(names);
        }
    }
    for name in &used {
        assert!(
            code.contains_key(name),
            "{name} is queried but defined by no code"
        );
        assert!(
            docs.contains(name),
            "{name} is queried but not in docs/telemetry.md"
        );
    }
}

#[test]
fn dashboard_query_parser_finds_metric_names() {
    let names = |q: &str| metric_names_in(q).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"histogram_quantile(0.95, sum by (le, command) (rate(a_seconds_bucket{instance=~"$instance", x="}b{"}[$__rate_interval])))"#
        ),
        ["a_seconds"]
    );
    assert_eq!(
        names(
            r#"sum(rate(x_total{reason!="accepted"}[5m] offset 1h)) / on (instance) group_left(region) clamp_min(y_count, 1e-9)"#
        ),
        ["x_total", "y"]
    );
    assert_eq!(names("topk(10, sum without (rule) (g)) > bool 0"), ["g"]);
    assert_eq!(
        names(r#"label_values(up_gauge{job="a"}, instance)"#),
        ["up_gauge"]
    );
    assert!(names("label_values(instance)").is_empty());
    assert_eq!(names("query_result(max(m_sum))"), ["m"]);
}

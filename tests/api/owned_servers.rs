//! Servers a test owns and breaks: a Redis server, a PostgreSQL cluster made with
//! `initdb`, and `iqs serve` itself as a child process. Each listens on a free port and
//! is removed when dropped; none is the shared server the other tests use.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} {pid}");
}

pub struct Redis {
    pub port: u16,
    child: Child,
    /// The CA that signed its certificate, when it speaks only TLS.
    tls_ca: Option<PathBuf>,
}

fn redis_server(args: &[&str]) -> Child {
    Command::new("redis-server")
        .args(args)
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server must be installed (Debian/Ubuntu: apt-get install redis-server)")
}

impl Redis {
    pub fn start_on(port: u16) -> Redis {
        let child = redis_server(&["--port", &port.to_string()]);
        wait_for_port(port, "redis-server");
        Redis {
            port,
            child,
            tls_ca: None,
        }
    }

    /// A Redis that speaks only TLS, with `cert` and `key` (PEM files) signed by `ca`;
    /// its URL is `rediss://localhost:<port>`.
    pub fn start_tls(cert: &Path, key: &Path, ca: &Path) -> Redis {
        let port = free_port();
        let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
        let child = redis_server(&[
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            cert,
            "--tls-key-file",
            key,
            "--tls-auth-clients",
            "no",
        ]);
        wait_for_port(port, "redis-server with TLS");
        Redis {
            port,
            child,
            tls_ca: Some(ca.to_owned()),
        }
    }

    pub fn start() -> Redis {
        Self::start_on(free_port())
    }

    pub fn url(&self) -> String {
        match self.tls_ca {
            Some(_) => format!("rediss://localhost:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    pub fn signal(&self, name: &str) {
        signal(self.child.id(), name);
    }

    /// Killed at once, as a crash would; the port is free for a restart.
    pub fn kill(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }

    pub fn cached_summaries(&self) -> usize {
        let mut command = Command::new("redis-cli");
        if let Some(ca) = &self.tls_ca {
            command.args(["--tls", "--cacert", ca.to_str().unwrap(), "-h", "localhost"]);
        }
        let output = command
            .args([
                "-p",
                &self.port.to_string(),
                "--scan",
                "--pattern",
                "iqs:*:summaries",
            ])
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&output.stdout).lines().count()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that is free, and whose cluster bus port (10,000 above) is a valid port too.
fn free_cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port < 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// A Redis Cluster of masters without replicas, started from redis-server in cluster
/// mode and joined with `redis-cli --cluster create`. A failed master's slots stop
/// answering while the other masters keep serving theirs
/// (`cluster-require-full-coverage no`).
pub struct RedisCluster {
    pub nodes: Vec<Redis>,
    dir: PathBuf,
}

impl RedisCluster {
    pub fn start(masters: usize) -> RedisCluster {
        let dir = std::env::temp_dir().join(format!(
            "iqs-redis-cluster-{}",
            uuid::Uuid::now_v7().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let nodes: Vec<Redis> = (0..masters)
            .map(|_| {
                let port = free_cluster_port();
                let child = redis_server(&[
                    "--port",
                    &port.to_string(),
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &format!("nodes-{port}.conf"),
                    "--cluster-node-timeout",
                    "1000",
                    "--cluster-require-full-coverage",
                    "no",
                    "--dir",
                    dir.to_str().unwrap(),
                ]);
                wait_for_port(port, "redis-server in cluster mode");
                Redis {
                    port,
                    child,
                    tls_ca: None,
                }
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        let output = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli");
        assert!(
            output.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let cluster = RedisCluster { nodes, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cluster
            .nodes
            .iter()
            .all(|node| cluster_info(node.port).contains("cluster_state:ok"))
        {
            assert!(Instant::now() < deadline, "the cluster never became ok");
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    }

    /// `redis+cluster://` and every node.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        format!("redis+cluster://{}", nodes.join(","))
    }

    /// Kills node `index` at once, as a crash would, and waits until the others have
    /// marked it failed.
    pub fn kill(&mut self, index: usize) {
        let node = self.nodes.remove(index);
        node.kill();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.nodes.iter().all(|node| {
            let nodes = Command::new("redis-cli")
                .args(["-p", &node.port.to_string(), "cluster", "nodes"])
                .output()
                .expect("redis-cli");
            String::from_utf8_lossy(&nodes.stdout).contains("fail")
        }) {
            assert!(
                Instant::now() < deadline,
                "the cluster never saw the node fail"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn cluster_info(port: u16) -> String {
    let output = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "cluster", "info"])
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        self.nodes.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A PostgreSQL cluster of the test's own, on a free port, that the test may stop and
/// start again.
pub struct Postgres {
    pub port: u16,
    bin: PathBuf,
    dir: PathBuf,
}

/// The PostgreSQL server binaries: `IQS_PG_BIN` when set, else the newest
/// `/usr/lib/postgresql/*/bin`, else `initdb` on the PATH.
fn pg_bin() -> PathBuf {
    if let Ok(dir) = std::env::var("IQS_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort_by_key(|bin| {
        bin.parent()
            .and_then(|version| version.file_name())
            .and_then(|name| name.to_str())
            .and_then(|name| name.parse::<u32>().ok())
            .unwrap_or(0)
    });
    if let Some(newest) = versions.pop() {
        return newest;
    }
    let on_path = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()));
    on_path
        .and_then(|initdb| initdb.parent().map(Path::to_path_buf))
        .expect(
            "the PostgreSQL server binaries (initdb, pg_ctl) are needed: \
             Debian/Ubuntu: apt-get install postgresql, or set IQS_PG_BIN",
        )
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

impl Postgres {
    /// A directory and a free port for a cluster, not made yet.
    fn prepare(bin: PathBuf) -> Postgres {
        let dir = std::env::temp_dir().join(format!("iqs-pg-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let postgres = Postgres {
            port: free_port(),
            bin,
            dir,
        };
        if running_as_root() {
            // PostgreSQL refuses to run as root; its own user owns the cluster.
            let status = Command::new("chown")
                .args(["postgres"])
                .arg(&postgres.dir)
                .status()
                .unwrap();
            assert!(
                status.success(),
                "chown postgres (is there a postgres user?)"
            );
        }
        postgres
    }

    pub fn start() -> Postgres {
        let postgres = Postgres::prepare(pg_bin());
        let data = postgres.data();
        postgres.run("initdb", &["-D", &data, "-U", "postgres", "-A", "trust"]);
        postgres.start_again();
        postgres
    }

    /// A streaming replica of this cluster, made with `pg_basebackup -R` and started.
    pub fn replica(&self) -> Postgres {
        let replica = Postgres::prepare(self.bin.clone());
        let data = replica.data();
        let port = self.port.to_string();
        replica.run(
            "pg_basebackup",
            &[
                "-D",
                &data,
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
            ],
        );
        replica.start_again();
        replica
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let program = self.bin.join(tool);
        let mut command = if running_as_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program);
            command
        } else {
            Command::new(&program)
        };
        let output = command.args(args).output().expect(tool);
        assert!(
            output.status.success(),
            "{tool} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the cluster (again) on the same port, and waits until it answers.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-w",
                "-t",
                "60",
                "-o",
                &options,
                "start",
            ],
        );
        wait_for_port(self.port, "PostgreSQL");
    }

    /// Stops the cluster as an operator would (`pg_ctl stop -m fast`): sessions are
    /// cut, transactions in progress roll back.
    pub fn stop(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let program = self.bin.join("pg_ctl");
        let data = self.data();
        let args = ["-D", data.as_str(), "-m", "immediate", "stop"];
        let _ = if running_as_root() {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&program)
                .args(args)
                .output()
        } else {
            Command::new(&program).args(args).output()
        };
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Reads `iqs serve`'s log (its stderr) in a thread: each line goes into `lines` when
/// given, and the address the server logs once it listens comes out of the receiver.
pub fn watch_log(
    stderr: std::process::ChildStderr,
    lines: Option<Arc<Mutex<Vec<String>>>>,
) -> mpsc::Receiver<String> {
    let (addr_tx, addr_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("address=").nth(1) {
                let addr = rest.split_whitespace().next().unwrap_or_default();
                let _ = addr_tx.send(addr.to_owned());
            }
            if let Some(lines) = &lines {
                lines.lock().unwrap().push(line);
            }
        }
    });
    addr_rx
}

/// `iqs serve` as a child process, on 127.0.0.1:0, with the given environment.
pub struct ServerProcess {
    pub addr: SocketAddr,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl ServerProcess {
    pub fn spawn(env: &[(&str, &str)]) -> ServerProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_iqs"));
        command
            .arg("serve")
            .env("IQS_LISTEN_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .env_remove("IQS_CONFIG")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_SERVICE_NAME")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("start iqs serve");
        let log = Arc::new(Mutex::new(Vec::new()));
        let addr_rx = watch_log(child.stderr.take().unwrap(), Some(log.clone()));
        let addr = match addr_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr.parse().expect("a socket address"),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "iqs serve did not log its address:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        ServerProcess { addr, child, log }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Channel::from_shared(self.endpoint())
            .unwrap()
            .connect()
            .await
            .expect("connect to iqs serve")
    }

    pub fn terminate(&self) {
        signal(self.child.id(), "-TERM");
    }

    /// The exit status, once the process has exited within `limit`.
    pub async fn exit_within(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "iqs did not exit within {limit:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

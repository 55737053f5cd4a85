//! A fresh PostgreSQL database per test, dropped at the end (the local server: `.ci/run` and
//! `tests/run.sh` start it when it is installed but not answering).

/// The server tests create their databases on (`TEST_POSTGRES_URL` overrides it; no database
/// name: one is added per test).
pub fn server_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_string())
        .trim_end_matches('/')
        .to_string()
}

fn admin() -> postgres::Client {
    // A thread of its own: the blocking client may not run on a test's async executor.
    let url = format!("{}/postgres", server_url());
    std::thread::spawn(move || postgres::Client::connect(&url, postgres::NoTls))
        .join()
        .unwrap()
        .expect("PostgreSQL answers on 127.0.0.1:5432 (tests/run.sh starts it)")
}

/// The first row's first column of `sql`, as text.
fn first_value(c: &mut postgres::Client, sql: &str) -> Option<String> {
    c.simple_query(sql)
        .expect("query")
        .into_iter()
        .find_map(|m| match m {
            postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
}

/// Runs `sql` as the server's superuser, on a thread of its own.
pub fn admin_execute(sql: &str) {
    let sql = sql.to_string();
    std::thread::spawn(move || admin().batch_execute(&sql).expect("admin SQL"))
        .join()
        .unwrap();
}

/// One value a superuser query returns (first row, first column, as text).
pub fn admin_query(sql: &str) -> Option<String> {
    let sql = sql.to_string();
    std::thread::spawn(move || first_value(&mut admin(), &sql))
        .join()
        .unwrap()
}

/// A database made for one test; dropped (with its connections) with this value.
pub struct TestDb {
    pub name: String,
}

impl TestDb {
    pub fn new() -> TestDb {
        let name = format!("bridge_test_{:x}", rand::random::<u64>());
        admin_execute(&format!("CREATE DATABASE {name}"));
        TestDb { name }
    }

    /// `postgres://postgres@127.0.0.1:5432/<name>`.
    pub fn url(&self) -> String {
        format!("{}/{}", server_url(), self.name)
    }

    /// Terminates the backends of this database whose `application_name` is `app`; returns
    /// how many.
    pub fn terminate(&self, app: &str) -> usize {
        admin_query(&format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{}' AND application_name = '{app}'",
            self.name
        ))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
    }

    /// One value of a query on this database.
    pub fn query(&self, sql: &str) -> Option<String> {
        let (url, sql) = (self.url(), sql.to_string());
        std::thread::spawn(move || {
            let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("test database");
            first_value(&mut c, &sql)
        })
        .join()
        .unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let _ = admin().batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        })
        .join();
    }
}

/// A PostgreSQL server of a test's own (initdb in a temporary folder, a random port), so the
/// test can stop and start it without touching the shared one. Runs the server as the
/// `postgres` user when the tests run as root (PostgreSQL refuses root).
pub struct PrivateServer {
    pub port: u16,
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
}

impl PrivateServer {
    pub fn start() -> PrivateServer {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL's binaries under /usr/lib/postgresql")
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin"))
            .find(|p| p.join("initdb").exists())
            .expect("initdb");
        let dir = tempfile::Builder::new()
            .prefix("pg-private")
            .tempdir()
            .unwrap();
        if is_root() {
            let (uid, gid) = postgres_ids();
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let port = crate::helpers::free_port();
        let server = PrivateServer { port, dir, bin };
        server.run(
            "initdb",
            &[
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-D",
                &server.data(),
            ],
        );
        server.up();
        server
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let tool = self.bin.join(tool).display().to_string();
        let mut c = if is_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--", &tool]);
            c
        } else {
            std::process::Command::new(&tool)
        };
        let out = c.args(args).output().expect("PostgreSQL tool");
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the server and waits until it accepts connections.
    pub fn up(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "start",
            ],
        );
    }

    /// Stops the server (fast shutdown: every connection is closed).
    pub fn down(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let tool = self.bin.join("pg_ctl").display().to_string();
        let data = self.data();
        let mut c = if is_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--", &tool]);
            c
        } else {
            std::process::Command::new(&tool)
        };
        let _ = c.args(["-D", &data, "-m", "immediate", "stop"]).output();
    }
}

fn is_root() -> bool {
    // SAFETY-free: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn postgres_ids() -> (u32, u32) {
    let out = std::process::Command::new("id")
        .args(["-u", "postgres"])
        .output()
        .unwrap();
    let uid = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a postgres user");
    let out = std::process::Command::new("id")
        .args(["-g", "postgres"])
        .output()
        .unwrap();
    let gid = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a postgres group");
    (uid, gid)
}

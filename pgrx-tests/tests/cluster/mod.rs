//! A throwaway cluster of the test's own, for tests that must choose the PostgreSQL
//! binaries a data directory runs with (the upgrade test) or need a cluster no other
//! test has left roles in (the documentation examples). It listens on a Unix socket
//! in its own folder only, so it never competes for a TCP port.
#![allow(dead_code)]

use postgres::{Client, NoTls};
use std::env;
use std::path::PathBuf;
use std::process::{Command, Output};

/// A variable `./tc test` always sets: missing means the test was not started by it,
/// which is a failure, not a reason to skip.
pub fn required_env(name: &str) -> String {
    env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run the integration tests through ./tc test"))
}

pub struct Cluster {
    dir: PathBuf,
    port: String,
    running_bin: Option<String>,
}

impl Cluster {
    /// A new, empty cluster in `$TC_TEST_CLUSTERS_DIR/<name>`, created with `bin`'s initdb.
    pub fn init(name: &str, bin: &str) -> Cluster {
        let dir = PathBuf::from(required_env("TC_TEST_CLUSTERS_DIR")).join(name);
        let port = required_env("TC_TEST_PORT");
        let cluster = Cluster { dir, port, running_bin: None };
        if cluster.dir.exists() {
            // A cluster left running by an aborted run of this test.
            let _ = as_postgres(&format!("{bin}/pg_ctl"), &["-D", &cluster.data(), "-m", "immediate", "stop"]);
            std::fs::remove_dir_all(&cluster.dir).unwrap();
        }
        std::fs::create_dir_all(&cluster.dir).unwrap();
        run(Command::new("chown").arg("postgres").arg(&cluster.dir));
        check(as_postgres(
            &format!("{bin}/initdb"),
            &["-D", &cluster.data(), "-A", "trust", "-U", "postgres", "--no-sync", "--locale=C.UTF-8"],
        ));
        let conf = format!(
            "listen_addresses = ''\nport = {}\nunix_socket_directories = '{}'\n\
             shared_preload_libraries = 'pg_cron,pg_stat_statements'\ncron.database_name = 'postgres'\n\
             fsync = off\nautovacuum = off\nlc_messages = 'C'\ntimezone = 'UTC'\ndatestyle = 'ISO, MDY'\n",
            cluster.port,
            cluster.dir.display()
        );
        let conf_file = cluster.dir.join("data/postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_file).unwrap();
        text.push_str(&conf);
        std::fs::write(&conf_file, text).unwrap();
        cluster
    }

    /// A new cluster with `settings` appended to its configuration, started
    /// with the binaries `./tc test` names.
    pub fn running(name: &str, settings: &str) -> Cluster {
        let bin = required_env("TC_TEST_PG_BIN");
        let mut cluster = Cluster::init(name, &bin);
        cluster.configure(settings);
        cluster.start(&bin);
        cluster
    }

    /// Append settings to postgresql.conf (they apply at the next start).
    pub fn configure(&self, settings: &str) {
        let conf_file = self.dir.join("data/postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_file).unwrap();
        text.push('\n');
        text.push_str(settings);
        text.push('\n');
        std::fs::write(&conf_file, text).unwrap();
    }

    /// Kill the server as a crash would (immediate shutdown: no checkpoint,
    /// every session cut); `start` recovers it.
    pub fn crash(&mut self) {
        if let Some(bin) = self.running_bin.take() {
            check(as_postgres(&format!("{bin}/pg_ctl"), &["-D", &self.data(), "-m", "immediate", "-w", "stop"]));
        }
    }

    /// Stop the server and delete its folder (large data sets should not
    /// outlive the run on a shared disk).
    pub fn discard(mut self) {
        self.crash();
        std::fs::remove_dir_all(&self.dir).unwrap();
    }

    /// A base backup of this running cluster (`pg_basebackup -X stream`) as the
    /// data directory of a new cluster `name` of the test's own, not started: it
    /// listens on a socket in its own folder.
    pub fn base_backup(&self, name: &str, bin: &str) -> Cluster {
        let dir = PathBuf::from(required_env("TC_TEST_CLUSTERS_DIR")).join(name);
        let copy = Cluster { dir, port: self.port.clone(), running_bin: None };
        if copy.dir.exists() {
            let _ = as_postgres(&format!("{bin}/pg_ctl"), &["-D", &copy.data(), "-m", "immediate", "stop"]);
            std::fs::remove_dir_all(&copy.dir).unwrap();
        }
        std::fs::create_dir_all(&copy.dir).unwrap();
        run(Command::new("chown").arg("postgres").arg(&copy.dir));
        check(as_postgres(
            &format!("{bin}/pg_basebackup"),
            &["-h", &self.host(), "-p", &self.port, "-U", "postgres", "-D", &copy.data(), "-X", "stream", "--no-sync"],
        ));
        copy.configure(&format!("unix_socket_directories = '{}'", copy.dir.display()));
        copy
    }

    /// A file in the data directory, owned by the server's user.
    pub fn write_data_file(&self, name: &str, text: &str) {
        let path = self.dir.join("data").join(name);
        std::fs::write(&path, text).unwrap();
        run(Command::new("chown").arg("postgres").arg(&path));
    }

    /// A folder of the test's own (a WAL archive) the server can write to.
    pub fn shared_folder(name: &str) -> PathBuf {
        let dir = PathBuf::from(required_env("TC_TEST_CLUSTERS_DIR")).join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
        run(Command::new("chown").arg("postgres").arg(&dir));
        dir
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    pub fn host(&self) -> String {
        self.dir.display().to_string()
    }

    pub fn port(&self) -> &str {
        &self.port
    }

    /// Start the data directory with the server binaries of `bin`: their own $libdir
    /// and extension folder come with them.
    pub fn start(&mut self, bin: &str) {
        assert!(self.running_bin.is_none(), "the cluster is running already");
        let log = self.dir.join("server.log").display().to_string();
        check(as_postgres(&format!("{bin}/pg_ctl"), &["-D", &self.data(), "-l", &log, "-w", "start"]));
        self.running_bin = Some(bin.to_string());
    }

    pub fn stop(&mut self) {
        if let Some(bin) = self.running_bin.take() {
            check(as_postgres(&format!("{bin}/pg_ctl"), &["-D", &self.data(), "-m", "fast", "-w", "stop"]));
        }
    }

    pub fn connect(&self, db: &str) -> Client {
        self.connect_as("postgres", db)
    }

    pub fn connect_as(&self, user: &str, db: &str) -> Client {
        Client::connect(&format!("host={} port={} user={user} dbname={db}", self.host(), self.port), NoTls)
            .unwrap_or_else(|e| panic!("connect as {user} to {db}: {e}"))
    }

    /// A PostgreSQL client program of `bin` (pg_dump, psql) pointed at this cluster.
    pub fn tool(&self, bin: &str, program: &str) -> Command {
        let mut command = Command::new(format!("{bin}/{program}"));
        command.args(["-h", &self.host(), "-p", &self.port, "-U", "postgres"]);
        command.env_remove("PGOPTIONS").env("PGTZ", "UTC").env("LC_ALL", "C.UTF-8");
        command
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(bin) = self.running_bin.take() {
            let _ = as_postgres(&format!("{bin}/pg_ctl"), &["-D", &self.data(), "-m", "immediate", "stop"]);
        }
    }
}

/// The server runs as postgres: as root, switch to it (without RUST_BACKTRACE, which
/// pgrx would put into error details); as anyone else, run as oneself.
fn as_postgres(program: &str, args: &[&str]) -> Output {
    let root = run(Command::new("id").arg("-u")).trim() == "0";
    let mut command = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", "env", "-u", "RUST_BACKTRACE", program]);
        c
    } else {
        let mut c = Command::new(program);
        c.env_remove("RUST_BACKTRACE");
        c
    };
    command.args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"))
}

fn check(output: Output) {
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn run(command: &mut Command) -> String {
    let output = command.output().unwrap();
    check(output.clone());
    String::from_utf8(output.stdout).unwrap()
}

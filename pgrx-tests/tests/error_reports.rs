//! Errors raised through tenant.set_context and tenant.enter_context reach
//! the application as SQLSTATE, message, detail and hint, with no Rust
//! backtrace in the DETAIL, even on a server started with RUST_BACKTRACE=1
//! (pgrx appends one to a PostgreSQL error that crosses a Rust function
//! when backtraces are enabled). This test starts its own small cluster with
//! that environment, reachable only through a socket in its own folder.

mod common;
use common::*;
use postgres::{Client, NoTls};
use std::path::PathBuf;
use std::process::Command;

struct BacktraceCluster {
    dir: PathBuf,
}

impl BacktraceCluster {
    fn start() -> BacktraceCluster {
        let dir = PathBuf::from(host()).join("backtrace-cluster");
        if dir.join("data/postmaster.pid").exists() {
            BacktraceCluster { dir: dir.clone() }.stop();
        }
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert!(Command::new("chown").arg("postgres").arg(&dir).status().unwrap().success());
        let data = dir.join("data");
        let initdb = Command::new("runuser")
            .args(["-u", "postgres", "--", &pg_bin("initdb"), "-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&data)
            .output()
            .unwrap();
        assert!(initdb.status.success(), "initdb: {}", String::from_utf8_lossy(&initdb.stderr));
        let conf = format!(
            "listen_addresses = ''\nunix_socket_directories = '{}'\nport = {}\nfsync = off\n",
            dir.display(),
            port()
        );
        let mut settings = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        settings.push_str(&conf);
        std::fs::write(data.join("postgresql.conf"), settings).unwrap();
        let started = Command::new("runuser")
            .args(["-u", "postgres", "--", "env", "RUST_BACKTRACE=1", &pg_bin("pg_ctl"), "-w", "-l"])
            .arg(dir.join("server.log"))
            .arg("-D")
            .arg(&data)
            .arg("start")
            .status()
            .unwrap();
        assert!(started.success(), "the RUST_BACKTRACE=1 cluster did not start");
        BacktraceCluster { dir }
    }

    fn connect(&self, user: &str) -> Client {
        Client::connect(&format!("host={} port={} user={user} dbname=postgres", self.dir.display(), port()), NoTls)
            .unwrap()
    }

    fn stop(&self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--", &pg_bin("pg_ctl"), "-m", "immediate", "-D"])
            .arg(self.dir.join("data"))
            .arg("stop")
            .status();
    }
}

impl Drop for BacktraceCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

fn error_of(client: &mut Client, sql: &str) -> postgres::error::DbError {
    let _ = client.batch_execute("ROLLBACK");
    let error = client.batch_execute(sql).expect_err(sql).as_db_error().expect("a database error").clone();
    let _ = client.batch_execute("ROLLBACK");
    error
}

fn assert_no_backtrace(error: &postgres::error::DbError) {
    let detail = error.detail().unwrap_or_default();
    for trace in ["backtrace", "pgrx", ".rs:", "  0: "] {
        assert!(!detail.contains(trace), "a Rust backtrace in the DETAIL of \"{}\": {detail}", error.message());
    }
}

#[test]
fn context_errors_carry_their_hint_and_no_backtrace() {
    let cluster = BacktraceCluster::start();
    let mut su = cluster.connect("postgres");
    // The postmaster's environment (a backend's is overwritten by its process title).
    let pid_file = std::fs::read_to_string(cluster.dir.join("data/postmaster.pid")).unwrap();
    let environment = std::fs::read(format!("/proc/{}/environ", pid_file.lines().next().unwrap())).unwrap();
    assert!(
        environment.split(|b| *b == 0).any(|var| var == b"RUST_BACKTRACE=1"),
        "the server must run with RUST_BACKTRACE=1 for this test to mean anything"
    );
    su.batch_execute(
        "CREATE EXTENSION tenant_control;
         CREATE ROLE it_error_app LOGIN IN ROLE tenant_control_app;",
    )
    .unwrap();
    let (suspended, unknown) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let created = create(&mut su, suspended, "er_suspended");
    assert!(created.ok(), "{}", created.message);
    let id: uuid::Uuid = created.row.get("schema_id");
    assert!(call(&mut su, "suspend_institution", id).ok());

    let mut app = cluster.connect("it_error_app");
    let missing = error_of(&mut app, &format!("BEGIN; SELECT tenant.set_context('{unknown}')"));
    assert_eq!(missing.code().code(), "42704");
    assert_eq!(missing.message(), format!("no institution schema for institution {unknown}"));
    assert!(missing.hint().unwrap_or_default().contains("tenant_control.institutions_table"), "{missing:?}");
    assert_no_backtrace(&missing);

    let not_active = error_of(&mut app, &format!("BEGIN; SELECT tenant.set_context('{suspended}')"));
    assert_eq!(not_active.code().code(), "55000");
    assert!(not_active.message().contains("is SUSPENDED"), "{}", not_active.message());
    assert_no_backtrace(&not_active);

    let outside = error_of(&mut app, &format!("SELECT tenant.set_context('{suspended}')"));
    assert_eq!(outside.code().code(), "25P01");
    assert!(outside.hint().unwrap_or_default().contains("BEGIN"), "{outside:?}");
    assert_eq!(
        outside.detail(),
        Some("The context lasts until the end of the transaction; outside a block it would end with this statement.")
    );

    let direct = error_of(&mut app, &format!("BEGIN; SELECT * FROM tenant.enter_context('{unknown}')"));
    assert_eq!(direct.code().code(), "42704");
    assert!(direct.hint().is_some(), "{direct:?}");
    assert_no_backtrace(&direct);
    drop((app, su));
}

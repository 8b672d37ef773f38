//! Shared helpers: connections to the throwaway cluster started by `./tc test`.
#![allow(dead_code)]

use postgres::{Client, Config, NoTls, Row};
use std::env;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

pub fn host() -> String {
    env::var("TC_TEST_HOST").expect("TC_TEST_HOST: run the integration tests through ./tc test")
}

pub fn port() -> String {
    env::var("TC_TEST_PORT").expect("TC_TEST_PORT: run the integration tests through ./tc test")
}

pub fn pg_bin(tool: &str) -> String {
    format!("{}/{tool}", env::var("TC_TEST_PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into()))
}

pub fn connect_as(user: &str, db: &str) -> Client {
    Client::connect(&format!("host={} port={} user={user} dbname={db}", host(), port()), NoTls)
        .unwrap_or_else(|e| panic!("connect as {user} to {db}: {e}"))
}

/// A superuser connection that keeps the NOTICEs the server sends.
pub fn listening(db: &str) -> (Client, Arc<Mutex<Vec<String>>>) {
    listening_as("postgres", db)
}

/// A connection that keeps the NOTICEs and WARNINGs the server sends.
pub fn listening_as(user: &str, db: &str) -> (Client, Arc<Mutex<Vec<String>>>) {
    listening_at(&host(), &port(), user, db)
}

/// The same, to the server at `host` and `port` (a cluster of a test's own).
pub fn listening_at(host: &str, port: &str, user: &str, db: &str) -> (Client, Arc<Mutex<Vec<String>>>) {
    let notices = Arc::new(Mutex::new(Vec::new()));
    let sink = notices.clone();
    let client = Config::new()
        .host(host)
        .port(port.parse().unwrap())
        .user(user)
        .dbname(db)
        .notice_callback(move |notice| sink.lock().unwrap().push(notice.message().to_string()))
        .connect(NoTls)
        .unwrap();
    (client, notices)
}

pub fn superuser(db: &str) -> Client {
    connect_as("postgres", db)
}

/// A new database with the extension installed.
pub fn fresh_database(db: &str) -> Client {
    let mut admin = superuser("postgres");
    recreate_database(&mut admin, db);
    let mut client = superuser(db);
    client.batch_execute("CREATE EXTENSION tenant_control").unwrap();
    client
}

/// DROP and CREATE DATABASE cannot share one (implicitly transactional) batch.
pub fn recreate_database(admin: &mut Client, db: &str) {
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {db}")).unwrap();
}

/// The status row of a tenant function: (status, sqlstate, message).
pub struct Outcome {
    pub status: String,
    pub sqlstate: Option<String>,
    pub message: String,
    pub row: Row,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.status == "SUCCESS"
    }
}

pub fn outcome(row: Row) -> Outcome {
    Outcome { status: row.get("status"), sqlstate: row.get("sqlstate"), message: row.get("message"), row }
}

pub fn create(client: &mut Client, institution: Uuid, schema: &str) -> Outcome {
    outcome(
        client.query_one("SELECT * FROM tenant.create_institution_schema($1, $2)", &[&institution, &schema]).unwrap(),
    )
}

/// Create a tenant that must succeed; returns its schema_id.
pub fn create_ok(client: &mut Client, schema: &str) -> Uuid {
    let result = create(client, Uuid::new_v4(), schema);
    assert!(result.ok(), "create {schema}: {}", result.message);
    result.row.get("schema_id")
}

pub fn call(client: &mut Client, function: &str, schema_id: Uuid) -> Outcome {
    outcome(client.query_one(&format!("SELECT * FROM tenant.{function}($1)"), &[&schema_id]).unwrap())
}

/// SQLSTATE of a statement that must fail.
pub fn sqlstate_of_failure(client: &mut Client, sql: &str) -> String {
    match client.batch_execute(sql) {
        Ok(()) => panic!("expected an error from: {sql}"),
        Err(e) => e.code().map(|c| c.code().to_string()).unwrap_or_else(|| panic!("no SQLSTATE: {e}")),
    }
}

pub fn count(client: &mut Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).unwrap().get(0)
}

/// Events of a rolled-back transaction are written by the audit worker a
/// moment later: wait (at most thirty seconds) for `sql` to count `expected`.
pub fn eventually(client: &mut Client, sql: &str, expected: i64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let seen = count(client, sql);
        if seen == expected {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{sql}: {seen} rows, expected {expected}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

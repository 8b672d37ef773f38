//! tenant.set_context behind Debian's PgBouncer in transaction pooling mode:
//! many clients of different tenants share two server connections, and no
//! transaction ever sees another tenant's rows or inherits another's context.

mod common;
use common::*;
use postgres::{Client, NoTls, SimpleQueryMessage};
use std::fs;
use std::process::Command;
use std::thread;

const DB: &str = "it_bouncer";
const TENANTS: usize = 4;
const CLIENTS_PER_TENANT: usize = 3;
const ROUNDS: usize = 25;

fn bouncer_port() -> String {
    std::env::var("TC_BOUNCER_PORT").unwrap_or_else(|_| "6439".into())
}

struct Bouncer {
    dir: std::path::PathBuf,
}

impl Bouncer {
    fn start() -> Bouncer {
        let dir = std::path::PathBuf::from(host()).join("pgbouncer");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("users.txt"), "\"it_app\" \"\"\n").unwrap();
        fs::write(
            dir.join("pgbouncer.ini"),
            format!(
                "[databases]\n{DB} = host={host} port={port} dbname={DB}\n\n[pgbouncer]\n\
                 listen_addr = 127.0.0.1\nlisten_port = {bouncer_port}\nunix_socket_dir =\n\
                 auth_type = trust\nauth_file = {dir}/users.txt\npool_mode = transaction\n\
                 default_pool_size = 2\nmax_client_conn = 100\n\
                 logfile = {dir}/pgbouncer.log\npidfile = {dir}/pgbouncer.pid\n",
                host = host(),
                port = port(),
                bouncer_port = bouncer_port(),
                dir = dir.display()
            ),
        )
        .unwrap();
        Command::new("chown").args(["-R", "postgres"]).arg(&dir).status().unwrap();
        let started = Command::new("runuser")
            .args(["-u", "postgres", "--", "pgbouncer", "-d"])
            .arg(dir.join("pgbouncer.ini"))
            .status()
            .unwrap();
        assert!(started.success(), "pgbouncer did not start");
        thread::sleep(std::time::Duration::from_millis(500));
        Bouncer { dir }
    }

    fn connect(&self) -> Client {
        Client::connect(&format!("host=127.0.0.1 port={} user=it_app dbname={DB}", bouncer_port()), NoTls).unwrap()
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        if let Ok(pid) = fs::read_to_string(self.dir.join("pgbouncer.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}

/// Values of the first column of every row a simple query returned.
fn column(client: &mut Client, sql: &str) -> Result<Vec<String>, postgres::Error> {
    Ok(client
        .simple_query(sql)?
        .into_iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        })
        .collect())
}

#[test]
fn tenants_never_see_each_other_behind_transaction_pooling() {
    let mut su = fresh_database(DB);
    su.batch_execute(
        "DROP ROLE IF EXISTS it_app; CREATE ROLE it_app LOGIN; GRANT tenant_control_app TO it_app;
         CREATE TABLE tenant_template.notes (owner text NOT NULL, round int NOT NULL);",
    )
    .unwrap();
    let institutions: Vec<(uuid::Uuid, String)> = (0..TENANTS)
        .map(|i| {
            let institution = uuid::Uuid::new_v4();
            let name = format!("pb_{i}");
            assert!(create(&mut su, institution, &name).ok());
            (institution, name)
        })
        .collect();
    let bouncer = Bouncer::start();

    let clients: Vec<_> = institutions
        .iter()
        .flat_map(|tenant| std::iter::repeat_n(tenant.clone(), CLIENTS_PER_TENANT))
        .map(|(institution, schema)| {
            let mut client = bouncer.connect();
            thread::spawn(move || {
                for round in 0..ROUNDS {
                    client.batch_execute("BEGIN").unwrap();
                    let set = column(&mut client, &format!("SELECT tenant.set_context('{institution}')")).unwrap();
                    assert_eq!(set, vec![schema.clone()]);
                    client.batch_execute(&format!("INSERT INTO notes VALUES ('{schema}', {round})")).unwrap();
                    let owners = column(&mut client, "SELECT DISTINCT owner FROM notes").unwrap();
                    assert_eq!(owners, vec![schema.clone()], "a tenant saw another tenant's rows");
                    let user = column(&mut client, "SELECT current_user").unwrap();
                    assert_eq!(user, vec![format!("{schema}_owner")]);
                    // The tenant's role may ask which institution it serves.
                    let current = column(&mut client, "SELECT tenant.current_institution()").unwrap();
                    assert_eq!(current, vec![institution.to_string()]);
                    client.batch_execute("COMMIT").unwrap();

                    // The next transaction on whatever server connection starts with no context.
                    client.batch_execute("BEGIN").unwrap();
                    let user = column(&mut client, "SELECT current_user").unwrap();
                    assert_eq!(user, vec!["it_app".to_string()], "a role leaked across transactions");
                    let error = column(&mut client, "SELECT count(*) FROM notes").expect_err("notes without a context");
                    assert_eq!(error.code().map(|c| c.code()), Some("42P01"), "{error}");
                    client.batch_execute("ROLLBACK").unwrap();
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }

    // Few server connections served them all, and every row is where it belongs.
    let servers =
        count(&mut su, "SELECT count(*) FROM pg_stat_activity WHERE datname = 'it_bouncer' AND usename = 'it_app'");
    assert!(servers <= 2, "{servers} server connections");
    for (_, schema) in &institutions {
        let rows = count(&mut su, &format!("SELECT count(*) FROM {schema}.notes WHERE owner = '{schema}'"));
        assert_eq!(rows as usize, CLIENTS_PER_TENANT * ROUNDS);
        assert_eq!(count(&mut su, &format!("SELECT count(*) FROM {schema}.notes WHERE owner <> '{schema}'")), 0);
    }
    per_institution_limits_hold_behind_the_pool(&bouncer, &mut su, institutions[0].0, institutions[1].0);
    // Without the grant, an application role cannot even ask for a context.
    su.batch_execute("DROP ROLE IF EXISTS it_stranger; CREATE ROLE it_stranger LOGIN").unwrap();
    let mut stranger = connect_as("it_stranger", DB);
    let attempt = format!("BEGIN; SELECT tenant.set_context('{}'); COMMIT;", institutions[0].0);
    assert_eq!(sqlstate_of_failure(&mut stranger, &attempt), "42501");
}

/// Per-institution limits (tenant.set_limits) are set by set_context for its
/// transaction alone: behind the pool, the next transaction on the same
/// server connection has none of them, and the cap on concurrent
/// transactions counts transactions in the context, whichever client and
/// server connection they use.
fn per_institution_limits_hold_behind_the_pool(
    bouncer: &Bouncer,
    su: &mut Client,
    capped: uuid::Uuid,
    free: uuid::Uuid,
) {
    let mut first = bouncer.connect();
    let mut second = bouncer.connect();
    let default = column(&mut first, "SHOW statement_timeout").unwrap();
    su.execute(
        "SELECT tenant.set_limits(id, '{\"statement_timeout\": \"300ms\", \"max_transactions\": 1}')
           FROM tenant.tenant_schemas WHERE institution_id = $1 AND status = 'ACTIVE'",
        &[&capped],
    )
    .unwrap();
    first.batch_execute(&format!("BEGIN; SELECT tenant.set_context('{capped}')")).unwrap();
    assert_eq!(column(&mut first, "SHOW statement_timeout").unwrap(), vec!["300ms"]);
    let slow = first.batch_execute("SELECT pg_sleep(2)").unwrap_err();
    assert_eq!(slow.code().map(|c| c.code()), Some("57014"), "{slow}");
    first.batch_execute("ROLLBACK").unwrap();
    for client in [&mut first, &mut second] {
        client.batch_execute("BEGIN").unwrap();
        assert_eq!(column(client, "SHOW statement_timeout").unwrap(), default, "a limit outlived its transaction");
        client.batch_execute(&format!("SELECT tenant.set_context('{free}')")).unwrap();
        assert_eq!(column(client, "SHOW statement_timeout").unwrap(), default, "another institution's limit applied");
        client.batch_execute("SELECT pg_sleep(0.5); COMMIT").unwrap();
    }
    // One transaction in the capped institution's context at a time.
    first.batch_execute(&format!("BEGIN; SELECT tenant.set_context('{capped}')")).unwrap();
    second.batch_execute("BEGIN").unwrap();
    let refused = second.batch_execute(&format!("SELECT tenant.set_context('{capped}')")).unwrap_err();
    assert_eq!(refused.code().map(|c| c.code()), Some("53300"), "{refused}");
    second.batch_execute("ROLLBACK").unwrap();
    first.batch_execute("COMMIT").unwrap();
    second.batch_execute(&format!("BEGIN; SELECT tenant.set_context('{capped}'); COMMIT")).unwrap();
}

//! The attack suite: tenant-written code never runs with more rights than the
//! tenant's role (issue 10).
//!
//! A LOGIN role that is a member of tenant roles plants payloads of every kind
//! a tenant can write (attacks/*.sql and the operators below): each calls
//! `pwn(tag)`, which records who ran it (`public.tc_attack_seen`) and tries to
//! leave marks only a role with more rights than the tenant can leave (a row in
//! `public.tc_attack_marks`, on which nobody has any privilege; making the
//! attacker a superuser; granting it `pg_execute_server_program` or
//! `tenant_control_admin`). Then three callers run every operation of the
//! extension on their own attacked tenants (and the fleet-wide ones on all):
//! a non-superuser member of `tenant_control_admin`, a superuser, and a
//! pg_cron job. The suite collects every payload x operation x caller that ran
//! with more rights than the tenant, every operation that failed, and every
//! change to the attacker's role, and reports them all in one failure.
//!
//! Run it alone: `cargo test -p tenant_control_integration --test attacks -- --test-threads=1`
//! against a cluster started as `./tc test` starts it (see docs/_fragments/attack-suite.md).

mod common;
use common::*;
use postgres::Client;
use std::collections::{BTreeMap, BTreeSet};
use std::thread;
use std::time::{Duration, Instant};
use uuid::Uuid;

const DB: &str = "it_attacks";
const ATTACKER: &str = "atk_attacker";
const ADMIN: &str = "atk_platform_admin";
const INSTITUTION_ADMIN: &str = "atk_institution_admin";
/// The advisory lock that holds the pg_cron job back until the other callers are done.
const CRON_GATE: (i32, i32) = (740_101, 10);
const CRON_JOB: &str = "tc_attack_suite";

const PAYLOADS: &str = include_str!("attacks/payload.sql");
const SHADOWS: &str = include_str!("attacks/shadows.sql");
const RULES: &str = include_str!("attacks/rules.sql");

/// Operators a tenant defines in its schema: (operator, left, right, result).
/// The near types (oid against regclass, name against text, ...) win over
/// pg_catalog's even when pg_catalog is searched first.
const OPERATORS: &[(&str, &str, &str, &str)] = &[
    ("=", "oid", "oid", "boolean"),
    ("=", "oid", "regclass", "boolean"),
    ("=", "regclass", "oid", "boolean"),
    ("=", "regclass", "regclass", "boolean"),
    ("=", "oid", "regnamespace", "boolean"),
    ("=", "regnamespace", "oid", "boolean"),
    ("=", "regnamespace", "regnamespace", "boolean"),
    ("=", "oid", "regrole", "boolean"),
    ("=", "regrole", "regrole", "boolean"),
    ("=", "oid", "regtype", "boolean"),
    ("=", "oid", "regproc", "boolean"),
    ("=", "name", "name", "boolean"),
    ("=", "name", "text", "boolean"),
    ("=", "text", "name", "boolean"),
    ("=", "text", "text", "boolean"),
    ("=", "varchar", "varchar", "boolean"),
    ("=", "\"char\"", "\"char\"", "boolean"),
    ("=", "integer", "integer", "boolean"),
    ("=", "bigint", "bigint", "boolean"),
    ("=", "smallint", "smallint", "boolean"),
    ("=", "uuid", "uuid", "boolean"),
    ("=", "boolean", "boolean", "boolean"),
    ("=", "text", "unknown", "boolean"),
    ("<>", "oid", "oid", "boolean"),
    ("<>", "oid", "regclass", "boolean"),
    ("<>", "name", "name", "boolean"),
    ("<>", "text", "text", "boolean"),
    ("<>", "\"char\"", "\"char\"", "boolean"),
    ("<", "integer", "integer", "boolean"),
    ("<", "bigint", "bigint", "boolean"),
    (">", "bigint", "bigint", "boolean"),
    ("~~", "text", "text", "boolean"),
    ("~~", "name", "text", "boolean"),
    ("||", "text", "text", "text"),
    ("||", "text", "name", "text"),
    ("||", "name", "text", "text"),
];

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// Payloads a backup copies: data-evaluating objects, casts, hash look-alikes.
    Rows,
    /// The same plus operators, aggregates and shadowed built-ins (not copyable).
    Ops,
    /// The same as Rows plus rules, planted after a clean backup was taken.
    Rules,
}

struct Tenant {
    kind: Kind,
    schema: String,
    id: Uuid,
    institution: Uuid,
}

impl Tenant {
    fn role(&self) -> String {
        format!("{}_owner", self.schema)
    }
    fn label(&self) -> &'static str {
        match self.kind {
            Kind::Rows => "rows tenant",
            Kind::Ops => "operators tenant",
            Kind::Rules => "rules tenant",
        }
    }
}

struct Caller {
    name: &'static str,
    tenants: Vec<Tenant>,
}

impl Caller {
    fn tenant(&self, kind: Kind) -> &Tenant {
        self.tenants.iter().find(|t| t.kind == kind).unwrap()
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Shape {
    /// Returns status rows (status, message, ...).
    Status,
    /// Returns rows of any shape; every column is read.
    Rows,
    /// A procedure that commits: run as a statement of its own.
    Call,
}

struct Step {
    op: String,
    sql: String,
    shape: Shape,
    /// The operation must succeed on today's code and after the fixes.
    must: bool,
    /// Keep this column of a SUCCESS row under this name (public.tc_attack_vars).
    capture: Option<(String, &'static str)>,
}

fn step(shape: Shape, op: impl Into<String>, sql: impl Into<String>, must: bool) -> Step {
    Step { op: op.into(), sql: sql.into(), shape, must, capture: None }
}

fn capturing(mut s: Step, var: &str, column: &'static str) -> Step {
    s.capture = Some((var.to_string(), column));
    s
}

/// A value a caller's earlier step kept (NULL if that step failed).
fn var(caller: &str, name: &str) -> String {
    format!("(SELECT v.value FROM public.tc_attack_vars v WHERE v.caller = '{caller}' AND v.name = '{name}' ORDER BY v.at DESC LIMIT 1)")
}

fn backup_of_schema(caller: &str, name: &str) -> String {
    format!("(SELECT b.backup_id FROM tenant.backups b WHERE b.backup_schema = {})", var(caller, name))
}

/// Every operation of the extension, on the caller's own tenants (and the
/// fleet-wide ones), up to the drop of its tenants.
fn operations_until_drop(c: &Caller) -> Vec<Step> {
    use Shape::*;
    let n = c.name;
    let (rows, ops, rules) = (c.tenant(Kind::Rows), c.tenant(Kind::Ops), c.tenant(Kind::Rules));
    let mut s = Vec::new();
    // First, before any other step of a pg_cron caller's single transaction
    // holds a lock the copy's own connection (to this database) would wait for.
    // A non-superuser may not copy: it is refused (42501).
    s.push(step(
        Status,
        "copy_institution_from this database as a drill rows tenant",
        format!(
            "SELECT * FROM tenant.copy_institution_from('{}', '{}', '{}_copy')",
            quoted(&format!("host={} port={} user=postgres dbname={DB}", host(), port())),
            rows.institution,
            rows.schema
        ),
        n != "admin",
    ));
    for t in &c.tenants {
        let (id, l) = (format!("'{}'::uuid", t.id), t.label());
        s.push(step(
            Status,
            format!("set_institution_status MAINTENANCE {l}"),
            format!("SELECT * FROM tenant.set_institution_status({id}, 'MAINTENANCE', 'attack suite')"),
            true,
        ));
        s.push(step(
            Status,
            format!("suspend_institution {l}"),
            format!("SELECT * FROM tenant.suspend_institution({id}, 'attack suite')"),
            true,
        ));
        s.push(step(
            Status,
            format!("activate_institution {l}"),
            format!("SELECT * FROM tenant.activate_institution({id})"),
            true,
        ));
        s.push(step(
            Status,
            format!("start_maintenance {l}"),
            format!("SELECT * FROM tenant.start_maintenance({id})"),
            true,
        ));
        s.push(step(
            Status,
            format!("activate_institution again {l}"),
            format!("SELECT * FROM tenant.activate_institution({id})"),
            true,
        ));
        s.push(step(
            Status,
            format!("set_quota 8 kB {l}"),
            format!("SELECT * FROM tenant.set_quota({id}, '8 kB')"),
            true,
        ));
        s.push(step(
            Rows,
            format!("refresh_storage over quota {l}"),
            format!("SELECT tenant.refresh_storage({id})"),
            true,
        ));
        s.push(step(
            Status,
            format!("set_quota NULL {l}"),
            format!("SELECT * FROM tenant.set_quota({id}, NULL)"),
            true,
        ));
        s.push(step(Rows, format!("refresh_storage {l}"), format!("SELECT tenant.refresh_storage({id})"), true));
        s.push(step(
            Rows,
            format!("grant_institution_admin {l}"),
            format!("SELECT tenant.grant_institution_admin('{}', '{INSTITUTION_ADMIN}')", t.institution),
            true,
        ));
        s.push(step(
            Rows,
            format!("revoke_institution_admin {l}"),
            format!("SELECT tenant.revoke_institution_admin('{}', '{INSTITUTION_ADMIN}')", t.institution),
            true,
        ));
    }
    s.push(step(Call, "refresh_all_storage", "CALL tenant.refresh_all_storage()", true));

    let (r, o, l) = (format!("'{}'::uuid", rows.id), format!("'{}'::uuid", ops.id), format!("'{}'::uuid", rules.id));
    let (b1, b2, bl) =
        (format!("{}::uuid", var(n, "b1")), format!("{}::uuid", var(n, "b2")), format!("{}::uuid", var(n, "bl")));
    s.push(capturing(
        step(
            Status,
            "backup_institution_schema verify=false rows tenant",
            format!("SELECT * FROM tenant.backup_institution_schema({r}, false)"),
            true,
        ),
        "b1",
        "backup_id",
    ));
    s.push(capturing(
        step(
            Status,
            "backup_institution_schema verify=true rows tenant",
            format!("SELECT * FROM tenant.backup_institution_schema({r}, true)"),
            true,
        ),
        "b2",
        "backup_id",
    ));
    // Refused (0A000) today: the operators and rules cannot be copied. Run anyway.
    s.push(step(
        Status,
        "backup_institution_schema operators tenant",
        format!("SELECT * FROM tenant.backup_institution_schema({o}, true)"),
        false,
    ));
    s.push(step(
        Status,
        "backup_institution_schema rules tenant",
        format!("SELECT * FROM tenant.backup_institution_schema({l}, false)"),
        false,
    ));
    s.push(step(Rows, "verify_backup rows tenant", format!("SELECT * FROM tenant.verify_backup({b1}, false)"), true));
    s.push(step(
        Rows,
        "verify_backup against_live rows tenant",
        format!("SELECT * FROM tenant.verify_backup({b2}, true)"),
        true,
    ));
    s.push(step(Rows, "verify_backup rules tenant", format!("SELECT * FROM tenant.verify_backup({bl}, false)"), true));
    s.push(step(
        Rows,
        "verify_backup against_live rules tenant",
        format!("SELECT * FROM tenant.verify_backup({bl}, true)"),
        true,
    ));
    s.push(step(
        Status,
        "restore_table replace customers rows tenant",
        format!("SELECT * FROM tenant.restore_table({b1}, 'customers', 'replace')"),
        true,
    ));
    s.push(step(
        Status,
        "restore_table missing orders rows tenant",
        format!("SELECT * FROM tenant.restore_table({b1}, 'orders', 'missing')"),
        true,
    ));
    // Rules make restore_table's statements fail today (0A000: DO ALSO rules in
    // WITH, ON CONFLICT): these may fail, but must not escalate.
    s.push(step(
        Status,
        "restore_table replace customers rules tenant",
        format!("SELECT * FROM tenant.restore_table({bl}, 'customers', 'replace')"),
        false,
    ));
    s.push(step(
        Status,
        "restore_table missing orders rules tenant",
        format!("SELECT * FROM tenant.restore_table({bl}, 'orders', 'missing')"),
        false,
    ));
    s.push(step(
        Status,
        "restore_institution_schema in place rows tenant",
        format!("SELECT * FROM tenant.restore_institution_schema({b1})"),
        true,
    ));

    for t in &c.tenants {
        s.push(step(
            Status,
            format!("migrate_institution_schema {}", t.label()),
            format!("SELECT * FROM tenant.migrate_institution_schema('{}')", t.id),
            true,
        ));
    }
    s.push(step(Call, "apply_migrations dry_run", "CALL tenant.apply_migrations(dry_run => true)", true));
    s.push(step(Call, "apply_migrations", "CALL tenant.apply_migrations()", true));

    for t in &c.tenants {
        let (id, l) = (format!("'{}'::uuid", t.id), t.label());
        s.push(step(
            Rows,
            format!("check_integrity {l}"),
            format!("SELECT * FROM tenant.check_integrity({id}, false)"),
            true,
        ));
        s.push(step(
            Rows,
            format!("check_integrity fix {l}"),
            format!("SELECT * FROM tenant.check_integrity({id}, true)"),
            true,
        ));
        s.push(step(
            Rows,
            format!("institution_health {l}"),
            format!("SELECT * FROM tenant.institution_health({id})"),
            true,
        ));
        s.push(step(Rows, format!("health_checks {l}"), format!("SELECT * FROM tenant.health_checks({id})"), true));
        s.push(step(
            Rows,
            format!("find_institution {l}"),
            format!("SELECT * FROM tenant.find_institution('{}')", t.schema),
            true,
        ));
        s.push(step(
            Rows,
            format!("optimize_institution_schema {l}"),
            format!("SELECT * FROM tenant.optimize_institution_schema({id})"),
            true,
        ));
    }
    s.push(step(Rows, "check_integrity fleet", "SELECT * FROM tenant.check_integrity(NULL, false)", true));
    s.push(step(Rows, "check_integrity fleet fix", "SELECT * FROM tenant.check_integrity(NULL, true)", true));
    s.push(step(Call, "run_integrity_check", "CALL tenant.run_integrity_check()", true));
    s.push(step(Call, "run_integrity_check fix", "CALL tenant.run_integrity_check(true)", true));
    for view in [
        "fleet_health",
        "fleet_health_summary",
        "table_stats",
        "tenant_stats",
        "migration_status",
        "warm_pool",
        "backups",
    ] {
        s.push(step(Rows, view, format!("SELECT * FROM tenant.{view}"), true));
    }
    s.push(step(Rows, "list_institutions", "SELECT * FROM tenant.list_institutions()", true));
    s.push(step(Rows, "slow_queries", "SELECT * FROM tenant.slow_queries(5)", true));
    s.push(step(Rows, "backup_free_space", "SELECT tenant.backup_free_space()", true));
    s.push(step(Status, "record_usage_snapshot", "SELECT * FROM tenant.record_usage_snapshot()", true));
    s.push(step(Call, "take_usage_snapshot", "CALL tenant.take_usage_snapshot()", true));
    s.push(step(Call, "run_maintenance", "CALL tenant.run_maintenance()", true));
    s.push(step(Rows, "schedule_maintenance", "SELECT * FROM tenant.schedule_maintenance()", true));
    s.push(step(Status, "add_spare_schema", "SELECT * FROM tenant.add_spare_schema()", true));
    s.push(step(Call, "fill_pool", "CALL tenant.fill_pool(2)", true));
    s.push(step(
        Status,
        "create_institution_schema from the pool",
        format!("SELECT * FROM tenant.create_institution_schema(gen_random_uuid(), 'atk_new_{n}')"),
        true,
    ));
    s.push(step(Status, "remove_backup", format!("SELECT * FROM tenant.remove_backup({b2})"), true));
    s.push(step(Call, "cleanup_backups", "CALL tenant.cleanup_backups(keep_last => 2)", true));
    for t in &c.tenants {
        let var_name = format!("dropped {}", t.label());
        s.push(capturing(
            step(
                Status,
                format!("drop_institution_schema {}", t.label()),
                format!("SELECT * FROM tenant.drop_institution_schema('{}')", t.id),
                true,
            ),
            &var_name,
            "backup_schema",
        ));
    }
    s
}

/// After the drop: the drop's backups verified and restored.
fn operations_after_drop(c: &Caller) -> Vec<Step> {
    use Shape::*;
    let mut s = Vec::new();
    for t in &c.tenants {
        let backup = backup_of_schema(c.name, &format!("dropped {}", t.label()));
        s.push(step(
            Rows,
            format!("verify_backup of the drop {}", t.label()),
            format!("SELECT * FROM tenant.verify_backup({backup}, false)"),
            true,
        ));
        // Only the rows tenant can be copied back; the others are refused (0A000).
        s.push(step(
            Status,
            format!("restore_institution_schema of the dropped {}", t.label()),
            format!("SELECT * FROM tenant.restore_institution_schema({backup})"),
            t.kind == Kind::Rows,
        ));
    }
    s
}

fn quoted(text: &str) -> String {
    text.replace('\'', "''")
}

/// PL/pgSQL statements running one step and recording its outcome in
/// public.tc_attack_results (and the captured value in public.tc_attack_vars).
fn render(caller: &str, s: &Step) -> String {
    let op = quoted(&s.op);
    let tag = format!("PERFORM pg_catalog.set_config('attack.op', '{caller}: {op}', false);\n");
    let result = |ok: &str, message: &str| {
        format!(
            "INSERT INTO public.tc_attack_results (caller, op, must, ok, message) VALUES ('{caller}', '{op}', {}, {ok}, {message});\n",
            s.must
        )
    };
    let raised = result("false", "'raised ' || SQLSTATE || ': ' || SQLERRM");
    match s.shape {
        Shape::Status => {
            let capture = s
                .capture
                .as_ref()
                .map(|(name, column)| {
                    format!("IF r.status = 'SUCCESS' THEN INSERT INTO public.tc_attack_vars (caller, name, value) VALUES ('{caller}', '{name}', r.{column}::text); END IF;\n")
                })
                .unwrap_or_default();
            format!(
                "{tag}BEGIN\nFOR r IN {} LOOP\n{}{capture}END LOOP;\nEXCEPTION WHEN others THEN\n{raised}END;\nCOMMIT;\n",
                s.sql,
                result("r.status = 'SUCCESS'", "r.status || ': ' || coalesce(r.message, '')")
            )
        }
        Shape::Rows => format!(
            "{tag}BEGIN\nSELECT pg_catalog.md5(pg_catalog.string_agg(q::text, ',')) INTO t FROM ({}) q;\n{}EXCEPTION WHEN others THEN\n{raised}END;\nCOMMIT;\n",
            s.sql,
            result("true", "'read'")
        ),
        // A committing procedure cannot run inside an exception block: its
        // "started" row stays false if it raises and ends the block.
        Shape::Call => format!(
            "{tag}{}COMMIT;\n{};\nUPDATE public.tc_attack_results SET ok = true, message = 'done' WHERE caller = '{caller}' AND op = '{op}';\nCOMMIT;\n",
            result("false", "'started, did not finish'"),
            s.sql
        ),
    }
}

fn do_block(caller: &str, prologue: &str, steps: &[&Step]) -> String {
    let body: String = steps.iter().map(|s| render(caller, s)).collect();
    format!("DO $attack$\nDECLARE r record; t text;\nBEGIN\n{prologue}{body}END\n$attack$")
}

/// Runs the steps over a client connection, each as a top-level statement of
/// its own: one that raises (a procedure, a deferred trigger at COMMIT) ends
/// only itself.
fn run_over_connection(client: &mut Client, caller: &str, steps: &[Step], failures: &mut Vec<String>) {
    for s in steps {
        if let Err(e) = client.batch_execute(&do_block(caller, "", &[s])) {
            failures.push(format!("{caller}: operation `{}` raised out of its block: {}", s.op, error_text(&e)));
        }
    }
}

fn error_text(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} [{}]", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

fn plant_sections(file: &str, schema: &str, run: &str) -> Vec<(String, String)> {
    let text = file.replace("@schema@", schema).replace("@attacker@", ATTACKER).replace("@run@", run);
    text.split("-- plant: ")
        .skip(1)
        .map(|section| {
            let (name, sql) = section.split_once('\n').unwrap();
            (name.trim().to_string(), sql.to_string())
        })
        .collect()
}

fn operator_sections(schema: &str) -> Vec<(String, String)> {
    OPERATORS
        .iter()
        .enumerate()
        .map(|(i, (op, left, right, result))| {
            let name = format!("operator {op} ({left}, {right})");
            let sql = format!(
                "CREATE FUNCTION pwn_operator_{i}(a {left}, b {right}) RETURNS {result} LANGUAGE plpgsql IMMUTABLE
                 SET search_path = pg_catalog, pg_temp
                 AS $f$ BEGIN PERFORM {schema}.pwn('{}'); RETURN a OPERATOR(pg_catalog.{op}) b; END $f$;
                 CREATE OPERATOR {op} (LEFTARG = {left}, RIGHTARG = {right}, FUNCTION = pwn_operator_{i});",
                quoted(&name)
            );
            (name, sql)
        })
        .collect()
}

/// A realistic template whose tables, view and function belong to
/// `tenant_template_owner` (so each tenant owns its copies and may decorate
/// them), and the attacker's LOGIN role.
fn set_up_template_and_attacker(su: &mut Client) {
    su.batch_execute(&format!(
        "DO $$ BEGIN
           IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ATTACKER}') THEN CREATE ROLE {ATTACKER} LOGIN; END IF;
         END $$;
         SET search_path = tenant_template;
         CREATE TABLE customers (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL, meta json);
         CREATE TABLE orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                              customer_id bigint NOT NULL REFERENCES customers ON DELETE CASCADE,
                              amount numeric(10, 2) NOT NULL DEFAULT 0, note text);
         CREATE INDEX orders_customer_idx ON orders (customer_id);
         CREATE VIEW order_totals AS
             SELECT c.id, c.name, sum(o.amount) AS total FROM customers c LEFT JOIN orders o ON o.customer_id = c.id
              GROUP BY c.id, c.name;
         CREATE FUNCTION order_count(customer bigint) RETURNS bigint LANGUAGE sql STABLE
             AS 'SELECT count(*) FROM orders WHERE customer_id = customer';
         ALTER TABLE customers OWNER TO tenant_template_owner;
         ALTER TABLE orders OWNER TO tenant_template_owner;
         ALTER VIEW order_totals OWNER TO tenant_template_owner;
         ALTER FUNCTION order_count(bigint) OWNER TO tenant_template_owner;
         RESET search_path;"
    ))
    .unwrap();
    reset_attacker(su);
}

/// The platform's side: the database, the template, the roles, the tables the
/// payloads write to, and the three callers' tenants.
fn set_up(su: &mut Client) -> Vec<Caller> {
    su.batch_execute(&format!(
        "CREATE EXTENSION pg_stat_statements;
         DO $$ BEGIN
           IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ADMIN}') THEN CREATE ROLE {ADMIN} LOGIN; END IF;
           IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{INSTITUTION_ADMIN}') THEN CREATE ROLE {INSTITUTION_ADMIN}; END IF;
         END $$;
         GRANT tenant_control_admin TO {ADMIN};
         CREATE TABLE public.tc_attack_marks (payload text, op text, who name, at timestamptz DEFAULT clock_timestamp());
         REVOKE ALL ON public.tc_attack_marks FROM PUBLIC;
         CREATE TABLE public.tc_attack_seen (payload text, op text, who name, privileged boolean,
                                             at timestamptz DEFAULT clock_timestamp());
         GRANT INSERT ON public.tc_attack_seen TO PUBLIC;
         CREATE TABLE public.tc_attack_results (caller text, op text, must boolean, ok boolean, message text,
                                                at timestamptz DEFAULT clock_timestamp());
         CREATE TABLE public.tc_attack_vars (caller text, name text, value text, at timestamptz DEFAULT clock_timestamp());
         GRANT SELECT, INSERT, UPDATE ON public.tc_attack_results, public.tc_attack_vars TO {ADMIN};"
    ))
    .unwrap();
    set_up_template_and_attacker(su);
    let mut callers = Vec::new();
    for name in ["admin", "superuser", "cron"] {
        let mut tenants = Vec::new();
        for (kind, letter) in [(Kind::Rows, "r"), (Kind::Ops, "o"), (Kind::Rules, "l")] {
            let (schema, institution) = (format!("atk_{letter}_{name}"), Uuid::new_v4());
            let created = create(su, institution, &schema);
            assert!(created.ok(), "create {schema}: {}", created.message);
            su.batch_execute(&format!("GRANT {schema}_owner TO {ATTACKER}")).unwrap();
            tenants.push(Tenant { kind, schema, id: created.row.get("schema_id"), institution });
        }
        callers.push(Caller { name, tenants });
    }
    callers
}

/// Drops what an earlier run left in the cluster (roles outlive databases):
/// the database, then the tenant roles named `<prefix>...`.
fn clean_cluster(db: &str, prefix: &str) {
    let mut postgres = superuser("postgres");
    postgres.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_cron").unwrap();
    postgres.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = $1", &[&CRON_JOB]).unwrap();
    recreate_database(&mut postgres, db);
    let leftovers: Vec<String> = postgres
        .query(
            "SELECT rolname::text FROM pg_roles WHERE starts_with(rolname, $1) AND rolname LIKE '%\\_owner'",
            &[&prefix],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for role in leftovers {
        let _ = postgres.batch_execute(&format!("DROP ROLE \"{role}\""));
    }
}

/// The attacker's side: rows in every tenant, then the payloads, planted as
/// the tenant's role from a session that first shadows names in pg_temp.
fn plant(callers: &[Caller], su: &mut Client, run: &str, notes: &mut Vec<String>) {
    let mut attacker = connect_as(ATTACKER, DB);
    let first = &callers[0].tenants[0].schema;
    attacker
        .batch_execute(&format!(
            "SET attack.op = 'attacker: planting';
             CREATE FUNCTION pg_temp.lower(text) RETURNS text LANGUAGE plpgsql
                 AS $f$ BEGIN PERFORM {first}.pwn('pg_temp.lower(text)'); RETURN pg_catalog.lower($1); END $f$;
             CREATE FUNCTION pg_temp.now() RETURNS timestamptz LANGUAGE plpgsql
                 AS $f$ BEGIN PERFORM {first}.pwn('pg_temp.now()'); RETURN pg_catalog.now(); END $f$;
             CREATE TEMP TABLE tenant_schemas (schema_name text, quota_state text, status text);
             CREATE TEMP TABLE template_changes (id bigint);"
        ))
        .unwrap();
    for t in callers.iter().flat_map(|c| &c.tenants) {
        attacker
            .batch_execute(&format!(
                "SET ROLE {role}; SET search_path = {schema}, pg_catalog;
                 INSERT INTO customers (name, meta) SELECT 'customer ' || g, '{{\"g\": 1}}' FROM generate_series(1, 20) g;
                 INSERT INTO orders (customer_id, amount, note) SELECT c.id, 10, 'order' FROM customers c, generate_series(1, 2);
                 RESET ROLE; RESET search_path;",
                role = t.role(),
                schema = t.schema
            ))
            .unwrap();
        if t.kind == Kind::Rules {
            // The platform's clean backup, before any payload exists.
            let row = su.query_one("SELECT * FROM tenant.backup_institution_schema($1)", &[&t.id]).unwrap();
            let taken = outcome(row);
            assert!(taken.ok(), "clean backup of {}: {}", t.schema, taken.message);
            let caller = callers.iter().find(|c| c.tenants.iter().any(|x| x.id == t.id)).unwrap().name;
            let id: Uuid = taken.row.get("backup_id");
            su.execute(
                "INSERT INTO public.tc_attack_vars (caller, name, value) VALUES ($1, 'bl', $2)",
                &[&caller, &id.to_string()],
            )
            .unwrap();
        }
        let mut sections = plant_sections(PAYLOADS, &t.schema, run);
        match t.kind {
            Kind::Ops => {
                sections.extend(plant_sections(SHADOWS, &t.schema, run));
                sections.extend(operator_sections(&t.schema));
            }
            Kind::Rules => sections.extend(plant_sections(RULES, &t.schema, run)),
            Kind::Rows => {}
        }
        sections.push((
            "a trigger named like the extension's (tc_*)".into(),
            "CREATE TRIGGER tc_pwn_hidden BEFORE INSERT OR UPDATE OR DELETE ON customers FOR EACH ROW EXECUTE FUNCTION pwn_trigger();".into(),
        ));
        for (name, sql) in sections {
            let batch = format!(
                "BEGIN; SET LOCAL ROLE {}; SET LOCAL search_path = {}, pg_catalog; {sql}; COMMIT;",
                t.role(),
                t.schema
            );
            if let Err(e) = attacker.batch_execute(&batch) {
                attacker.batch_execute("ROLLBACK").unwrap();
                notes.push(format!("{}: planting `{name}` was refused: {}", t.schema, error_text(&e)));
            }
        }
        attacker
            .batch_execute(&format!(
                "SET ROLE {role}; INSERT INTO {schema}.customers (name) SELECT 'late ' || g FROM generate_series(1, 5) g; RESET ROLE;",
                role = t.role(),
                schema = t.schema
            ))
            .unwrap();
    }
    // The one extension function PUBLIC may call, from the session with the pg_temp shadows.
    // (It may be refused, 42501 on schema tenant: what matters is that it runs nothing of the tenant's.)
    if let Err(e) = attacker.batch_execute("SELECT tenant.current_institution()") {
        notes.push(format!("the attacker's tenant.current_institution() was refused: {}", error_text(&e)));
    }
}

/// The attacker's role as the catalogs describe it: attributes, memberships
/// (by role oid), privileged roles it reaches, direct grants and settings.
fn attacker_state(su: &mut Client) -> (String, Vec<u32>) {
    let described: String = su
        .query_one(
            "WITH me AS (SELECT oid FROM pg_roles WHERE rolname = $1)
             SELECT format('attributes %s; reaches %s; grants %s; settings %s',
               (SELECT row(rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication, rolbypassrls)::text
                  FROM pg_roles WHERE rolname = $1),
               (SELECT coalesce(string_agg(p, ',' ORDER BY p), '') FROM unnest(ARRAY['tenant_control_admin',
                   'tenant_control_app', 'tenant_control_institution_admin', 'pg_execute_server_program',
                   'pg_read_server_files', 'pg_write_server_files', 'pg_read_all_data', 'pg_write_all_data',
                   'pg_signal_backend', 'postgres', 'tenant_template_owner']) p WHERE pg_has_role($1, p, 'MEMBER')),
               (SELECT coalesce(string_agg(x, ',' ORDER BY x), '') FROM (
                   SELECT c.oid::regclass::text || ':' || a.privilege_type AS x FROM pg_class c, aclexplode(c.relacl) a, me WHERE a.grantee = me.oid
                   UNION ALL SELECT n.nspname || ':' || a.privilege_type FROM pg_namespace n, aclexplode(n.nspacl) a, me WHERE a.grantee = me.oid
                   UNION ALL SELECT p.oid::regprocedure::text || ':' || a.privilege_type FROM pg_proc p, aclexplode(p.proacl) a, me WHERE a.grantee = me.oid
                   UNION ALL SELECT d.datname || ':' || a.privilege_type FROM pg_database d, aclexplode(d.datacl) a, me WHERE a.grantee = me.oid
                   UNION ALL SELECT 'owns ' || c.oid::regclass::text FROM pg_class c, me WHERE c.relowner = me.oid AND c.relpersistence <> 't'
                   UNION ALL SELECT 'owns ' || p.oid::regprocedure::text FROM pg_proc p, me
                    WHERE p.proowner = me.oid AND p.pronamespace::regnamespace::text NOT LIKE 'pg\\_temp\\_%') g),
               (SELECT coalesce(string_agg(array_to_string(s.setconfig, ' '), ';'), '') FROM pg_db_role_setting s, me WHERE s.setrole = me.oid))",
            &[&ATTACKER],
        )
        .unwrap()
        .get(0);
    let memberships = su
        .query(
            "SELECT m.roleid FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = $1 ORDER BY 1",
            &[&ATTACKER],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    (described, memberships)
}

/// Compares the attacker's role with the baseline, reports a change, and puts
/// the role back so that the next caller starts from the same attacker.
fn check_attacker(su: &mut Client, baseline: &(String, Vec<u32>), phase: &str, failures: &mut Vec<String>) {
    let (described, memberships) = attacker_state(su);
    if described != baseline.0 {
        failures.push(format!("after {phase}: the attacker's role changed from `{}` to `{described}`", baseline.0));
    }
    let new: Vec<&u32> = memberships.iter().filter(|m| !baseline.1.contains(m)).collect();
    if !new.is_empty() {
        failures.push(format!("after {phase}: the attacker became a member of new roles (oids {new:?})"));
    }
    reset_attacker(su);
}

/// The attacker as it starts: a LOGIN role with no attribute and no privileged membership.
fn reset_attacker(su: &mut Client) {
    su.batch_execute(&format!(
        "ALTER ROLE {ATTACKER} NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION NOBYPASSRLS;
         SET client_min_messages = error;
         REVOKE pg_execute_server_program FROM {ATTACKER};
         REVOKE tenant_control_admin FROM {ATTACKER};
         RESET client_min_messages;"
    ))
    .unwrap();
}

/// A dropped tenant's former member tries to reach the backup the drop left.
fn former_member_attacks(su: &mut Client, caller: &Caller, failures: &mut Vec<String>) {
    let mut attacker = connect_as(ATTACKER, DB);
    attacker.batch_execute("SET attack.op = 'attacker: former member after the drop'").unwrap();
    for t in &caller.tenants {
        let name = format!("dropped {}", t.label());
        let Some(schema) = su
            .query_opt(&format!("SELECT {}", var(caller.name, &name)), &[])
            .unwrap()
            .and_then(|r| r.get::<_, Option<String>>(0))
        else {
            continue;
        };
        let owner: String = su
            .query_one(
                "SELECT tableowner::text FROM pg_tables WHERE schemaname = $1 AND tablename = 'customers'",
                &[&schema],
            )
            .unwrap()
            .get(0);
        for sql in [
            format!("SET ROLE \"{owner}\""),
            format!("DROP OWNED BY \"{owner}\""),
            format!("REASSIGN OWNED BY \"{owner}\" TO {ATTACKER}"),
            format!("SELECT count(*) FROM {schema}.customers"),
            format!("ALTER TABLE {schema}.customers ADD COLUMN sneaked int"),
            format!("GRANT USAGE ON SCHEMA {schema} TO {ATTACKER}"),
        ] {
            // Rolled back either way: the backup must stay usable for the next steps.
            if attacker.batch_execute(&format!("BEGIN; {sql}; ROLLBACK;")).is_ok() {
                failures.push(format!("a former member of the dropped {} could run `{sql}` on its backup", t.label()));
            } else {
                attacker.batch_execute("ROLLBACK").unwrap();
            }
        }
    }
}

/// Registers the next migration; its script uses names a tenant shadows and
/// changes rows of tables the tenant decorated.
fn register_migration(su: &mut Client, version: i32) {
    let script = format!(
        "ALTER TABLE customers ADD COLUMN mig_v{version} text DEFAULT lower('X');
         ALTER TABLE customers ADD COLUMN mig_v{version}_at timestamptz DEFAULT now();
         UPDATE customers SET mig_v{version} = format('%s', name) WHERE starts_with(name, 'customer') AND length(name) > 0;
         INSERT INTO customers (name) SELECT 'migration {version}' WHERE (SELECT count(*) FROM orders) >= 0;
         DELETE FROM customers WHERE name = 'migration {version}';"
    );
    let row =
        su.query_one("SELECT * FROM tenant.register_migration($1, $2, 'attack suite')", &[&version, &script]).unwrap();
    let registered = outcome(row);
    assert!(registered.ok(), "register migration {version}: {}", registered.message);
}

/// Schedules the cron caller's single job for the next minute mark at least a
/// few seconds away; it waits on CRON_GATE before doing anything.
fn schedule_cron_job(caller: &Caller) -> i64 {
    let mut steps = operations_until_drop(caller);
    steps.extend(operations_after_drop(caller));
    let prologue = format!("PERFORM pg_catalog.pg_advisory_lock({}, {});\n", CRON_GATE.0, CRON_GATE.1);
    let command = do_block(caller.name, &prologue, &steps.iter().collect::<Vec<_>>());
    let mut postgres = superuser("postgres");
    let minute: i32 =
        postgres.query_one("SELECT extract(minute FROM now() + interval '65 seconds')::int", &[]).unwrap().get(0);
    postgres
        .query_one(
            "SELECT cron.schedule_in_database($1, $2, $3, $4)",
            &[&CRON_JOB, &format!("{minute} * * * *"), &command, &DB],
        )
        .unwrap()
        .get(0)
}

fn wait_for_cron_job(job: i64, failures: &mut Vec<String>) {
    let mut postgres = superuser("postgres");
    let started = Instant::now();
    loop {
        let row = postgres
            .query_opt(
                "SELECT status, coalesce(return_message, '') FROM cron.job_run_details
                  WHERE jobid = $1 AND status IN ('succeeded', 'failed') ORDER BY runid LIMIT 1",
                &[&job],
            )
            .unwrap();
        if let Some(row) = row {
            let (status, message): (String, String) = (row.get(0), row.get(1));
            if status != "succeeded" {
                failures.push(format!("cron: the job failed: {message}"));
            }
            break;
        }
        if started.elapsed() > Duration::from_secs(300) {
            failures.push("cron: pg_cron did not run the job within 5 minutes".into());
            break;
        }
        thread::sleep(Duration::from_millis(500));
    }
    postgres.query_one("SELECT cron.unschedule($1::bigint)", &[&job]).unwrap();
}

/// Every payload that ran with more rights than the tenant, by operation:
/// from the tables, and from the server log for the runs an operation's
/// rollback took out of the tables.
fn escalations(su: &mut Client, run: &str, notes: &mut Vec<String>) -> Vec<String> {
    let mut found: BTreeMap<(String, String), (BTreeSet<String>, bool)> = BTreeMap::new();
    for r in su
        .query(
            "SELECT op, payload, who::text, true FROM public.tc_attack_marks
             UNION ALL SELECT op, payload, who::text, false FROM public.tc_attack_seen WHERE privileged IS NOT FALSE",
            &[],
        )
        .unwrap()
    {
        let entry = found.entry((r.get(0), r.get(1))).or_default();
        entry.0.insert(r.get(2));
        entry.1 |= r.get::<_, bool>(3);
    }
    let log = format!("{}/server.log", host());
    match std::fs::read_to_string(&log) {
        Ok(text) => {
            let marker = format!("tc_attack {run} | ");
            for line in text.lines() {
                let Some((_, rest)) = line.split_once(&marker) else { continue };
                let parts: Vec<&str> = rest.splitn(3, " | ").collect();
                if let [op, payload, who] = parts[..] {
                    found.entry((op.to_string(), payload.to_string())).or_default().0.insert(who.to_string());
                }
            }
        }
        Err(e) => notes.push(format!("server log {log} not read ({e}): rolled-back escalations are not reported")),
    }
    found
        .into_iter()
        .map(|((op, payload), (who, marked))| {
            let who: Vec<String> = who.into_iter().collect();
            let mark = if marked { " and left a superuser-only mark" } else { "" };
            format!("{op}: payload `{payload}` ran as {}{mark}", who.join(", "))
        })
        .collect()
}

/// Operations that failed, or never ran because a block stopped before them.
fn failed_operations(su: &mut Client, callers: &[Caller]) -> Vec<String> {
    let mut out: Vec<String> = su
        .query("SELECT caller, op, message FROM public.tc_attack_results WHERE must AND NOT ok ORDER BY at", &[])
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{}: operation `{}` failed: {}",
                r.get::<_, String>(0),
                r.get::<_, String>(1),
                r.get::<_, String>(2)
            )
        })
        .collect();
    for c in callers {
        let ran: Vec<String> = su
            .query("SELECT DISTINCT op FROM public.tc_attack_results WHERE caller = $1", &[&c.name])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let steps = operations_until_drop(c).into_iter().chain(operations_after_drop(c));
        let missing: Vec<String> = steps.map(|s| s.op).filter(|op| !ran.contains(op)).collect();
        if !missing.is_empty() {
            out.push(format!("{}: {} operation(s) never ran: {}", c.name, missing.len(), missing.join("; ")));
        }
    }
    out
}

/// A migration's column defaults must bind to pg_catalog's functions, not to
/// look-alikes in the tenant's schema.
fn defaults_bound_to_tenant_functions(su: &mut Client) -> Vec<String> {
    su.query(
        "SELECT format('%I.%I.%I', n.nspname, c.relname, a.attname) || ' calls ' || p.oid::regprocedure::text
           FROM pg_attrdef d
           JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
           JOIN pg_class c ON c.oid = d.adrelid JOIN pg_namespace n ON n.oid = c.relnamespace
           JOIN pg_depend dep ON dep.classid = 'pg_attrdef'::regclass AND dep.objid = d.oid
                             AND dep.refclassid = 'pg_proc'::regclass
           JOIN pg_proc p ON p.oid = dep.refobjid
          WHERE a.attname LIKE 'mig\\_v%' AND p.pronamespace <> 'pg_catalog'::regnamespace
          ORDER BY 1",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| format!("a migration's column default is bound to the tenant's function: {}", r.get::<_, String>(0)))
    .collect()
}

#[test]
fn tenant_code_never_runs_with_more_rights_than_the_tenant() {
    let started = Instant::now();
    clean_cluster(DB, "atk_");
    let mut su = superuser(DB);
    su.batch_execute("CREATE EXTENSION tenant_control; CREATE EXTENSION dblink").unwrap();
    su.batch_execute("SET attack.op = 'test harness'").unwrap();
    let callers = set_up(&mut su);
    reset_attacker(&mut su);
    let baseline = attacker_state(&mut su);
    let (mut notes, mut failures) = (Vec::new(), Vec::new());
    let run = Uuid::new_v4().simple().to_string();
    plant(&callers, &mut su, &run, &mut notes);
    check_attacker(&mut su, &baseline, "planting", &mut failures);

    // The pg_cron job is scheduled now and waits on the gate, so that its
    // minute mark passes while the other two callers work.
    let mut gate = superuser(DB);
    gate.execute("SELECT pg_advisory_lock($1, $2)", &[&CRON_GATE.0, &CRON_GATE.1]).unwrap();
    let job = schedule_cron_job(&callers[2]);

    register_migration(&mut su, 1);
    let mut admin = connect_as(ADMIN, DB);
    run_over_connection(&mut admin, "admin", &operations_until_drop(&callers[0]), &mut failures);
    check_attacker(&mut su, &baseline, "the admin's operations up to the drops", &mut failures);
    former_member_attacks(&mut su, &callers[0], &mut failures);
    check_attacker(&mut su, &baseline, "the former member's attempts", &mut failures);
    run_over_connection(&mut admin, "admin", &operations_after_drop(&callers[0]), &mut failures);
    check_attacker(&mut su, &baseline, "the admin's operations after the drops", &mut failures);

    register_migration(&mut su, 2);
    let mut root = superuser(DB);
    let mut steps = operations_until_drop(&callers[1]);
    steps.extend(operations_after_drop(&callers[1]));
    run_over_connection(&mut root, "superuser", &steps, &mut failures);
    check_attacker(&mut su, &baseline, "the superuser's operations", &mut failures);

    register_migration(&mut su, 3);
    gate.execute("SELECT pg_advisory_unlock($1, $2)", &[&CRON_GATE.0, &CRON_GATE.1]).unwrap();
    wait_for_cron_job(job, &mut failures);
    check_attacker(&mut su, &baseline, "the pg_cron job", &mut failures);

    let escalated = escalations(&mut su, &run, &mut notes);
    failures.extend(escalated.iter().cloned());
    failures.extend(failed_operations(&mut su, &callers));
    failures.extend(defaults_bound_to_tenant_functions(&mut su));
    let ops_run = count(&mut su, "SELECT count(DISTINCT (caller, op)) FROM public.tc_attack_results");
    let ops_escalated: BTreeSet<&str> = escalated.iter().filter_map(|line| line.split(": payload `").next()).collect();
    eprintln!(
        "attack suite: {ops_run} caller x operation runs, {} ran tenant code with more rights, {} s",
        ops_escalated.len(),
        started.elapsed().as_secs()
    );
    for note in &notes {
        eprintln!("note: {note}");
    }
    assert!(
        failures.is_empty(),
        "{} problem(s), {} of them payloads that ran with more rights than the tenant:\n{}",
        failures.len(),
        escalated.len(),
        failures.join("\n")
    );
}

/// The SQLSTATE of a statement the attacker runs (None when it succeeded).
fn attempt(client: &mut Client, sql: &str) -> Option<String> {
    match client.batch_execute(sql) {
        Ok(()) => None,
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK");
            Some(e.code().map(|c| c.code().to_string()).unwrap_or_else(|| e.to_string()))
        }
    }
}

/// Quota enforcement cannot be switched off by a tenant: not by a trigger of
/// its own named like the guard, nor by `tenant_control.internal_ddl` set in
/// a fresh session before the library is loaded.
#[test]
fn a_tenant_cannot_switch_its_quota_off() {
    const QUOTA_DB: &str = "it_attacks_quota";
    clean_cluster(QUOTA_DB, "atq_");
    let mut su = superuser(QUOTA_DB);
    su.batch_execute("CREATE EXTENSION tenant_control").unwrap();
    set_up_template_and_attacker(&mut su);
    let id = create_ok(&mut su, "atq_full");
    su.batch_execute(&format!("GRANT atq_full_owner TO {ATTACKER}")).unwrap();
    let mut notes = Vec::new();
    let mut attacker = connect_as(ATTACKER, QUOTA_DB);
    attacker
        .batch_execute(
            "SET ROLE atq_full_owner;
             INSERT INTO atq_full.customers (name) SELECT repeat('x', 500) FROM generate_series(1, 200);
             INSERT INTO atq_full.orders (customer_id) SELECT id FROM atq_full.customers;
             CREATE FUNCTION atq_full.let_through() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END';",
        )
        .unwrap();
    // A look-alike guard on customers, and an object named like the extension's.
    for (what, sql) in [
        ("a trigger named tc_quota_guard", "CREATE TRIGGER tc_quota_guard BEFORE INSERT OR UPDATE ON atq_full.customers FOR EACH STATEMENT EXECUTE FUNCTION atq_full.let_through()"),
        ("a table named tc_own", "CREATE TABLE atq_full.tc_own (x int)"),
    ] {
        if let Some(code) = attempt(&mut attacker, sql) {
            notes.push(format!("planting {what} was refused ({code})"));
        }
    }
    let set = outcome(su.query_one("SELECT * FROM tenant.set_quota($1, '8 kB')", &[&id]).unwrap());
    let mut failures = Vec::new();
    if !set.ok() {
        failures.push(format!("set_quota over a tenant with a look-alike guard failed: {}", set.message));
    }
    let state: String =
        su.query_one("SELECT quota_state FROM tenant.tenant_schemas WHERE id = $1", &[&id]).unwrap().get(0);
    notes.push(format!("quota state after set_quota: {state}"));

    let mut expect = |who: &str, session: &mut Client, sql: &str, wanted: &str| {
        let got = attempt(session, sql);
        if got.as_deref() != Some(wanted) {
            failures
                .push(format!("{who}: `{sql}` gave {} instead of {wanted}", got.unwrap_or_else(|| "success".into())));
        }
    };
    expect("the tenant", &mut attacker, "INSERT INTO atq_full.customers (name) VALUES ('over the quota')", "53400");
    expect(
        "the tenant",
        &mut attacker,
        "INSERT INTO atq_full.orders (customer_id) SELECT min(id) FROM atq_full.customers",
        "53400",
    );
    expect("the tenant", &mut attacker, "ALTER TABLE atq_full.orders DISABLE TRIGGER tc_quota_guard", "42501");
    // Fresh sessions that set the old internal flag first thing, before
    // anything loads the extension's library in them.
    let faked = |sql: &str| format!("SET tenant_control.internal_ddl = on; SET ROLE atq_full_owner; {sql}");
    for (sql, wanted) in [
        ("CREATE TABLE atq_full.sneaked_in (x int)", "53400"),
        ("INSERT INTO atq_full.orders (customer_id) SELECT min(id) FROM atq_full.customers", "53400"),
        ("ALTER TABLE atq_full.orders DISABLE TRIGGER tc_quota_guard", "42501"),
        ("DROP TRIGGER tc_quota_guard ON atq_full.orders", "42501"),
    ] {
        let mut fresh = connect_as(ATTACKER, QUOTA_DB);
        expect("a session with tenant_control.internal_ddl = on", &mut fresh, &faked(sql), wanted);
    }
    for note in &notes {
        eprintln!("note: {note}");
    }
    assert!(failures.is_empty(), "the tenant got past its quota:\n{}", failures.join("\n"));
}

/// Running tenant code as the tenant must not break what legitimate tenants
/// do: a DEFERRABLE INITIALLY DEFERRED foreign key (its checks fire at
/// COMMIT, which a security-restricted operation refuses to reach early).
#[test]
fn restore_table_works_on_a_table_with_a_deferred_foreign_key() {
    const FK_DB: &str = "it_attacks_deferred";
    clean_cluster(FK_DB, "atd_");
    let mut su = superuser(FK_DB);
    su.batch_execute(
        "CREATE EXTENSION tenant_control;
         CREATE TABLE tenant_template.parents (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
         CREATE TABLE tenant_template.children (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
             parent_id bigint REFERENCES tenant_template.parents DEFERRABLE INITIALLY DEFERRED);
         ALTER TABLE tenant_template.parents OWNER TO tenant_template_owner;
         ALTER TABLE tenant_template.children OWNER TO tenant_template_owner;",
    )
    .unwrap();
    let id = create_ok(&mut su, "atd_school");
    su.batch_execute(
        "SET ROLE atd_school_owner;
         INSERT INTO atd_school.parents DEFAULT VALUES; INSERT INTO atd_school.parents DEFAULT VALUES;
         INSERT INTO atd_school.children (parent_id) SELECT id FROM atd_school.parents;
         RESET ROLE;",
    )
    .unwrap();
    let backup: Uuid =
        su.query_one("SELECT backup_id FROM tenant.backup_institution_schema($1)", &[&id]).unwrap().get(0);
    su.batch_execute("DELETE FROM atd_school.children").unwrap();
    let restored =
        outcome(su.query_one("SELECT * FROM tenant.restore_table($1, 'children', 'missing')", &[&backup]).unwrap());
    assert!(restored.ok(), "{}", restored.message);
    assert_eq!(count(&mut su, "SELECT count(*) FROM atd_school.children"), 2);
}

/// A generated column calling the tenant's own function, whose `SET
/// search_path` names the tenant's schema (as it should), must not stop the
/// dropped tenant from coming back.
#[test]
fn a_dropped_tenant_whose_functions_name_its_schema_comes_back() {
    const SP_DB: &str = "it_attacks_search_path";
    clean_cluster(SP_DB, "ats_");
    let mut su = superuser(SP_DB);
    su.batch_execute(
        "CREATE EXTENSION tenant_control;
         CREATE TABLE tenant_template.items (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
         ALTER TABLE tenant_template.items OWNER TO tenant_template_owner;",
    )
    .unwrap();
    let id = create_ok(&mut su, "ats_school");
    su.batch_execute(
        "SET ROLE ats_school_owner;
         CREATE FUNCTION ats_school.base(v bigint) RETURNS bigint LANGUAGE sql IMMUTABLE AS 'SELECT v * 2';
         CREATE FUNCTION ats_school.doubled(v bigint) RETURNS bigint LANGUAGE plpgsql IMMUTABLE
             SET search_path = pg_catalog, ats_school AS $f$ BEGIN RETURN base(v); END $f$;
         ALTER TABLE ats_school.items ADD COLUMN twice bigint GENERATED ALWAYS AS (ats_school.doubled(id)) STORED;
         INSERT INTO ats_school.items DEFAULT VALUES;
         RESET ROLE;",
    )
    .unwrap();
    let dropped = call(&mut su, "drop_institution_schema", id);
    assert!(dropped.ok(), "{}", dropped.message);
    let backup_schema: String = dropped.row.get("backup_schema");
    let restored = outcome(
        su.query_one(
            "SELECT r.* FROM tenant.backups b, tenant.restore_institution_schema(b.backup_id) r WHERE b.backup_schema = $1",
            &[&backup_schema],
        )
        .unwrap(),
    );
    assert!(restored.ok(), "{}", restored.message);
    assert_eq!(count(&mut su, "SELECT sum(twice)::bigint FROM ats_school.items"), 2);
}

/// A move from shared tables into an institution's existing schema writes
/// the rows as the tenant's role: a trigger the tenant put on its table runs
/// as that role, in a security-restricted operation, and gains nothing.
#[test]
fn a_tenant_trigger_runs_as_the_tenant_while_rows_move_into_its_schema() {
    const MOVE_DB: &str = "it_attacks_shared_move";
    let institution = Uuid::new_v4();
    let mut su = fresh_database(MOVE_DB);
    su.batch_execute(
        "CREATE TABLE tenant_template.items (id integer PRIMARY KEY, label text);
         CREATE TABLE public.items (id integer PRIMARY KEY, institution_id uuid NOT NULL, label text);
         SELECT tenant.enable_shared_table_isolation('public.items');",
    )
    .unwrap();
    let created = create(&mut su, institution, "atk_mover");
    assert!(created.ok(), "{}", created.message);
    su.batch_execute(&format!(
        "INSERT INTO public.items SELECT g, '{institution}', 'item ' || g FROM generate_series(1, 5) g;
         SET ROLE atk_mover_owner;
         CREATE TABLE atk_mover.seen (who text, escalated boolean);
         CREATE FUNCTION atk_mover.spy() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             BEGIN
                 ALTER ROLE atk_mover_owner SUPERUSER;
                 INSERT INTO atk_mover.seen VALUES (current_user, true);
             EXCEPTION WHEN OTHERS THEN
                 INSERT INTO atk_mover.seen VALUES (current_user, false);
             END;
             RETURN NEW;
         END $$;
         CREATE TRIGGER spy BEFORE INSERT ON atk_mover.items FOR EACH ROW EXECUTE FUNCTION atk_mover.spy();
         RESET ROLE;"
    ))
    .unwrap();
    su.batch_execute(&format!("CALL tenant.move_to_schema('{institution}', batch_size => 2)")).unwrap();
    let rows = su
        .query("SELECT who, escalated FROM atk_mover.seen GROUP BY who, escalated", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, bool>(1)))
        .collect::<Vec<_>>();
    assert_eq!(rows, vec![("atk_mover_owner".to_string(), false)]);
    assert_eq!(count(&mut su, "SELECT count(*) FROM atk_mover.seen"), 5);
    let superuser: bool =
        su.query_one("SELECT rolsuper FROM pg_roles WHERE rolname = 'atk_mover_owner'", &[]).unwrap().get(0);
    assert!(!superuser);
    assert_eq!(count(&mut su, "SELECT count(*) FROM atk_mover.items"), 5);
}

/// A migration lends the tenant's role the extension's tables for the length
/// of its script. A trigger of the tenant's that the script sets off must not
/// be able to keep a grant on such a table (ALTER OWNER would make the
/// extension's owner its grantor): the tenant's migration is refused, and its
/// member still may only read the table afterwards.
#[test]
fn a_tenant_trigger_cannot_keep_a_grant_on_a_table_lent_to_its_migration() {
    const LEND_DB: &str = "it_attacks_lent_grant";
    const MEMBER: &str = "atg_member";
    clean_cluster(LEND_DB, "atg_");
    let mut su = superuser(LEND_DB);
    su.batch_execute(&format!(
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{MEMBER}') THEN CREATE ROLE {MEMBER} LOGIN; END IF; END $$;
         CREATE EXTENSION tenant_control;
         CREATE TABLE tenant_template.prices (id integer PRIMARY KEY, price numeric NOT NULL);
         REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON tenant_template.prices FROM tenant_template_owner;
         CREATE TABLE tenant_template.notes (id integer PRIMARY KEY, seen integer NOT NULL DEFAULT 0);
         ALTER TABLE tenant_template.notes OWNER TO tenant_template_owner;"
    ))
    .unwrap();
    let id = create_ok(&mut su, "atg_school");
    su.batch_execute(&format!("GRANT atg_school_owner TO {MEMBER}; INSERT INTO atg_school.prices VALUES (1, 10)"))
        .unwrap();
    let mut member = connect_as(MEMBER, LEND_DB);
    member
        .batch_execute(&format!(
            "SET ROLE atg_school_owner;
             INSERT INTO atg_school.notes VALUES (1);
             CREATE FUNCTION atg_school.keep() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 BEGIN
                     EXECUTE 'GRANT UPDATE ON atg_school.prices TO {MEMBER}, PUBLIC';
                 EXCEPTION WHEN insufficient_privilege THEN NULL;
                 END;
                 RETURN NEW;
             END $$;
             CREATE TRIGGER keep BEFORE UPDATE ON atg_school.notes FOR EACH ROW EXECUTE FUNCTION atg_school.keep();
             RESET ROLE;"
        ))
        .unwrap();
    let update = "UPDATE atg_school.prices SET price = 0";
    assert_eq!(attempt(&mut member, update).as_deref(), Some("42501"), "before the migration");
    let registered = outcome(
        su.query_one(
            "SELECT * FROM tenant.register_migration(1, 'UPDATE notes SET seen = seen + 1; CREATE TABLE extras (id integer)', 'lent')",
            &[],
        )
        .unwrap(),
    );
    assert!(registered.ok(), "{}", registered.message);
    let migrated = call(&mut su, "migrate_institution_schema", id);
    assert_eq!(migrated.sqlstate.as_deref(), Some("42501"), "{}", migrated.message);
    assert!(
        migrated.message.contains(&format!("UPDATE to {MEMBER} on table atg_school.prices")),
        "{}",
        migrated.message
    );
    assert_eq!(attempt(&mut member, update).as_deref(), Some("42501"), "after the migration");
    assert_eq!(count(&mut su, "SELECT count(*) FROM pg_class c, aclexplode(c.relacl) x WHERE c.oid = 'atg_school.prices'::regclass AND x.privilege_type = 'UPDATE' AND x.grantee <> c.relowner"), 0);
    assert_eq!(count(&mut su, "SELECT sum(price)::bigint FROM atg_school.prices"), 10);
    assert_eq!(count(&mut su, "SELECT seen::bigint FROM atg_school.notes"), 0);
}

/// A migration made only of plain column additions (a pg_catalog type, a
/// literal default) runs as the extension's owner without lending anything,
/// because it runs no code of the tenant's. The tenant tries to make it run
/// some: domains named like the built-in types the script uses (`text`,
/// `int4`, `varchar`) with a CHECK calling its code, a statement trigger on
/// the altered table, and a CHECK added to its own copy of a template domain
/// that a second migration uses. None of its code may run with more rights
/// than its role: the built-in types win, the trigger does not fire, and the
/// column of the tenant's domain goes the general way, as the tenant's role.
#[test]
fn plain_column_migrations_run_no_tenant_code_as_the_extension_owner() {
    const PLAIN_DB: &str = "it_attacks_plain_columns";
    const MEMBER: &str = "apc_member";
    clean_cluster(PLAIN_DB, "apc_");
    let mut su = superuser(PLAIN_DB);
    su.batch_execute(&format!(
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{MEMBER}') THEN CREATE ROLE {MEMBER} LOGIN; END IF; END $$;
         ALTER ROLE {MEMBER} NOSUPERUSER;
         CREATE EXTENSION tenant_control;
         CREATE TABLE tenant_template.accounts (id integer PRIMARY KEY);
         CREATE DOMAIN tenant_template.amount AS numeric;
         ALTER DOMAIN tenant_template.amount OWNER TO tenant_template_owner;"
    ))
    .unwrap();
    let id = create_ok(&mut su, "apc_school");
    su.batch_execute(&format!("GRANT apc_school_owner TO {MEMBER}; INSERT INTO apc_school.accounts VALUES (1)"))
        .unwrap();
    let mut member = connect_as(MEMBER, PLAIN_DB);
    member
        .batch_execute(&format!(
            "SET ROLE apc_school_owner;
             CREATE TABLE apc_school.seen (who text, escalated boolean);
             CREATE FUNCTION apc_school.spy(text) RETURNS boolean LANGUAGE plpgsql AS $$
             BEGIN
                 BEGIN
                     ALTER ROLE {MEMBER} SUPERUSER;
                     INSERT INTO apc_school.seen VALUES (current_user, true);
                 EXCEPTION WHEN OTHERS THEN
                     INSERT INTO apc_school.seen VALUES (current_user, false);
                 END;
                 RETURN true;
             END $$;
             CREATE DOMAIN apc_school.text AS pg_catalog.text CHECK (apc_school.spy(VALUE));
             CREATE DOMAIN apc_school.int4 AS pg_catalog.int4 CHECK (apc_school.spy(VALUE::pg_catalog.text));
             CREATE DOMAIN apc_school.varchar AS pg_catalog.varchar CHECK (apc_school.spy(VALUE));
             CREATE FUNCTION apc_school.spy_statement() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN PERFORM apc_school.spy(TG_OP); RETURN NULL; END $$;
             CREATE TRIGGER spy AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON apc_school.accounts
                 FOR EACH STATEMENT EXECUTE FUNCTION apc_school.spy_statement();
             ALTER DOMAIN apc_school.amount ADD CONSTRAINT spy CHECK (apc_school.spy(VALUE::pg_catalog.text));
             RESET ROLE;"
        ))
        .unwrap();
    let last_path = |su: &mut Client| -> (i32, bool) {
        let row = su
            .query_one(
                "SELECT (metadata->>'to_version')::int, metadata ? 'plain_columns' FROM tenant.schema_operations
                  WHERE schema_id = $1 AND operation_type = 'MIGRATE' AND status = 'COMPLETED'
                  ORDER BY (metadata->>'to_version')::int DESC LIMIT 1",
                &[&id],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    let scripts = [
        "ALTER TABLE accounts ADD COLUMN code varchar(20) NOT NULL DEFAULT 'n/a', ADD COLUMN points int4 DEFAULT 0;
         ALTER TABLE accounts ADD COLUMN memo text",
        "ALTER TABLE accounts ADD COLUMN balance amount DEFAULT 0",
    ];
    for (version, script) in (1..).zip(scripts) {
        let registered = outcome(
            su.query_one("SELECT * FROM tenant.register_migration($1, $2, 'plain columns')", &[&version, &script])
                .unwrap(),
        );
        assert!(registered.ok(), "{}", registered.message);
        su.batch_execute("CALL tenant.apply_migrations()").unwrap();
        if version == 1 {
            assert_eq!(last_path(&mut su), (1, true), "run as the extension's owner");
            assert_eq!(count(&mut su, "SELECT count(*) FROM apc_school.seen"), 0, "no tenant code ran");
        }
    }
    let seen: Vec<(String, bool)> = su
        .query("SELECT who, escalated FROM apc_school.seen GROUP BY who, escalated", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(seen, vec![("apc_school_owner".to_string(), false)], "the domain's check ran as the tenant only");
    let superuser: bool = su.query_one("SELECT rolsuper FROM pg_roles WHERE rolname = $1", &[&MEMBER]).unwrap().get(0);
    assert!(!superuser);
    assert_eq!(last_path(&mut su), (2, false), "a type of the tenant's: the general way");
    let types: String = su
        .query_one(
            "SELECT string_agg(format_type(atttypid, atttypmod), ', ' ORDER BY attnum) FROM pg_attribute
              WHERE attrelid = 'apc_school.accounts'::regclass AND attnum > 1 AND NOT attisdropped",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(types, "character varying(20), integer, text, apc_school.amount");
}

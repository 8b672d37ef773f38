//! The upgrade a DBA makes: a database runs release 0.1.0 (its install script and its
//! own compiled library), the new package is installed, the server is restarted with
//! it, and `ALTER EXTENSION tenant_control UPDATE` runs. Then (1) the extension's
//! objects must equal those of a fresh install of the new version, and (2) everything
//! made before the upgrade must keep working.
//!
//! `./tc test` builds release 0.1.0 from its commit into a relocated copy of the
//! PostgreSQL tree and passes its bin folder as TC_TEST_OLD_PG_BIN; the new package is
//! the one installed in TC_TEST_PG_BIN's tree.

mod cluster;
use cluster::{required_env, Cluster};
use postgres::Client;
use std::collections::BTreeSet;

const OLD_VERSION: &str = "0.1.0";
const ACME: &str = "0b7c6a3e-52f4-4d43-9f7e-6c1d2b9a2001";
const GLOBEX: &str = "0b7c6a3e-52f4-4d43-9f7e-6c1d2b9a2002";
const GONE: &str = "0b7c6a3e-52f4-4d43-9f7e-6c1d2b9a2003";
const LATER: &str = "0b7c6a3e-52f4-4d43-9f7e-6c1d2b9a2004";

/// The server's message, not just "db error".
fn describe(e: postgres::Error) -> String {
    e.as_db_error().map(|d| format!("{} {}", d.code().code(), d.message())).unwrap_or_else(|| e.to_string())
}

fn one<T: postgres::types::FromSqlOwned>(client: &mut Client, sql: &str) -> T {
    client.query_one(sql, &[]).unwrap_or_else(|e| panic!("{sql}: {}", describe(e))).get(0)
}

fn strings(client: &mut Client, sql: &str) -> Vec<String> {
    client.query(sql, &[]).unwrap_or_else(|e| panic!("{sql}: {}", describe(e))).iter().map(|r| r.get(0)).collect()
}

/// The status column of a status-row function call, with its message on failure.
fn status(client: &mut Client, sql: &str) -> String {
    let row = client.query_one(sql, &[]).unwrap_or_else(|e| panic!("{sql}: {}", describe(e)));
    let status: String = row.get("status");
    let message: String = row.get("message");
    assert_eq!(status, "SUCCESS", "{sql}: {message}");
    status
}

fn schema_id(client: &mut Client, key: &str) -> String {
    one(client, &format!("SELECT id::text FROM tenant.find_institution('{key}') WHERE status <> 'DROPPED'"))
}

/// What a DBA's 0.1.0 database holds: a template, tenants with data, a migration, a
/// verified backup, a tenant over its quota, an institution administrator, spares of
/// the warm pool and a dropped tenant.
fn populate_with_old_release(client: &mut Client) {
    client
        .batch_execute(&format!(
            "CREATE EXTENSION tenant_control VERSION '{OLD_VERSION}';
             SET search_path = tenant_template;
             CREATE TABLE students (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL);
             CREATE TABLE courses (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, code text NOT NULL UNIQUE);
             CREATE TABLE enrolments (student_id bigint REFERENCES students, course_id int REFERENCES courses,
                                      PRIMARY KEY (student_id, course_id));
             CREATE VIEW roster AS SELECT c.code, s.name FROM enrolments e
                 JOIN students s ON s.id = e.student_id JOIN courses c ON c.id = e.course_id;
             RESET search_path;"
        ))
        .unwrap();
    for (institution, name) in [(ACME, "ug_acme"), (GLOBEX, "ug_globex"), (GONE, "ug_gone")] {
        status(client, &format!("SELECT * FROM tenant.create_institution_schema('{institution}', '{name}')"));
    }
    client
        .batch_execute(
            "SET ROLE ug_acme_owner;
             INSERT INTO ug_acme.students (name) VALUES ('Ada'), ('Grace');
             INSERT INTO ug_acme.courses (code) VALUES ('MATH101');
             INSERT INTO ug_acme.enrolments VALUES (1, 1), (2, 1);
             SET ROLE ug_globex_owner;
             INSERT INTO ug_globex.students (name) SELECT 'student ' || i FROM generate_series(1, 200) i;
             RESET ROLE;",
        )
        .unwrap();
    status(
        client,
        "SELECT * FROM tenant.register_migration(1, 'ALTER TABLE students ADD COLUMN email text', 'emails')",
    );
    client.batch_execute("CALL tenant.apply_migrations()").unwrap();
    let acme = schema_id(client, "ug_acme");
    status(client, &format!("SELECT * FROM tenant.backup_institution_schema('{acme}', verify => true)"));
    let globex = schema_id(client, "ug_globex");
    status(client, &format!("SELECT * FROM tenant.set_quota('{globex}', '16 kB')"));
    client
        .batch_execute("CREATE ROLE ug_acme_it; CREATE ROLE ug_app LOGIN; GRANT tenant_control_app TO ug_app")
        .unwrap();
    one::<String>(client, &format!("SELECT tenant.grant_institution_admin('{ACME}', 'ug_acme_it')"));
    client.batch_execute("CALL tenant.fill_pool(2)").unwrap();
    let gone = schema_id(client, "ug_gone");
    status(client, &format!("SELECT * FROM tenant.drop_institution_schema('{gone}')"));

    client.batch_execute("CALL tenant.take_usage_snapshot()").unwrap();
    assert_eq!(one::<String>(client, "SELECT quota_state FROM tenant.find_institution('ug_globex')"), "EXCEEDED");
    assert_eq!(one::<i64>(client, "SELECT count(*) FROM tenant.warm_pool"), 2);
}

/// The operation log and the usage snapshots, each row as text in id order, and
/// where their identity sequences stand (0.2.0 turns both into partitioned tables).
fn history_rows(client: &mut Client) -> Vec<String> {
    strings(
        client,
        "(SELECT 'log ' || o::text FROM tenant.schema_operations o ORDER BY o.id)
         UNION ALL (SELECT 'usage ' || u::text FROM tenant.usage_snapshots u ORDER BY u.id)
         UNION ALL SELECT format('sequence %s %s', s.sequencename, s.last_value)
                     FROM pg_catalog.pg_sequences s
                    WHERE s.schemaname = 'tenant' AND s.sequencename IN ('schema_operations_id_seq', 'usage_snapshots_id_seq')",
    )
}

/// The rows of 0.1.0's operation log and usage snapshots came over to the partitioned
/// tables unchanged, and new rows continue their numbering.
fn assert_history_kept(client: &mut Client, before: &[String]) {
    assert!(before.iter().filter(|r| r.starts_with("log ")).count() >= 8, "{before:?}");
    assert!(before.iter().any(|r| r.starts_with("usage ")), "{before:?}");
    assert_eq!(history_rows(client), before);
    let last: i64 = one(client, "SELECT max(id) FROM tenant.schema_operations");
    client.batch_execute("CALL tenant.take_usage_snapshot()").unwrap();
    let next: i64 = one(client, "SELECT max(id) FROM tenant.schema_operations");
    assert_eq!(next, last + 1);
    assert_eq!(
        one::<String>(client, "SELECT tableoid::regclass::text FROM tenant.schema_operations WHERE id = (SELECT max(id) FROM tenant.schema_operations)"),
        "tenant.schema_operations_default"
    );
}

/// The extension's catalogue entries, one comparable line each: the extension row and
/// its configuration tables, its member objects, the definitions, privileges and
/// comments of its functions and relations, its event triggers, default privileges
/// in its schemas, and its roles' attributes and memberships among themselves and the
/// built-in roles (tenant roles come and go with the tenants).
fn catalogue(client: &mut Client) -> Vec<(&'static str, Vec<String>)> {
    const MEMBERS: &str = "SELECT classid, objid, objsubid FROM pg_catalog.pg_depend
         WHERE refclassid = 'pg_catalog.pg_extension'::regclass AND deptype = 'e'
           AND refobjid = (SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'tenant_control')";
    let queries: Vec<(&'static str, String)> = vec![
        (
            "extension",
            "SELECT format('%s version %s, schema %s, relocatable %s', extname, extversion,
                          extnamespace::regnamespace, extrelocatable)
               FROM pg_catalog.pg_extension WHERE extname = 'tenant_control'"
                .into(),
        ),
        (
            "configuration tables (pg_extension_config_dump)",
            "SELECT format('%s filter %L', c.cfg::regclass, c.cond)
               FROM pg_catalog.pg_extension e,
                    unnest(e.extconfig, coalesce(e.extcondition, array_fill(''::text, ARRAY[cardinality(e.extconfig)])))
                      AS c(cfg, cond)
              WHERE e.extname = 'tenant_control' ORDER BY 1"
                .into(),
        ),
        (
            "member objects",
            format!("SELECT pg_catalog.pg_describe_object(classid, objid, objsubid) FROM ({MEMBERS}) m ORDER BY 1"),
        ),
        (
            "functions and procedures",
            format!(
                "SELECT format(E'%s\\n%s\\nacl %s\\ncomment %L', p.oid::regprocedure,
                              pg_catalog.pg_get_functiondef(p.oid), p.proacl,
                              pg_catalog.obj_description(p.oid, 'pg_proc'))
                   FROM ({MEMBERS}) m JOIN pg_catalog.pg_proc p ON m.classid = 'pg_catalog.pg_proc'::regclass
                                                              AND p.oid = m.objid
                  ORDER BY p.oid::regprocedure::text"
            ),
        ),
        (
            "relations: kind, privileges, options, row-level security, comment",
            format!(
                "SELECT format('%s kind %s acl %s options %s rls %s/%s comment %L', c.oid::regclass, c.relkind,
                              c.relacl, c.reloptions, c.relrowsecurity, c.relforcerowsecurity,
                              pg_catalog.obj_description(c.oid, 'pg_class'))
                   FROM ({MEMBERS}) m JOIN pg_catalog.pg_class c ON m.classid = 'pg_catalog.pg_class'::regclass
                                                              AND c.oid = m.objid
                  ORDER BY 1"
            ),
        ),
        (
            "columns (in table order) and their comments",
            format!(
                "SELECT format('%s.%s %s %s not null %s default %s comment %L', c.oid::regclass, a.attname,
                              a.attnum, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull,
                              pg_catalog.pg_get_expr(d.adbin, d.adrelid),
                              pg_catalog.col_description(c.oid, a.attnum))
                   FROM ({MEMBERS}) m JOIN pg_catalog.pg_class c ON m.classid = 'pg_catalog.pg_class'::regclass
                                                              AND c.oid = m.objid
                   JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                   LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
                  ORDER BY c.oid::regclass::text, a.attnum"
            ),
        ),
        (
            "initial privileges of member objects (pg_init_privs)",
            "SELECT format('%s %s', pg_catalog.pg_describe_object(classoid, objoid, objsubid), initprivs)
               FROM pg_catalog.pg_init_privs WHERE privtype = 'e' ORDER BY 1"
                .into(),
        ),
        (
            "schemas: owner, privileges, comment",
            "SELECT format('%s owner %s acl %s comment %L', nspname, nspowner::regrole, nspacl,
                          pg_catalog.obj_description(oid, 'pg_namespace'))
               FROM pg_catalog.pg_namespace WHERE nspname IN ('tenant', 'tenant_template') ORDER BY 1"
                .into(),
        ),
        (
            "default privileges in the extension's schemas",
            "SELECT format('%s %s %s %s', defaclrole::regrole, defaclnamespace::regnamespace, defaclobjtype, defaclacl)
               FROM pg_catalog.pg_default_acl
              WHERE defaclnamespace IN ('tenant'::regnamespace, 'tenant_template'::regnamespace) ORDER BY 1"
                .into(),
        ),
        (
            "event triggers",
            "SELECT format('%s on %s runs %s enabled %s tags %s comment %L', evtname, evtevent,
                          evtfoid::regprocedure, evtenabled, evttags,
                          pg_catalog.obj_description(oid, 'pg_event_trigger'))
               FROM pg_catalog.pg_event_trigger ORDER BY 1"
                .into(),
        ),
        (
            "triggers on member tables",
            format!(
                "SELECT format('%s enabled %s', pg_catalog.pg_get_triggerdef(t.oid), t.tgenabled)
                   FROM ({MEMBERS}) m JOIN pg_catalog.pg_trigger t ON m.classid = 'pg_catalog.pg_class'::regclass
                                                                AND t.tgrelid = m.objid
                  WHERE NOT t.tgisinternal ORDER BY 1"
            ),
        ),
        (
            "policies on member tables",
            format!(
                "SELECT format('%s on %s %s %s to %s using %s check %s', p.polname, p.polrelid::regclass, p.polcmd,
                              p.polpermissive, p.polroles::regrole[],
                              pg_catalog.pg_get_expr(p.polqual, p.polrelid),
                              pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid))
                   FROM ({MEMBERS}) m JOIN pg_catalog.pg_policy p ON m.classid = 'pg_catalog.pg_class'::regclass
                                                               AND p.polrelid = m.objid
                  ORDER BY 1"
            ),
        ),
        (
            "the extension's roles: attributes and memberships",
            "SELECT format('%s login %s inherit %s super %s createrole %s bypassrls %s member of %s', r.rolname,
                          r.rolcanlogin, r.rolinherit, r.rolsuper, r.rolcreaterole, r.rolbypassrls,
                          ARRAY(SELECT g.rolname || CASE WHEN m.admin_option THEN ' (admin)' ELSE '' END
                                  FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles g ON g.oid = m.roleid
                                 WHERE m.member = r.oid
                                   AND (g.rolname LIKE 'tenant\\_%' OR g.rolname LIKE 'pg\\_%') ORDER BY 1))
               FROM pg_catalog.pg_roles r
              WHERE r.rolname LIKE 'tenant\\_control\\_%' OR r.rolname = 'tenant_template_owner' ORDER BY 1"
                .into(),
        ),
    ];
    queries.into_iter().map(|(what, sql)| (what, strings(client, &sql))).collect()
}

/// `pg_dump --schema-only --binary-upgrade` of the database without the tenants' own
/// schemas and the template's content: only binary-upgrade mode dumps an extension's
/// member objects one by one (otherwise pg_dump writes just CREATE EXTENSION), and only
/// for a whole-database dump. What legitimately differs is left out: the OIDs that
/// binary-upgrade mode pins (whatever the catalogs handed out at creation, also in the
/// configuration-table list of binary_upgrade_create_empty_extension, compared by name
/// in the catalogue entries instead), the positions of the extension's sequences (data:
/// the upgraded database has logged operations), the header naming the server version
/// and the random key of pg_dump's \restrict line.
fn dump_schema(cluster: &Cluster, bin: &str, db: &str) -> Vec<String> {
    let output = cluster
        .tool(bin, "pg_dump")
        .args(["--schema-only", "--binary-upgrade", "-N", "ug_*", "-N", "tc_*", "-N", "tenant_template", "-d", db])
        .output()
        .unwrap();
    assert!(output.status.success(), "pg_dump {db}: {}", String::from_utf8_lossy(&output.stderr));
    let legitimately_different = |line: &&str| {
        line.contains("binary_upgrade_set_next_")
            || line.starts_with("SELECT pg_catalog.setval(")
            || line.starts_with("-- Dumped ")
            || line.starts_with("\\restrict ")
            || line.starts_with("\\unrestrict ")
            // Each table's freeze horizon and oid (binary-upgrade mode carries them
            // over): physical facts of the cluster, not definitions.
            || line.starts_with("SET relfrozenxid = ")
            || line.starts_with("WHERE oid = '")
    };
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter(|line| !legitimately_different(line))
        .map(|line| match line.find("binary_upgrade_create_empty_extension") {
            Some(_) => line.split("'{").next().unwrap().to_string(),
            None => line.to_string(),
        })
        .collect()
}

fn unified_diff(what: &str, expected: &[String], actual: &[String]) -> String {
    let expected_set: BTreeSet<&String> = expected.iter().collect();
    let actual_set: BTreeSet<&String> = actual.iter().collect();
    let mut out = format!("--- {what}: fresh install\n+++ {what}: upgraded from {OLD_VERSION}\n");
    for line in expected.iter().filter(|l| !actual_set.contains(l)) {
        out.push_str(&format!("-{line}\n"));
    }
    for line in actual.iter().filter(|l| !expected_set.contains(l)) {
        out.push_str(&format!("+{line}\n"));
    }
    if expected_set == actual_set {
        out.push_str("(same lines in another order)\n");
    }
    out
}

/// (1) The upgraded extension equals a fresh install of the new version, in a cluster
/// of its own (roles belong to the cluster: the fresh install must create its own).
fn assert_same_as_fresh_install(upgraded: &Cluster, new_bin: &str) {
    let mut fresh = Cluster::init("upgrade-fresh", new_bin);
    fresh.start(new_bin);
    let mut fresh_client = fresh.connect("postgres");
    fresh_client.batch_execute("CREATE DATABASE fresh").unwrap();
    let mut fresh_client = fresh.connect("fresh");
    fresh_client.batch_execute("CREATE EXTENSION tenant_control").unwrap();
    let mut upgraded_client = upgraded.connect("upgraded");

    let mut differences = String::new();
    let expected = catalogue(&mut fresh_client);
    let actual = catalogue(&mut upgraded_client);
    for ((what, expected), (_, actual)) in expected.iter().zip(actual.iter()) {
        let may_be_empty = ["default", "policies", "triggers", "initial"].iter().any(|p| what.starts_with(p));
        assert!(!expected.is_empty() || may_be_empty, "{what}: no rows in a fresh install");
        if expected != actual {
            differences.push_str(&unified_diff(what, expected, actual));
        }
    }
    let expected_dump = dump_schema(&fresh, new_bin, "fresh");
    let actual_dump = dump_schema(upgraded, new_bin, "upgraded");
    assert!(
        expected_dump.iter().any(|l| l.contains("CREATE TABLE tenant.tenant_schemas")),
        "the dump lacks the registry"
    );
    if expected_dump != actual_dump {
        differences.push_str(&unified_diff("pg_dump --schema-only --binary-upgrade", &expected_dump, &actual_dump));
    }
    assert!(
        differences.is_empty(),
        "the upgraded extension differs from a fresh install: sql/tenant_control--{OLD_VERSION}--<new>.sql \
         misses what these lines show\n{differences}"
    );
    fresh.stop();
}

/// (2) What existed before the upgrade still works after it.
fn assert_old_tenants_work(client: &mut Client, cluster: &Cluster) {
    let acme = schema_id(client, "ug_acme");
    let globex = schema_id(client, "ug_globex");

    // The backup taken by 0.1.0 still verifies against its manifest and restores in place.
    let old_backup: String = one(
        client,
        &format!("SELECT backup_id::text FROM tenant.backups WHERE schema_id = '{acme}' AND reason = 'BACKUP'"),
    );
    let mismatches: i64 =
        one(client, &format!("SELECT count(*) FROM tenant.verify_backup('{old_backup}') WHERE NOT matches"));
    assert_eq!(mismatches, 0);
    client.batch_execute("DELETE FROM ug_acme.enrolments").unwrap();
    status(client, &format!("SELECT * FROM tenant.restore_table('{old_backup}', 'enrolments')"));
    assert_eq!(one::<i64>(client, "SELECT count(*) FROM ug_acme.enrolments"), 2);
    status(client, &format!("SELECT * FROM tenant.restore_institution_schema('{old_backup}')"));
    assert_eq!(one::<i64>(client, "SELECT count(*) FROM ug_acme.roster"), 2);

    // New backups, verified, of a tenant made by 0.1.0.
    status(client, &format!("SELECT * FROM tenant.backup_institution_schema('{acme}', verify => true)"));

    // The tenant over its quota before the upgrade is still refused (53400), and
    // writes again once its quota is raised.
    let mut app = cluster.connect_as("ug_app", "upgraded");
    app.batch_execute(&format!("BEGIN; SELECT tenant.set_context('{GLOBEX}')")).unwrap();
    let refused = app.batch_execute("INSERT INTO students (name) VALUES ('one more')").unwrap_err();
    assert_eq!(refused.code().map(|c| c.code()), Some("53400"), "{refused}");
    app.batch_execute("ROLLBACK").unwrap();
    status(client, &format!("SELECT * FROM tenant.set_quota('{globex}', '10 MB')"));

    // set_context points a transaction at an old tenant, as its role.
    app.batch_execute(&format!("BEGIN; SELECT tenant.set_context('{GLOBEX}')")).unwrap();
    app.batch_execute("INSERT INTO students (name) VALUES ('one more')").unwrap();
    assert_eq!(one::<String>(&mut app, "SELECT current_user::text"), "ug_globex_owner");
    assert_eq!(one::<i64>(&mut app, "SELECT count(*) FROM students"), 201);
    app.batch_execute("COMMIT").unwrap();

    // The institution administrator made by 0.1.0 still sees its own institution only.
    client.batch_execute("SET ROLE ug_acme_it").unwrap();
    assert_eq!(strings(client, "SELECT schema_name FROM tenant.tenant_schemas"), vec!["ug_acme".to_string()]);
    client.batch_execute("RESET ROLE").unwrap();

    // A sign-up is served by a spare built by 0.1.0; a new migration reaches every
    // schema, spares included.
    status(client, &format!("SELECT * FROM tenant.create_institution_schema('{LATER}', 'ug_later')"));
    assert_eq!(
        one::<String>(
            client,
            "SELECT metadata->>'from_pool' FROM tenant.schema_operations WHERE operation_type = 'CREATE' ORDER BY id DESC LIMIT 1"
        ),
        "true"
    );
    status(
        client,
        "SELECT * FROM tenant.register_migration(2, 'ALTER TABLE courses ADD COLUMN credits int', 'credits')",
    );
    client.batch_execute("CALL tenant.apply_migrations()").unwrap();
    assert_eq!(one::<i64>(client, "SELECT count(*) FROM tenant.migration_status WHERE pending <> 0"), 0);
    assert_eq!(one::<i64>(client, "SELECT count(*) FROM tenant.migration_status"), 4);

    // The tenant dropped by 0.1.0 comes back from the backup its drop left.
    let gone_backup: String =
        one(client, "SELECT backup_id::text FROM tenant.backups WHERE source_schema = 'ug_gone' AND reason = 'DROP'");
    status(client, &format!("SELECT * FROM tenant.restore_institution_schema('{gone_backup}')"));
    status(client, "SELECT * FROM tenant.migrate_institution_schema((SELECT id FROM tenant.find_institution('ug_gone') WHERE status = 'ACTIVE'))");

    // And the whole fleet is consistent.
    let findings = strings(
        client,
        "SELECT format('%s %s %s %s', schema_name, check_name, object, detail)
           FROM tenant.check_integrity() WHERE severity <> 'INFO'",
    );
    assert!(findings.is_empty(), "integrity findings after the upgrade: {findings:#?}");
}

#[test]
fn upgrade_from_0_1_0_equals_a_fresh_install_and_keeps_everything_working() {
    let old_bin = required_env("TC_TEST_OLD_PG_BIN");
    let new_bin = required_env("TC_TEST_PG_BIN");
    let mut cluster = Cluster::init("upgrade", &old_bin);

    cluster.start(&old_bin);
    cluster.connect("postgres").batch_execute("CREATE DATABASE upgraded").unwrap();
    let mut client = cluster.connect("upgraded");
    populate_with_old_release(&mut client);
    assert_eq!(
        one::<String>(&mut client, "SELECT extversion FROM pg_extension WHERE extname = 'tenant_control'"),
        OLD_VERSION
    );
    let history_before = history_rows(&mut client);
    drop(client);
    cluster.stop();

    // The new package: the same data directory started with the normal install.
    cluster.start(&new_bin);
    let mut client = cluster.connect("upgraded");
    let new_version: String =
        one(&mut client, "SELECT default_version FROM pg_available_extensions WHERE name = 'tenant_control'");
    assert_ne!(new_version, OLD_VERSION);
    client.batch_execute("ALTER EXTENSION tenant_control UPDATE").unwrap();
    assert_eq!(
        one::<String>(&mut client, "SELECT extversion FROM pg_extension WHERE extname = 'tenant_control'"),
        new_version
    );

    assert_same_as_fresh_install(&cluster, &new_bin);
    assert_history_kept(&mut client, &history_before);
    assert_old_tenants_work(&mut client, &cluster);
    drop(client);
    cluster.stop();
}

//! The privilege boundary of the catalog readers and of migrations, over real
//! connections: a LOGIN role that is a member of a tenant's role plants
//! operators, functions and a trigger that would leave a mark only a
//! superuser can leave (making the attacker a superuser); a superuser and a
//! non-superuser member of tenant_control_admin then run the integrity check,
//! health, statistics, usage snapshots, optimize, copies, migrations (one
//! tenant and the fleet) on that tenant. The marks must never appear; the
//! payloads that do run must run as the tenant's role.

mod common;
use common::*;
use postgres::Client;

const DB: &str = "it_privilege_catalog";

/// What every payload calls: it records who ran it and, run by a superuser,
/// makes the attacker one.
const MARK: &str = r#"
CREATE FUNCTION {s}.mark(what text) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    -- Sequences ignore rollbacks: a payload that ran inside a subtransaction
    -- the extension rolled back still counts.
    PERFORM pg_catalog.nextval('public.payload_runs');
    IF (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) current_user) THEN
        PERFORM pg_catalog.nextval('public.superuser_runs');
        EXECUTE 'ALTER ROLE {attacker} SUPERUSER';
    END IF;
    INSERT INTO public.marks (who, what) VALUES (current_user, what);
    RETURN true;
END $$;
"#;

/// Operators and functions that match the extension's catalog queries
/// better than pg_catalog's own (or tie with them), and a trigger on a table
/// the template gives the tenant.
const TRAPS: &str = r#"
DO $do$ DECLARE t text; BEGIN
    FOREACH t IN ARRAY ARRAY['regclass', 'regnamespace', 'regrole', 'regprocedure', 'regtype'] LOOP
        EXECUTE pg_catalog.format('CREATE FUNCTION {s}.eq_oid_%1$s(oid, %1$s) RETURNS boolean LANGUAGE plpgsql AS
            $f$ BEGIN RETURN {s}.mark(%2$L) AND $1 OPERATOR(pg_catalog.=) $2::oid; END $f$', t, '= (oid, ' || t || ')');
        EXECUTE pg_catalog.format('CREATE OPERATOR {s}.= (LEFTARG = oid, RIGHTARG = %1$s, FUNCTION = {s}.eq_oid_%1$s)', t);
    END LOOP;
END $do$;
CREATE FUNCTION {s}.eq_oid_int(oid, integer) RETURNS boolean LANGUAGE plpgsql AS
    $$ BEGIN RETURN {s}.mark('= (oid, integer)') AND $1 OPERATOR(pg_catalog.=) $2::oid; END $$;
CREATE FUNCTION {s}.ne_oid_int(oid, integer) RETURNS boolean LANGUAGE plpgsql AS
    $$ BEGIN RETURN {s}.mark('<> (oid, integer)') AND $1 OPERATOR(pg_catalog.<>) $2::oid; END $$;
CREATE FUNCTION {s}.eq_name_text(name, text) RETURNS boolean LANGUAGE plpgsql AS
    $$ BEGIN RETURN {s}.mark('= (name, text)') AND $1::text OPERATOR(pg_catalog.=) $2; END $$;
CREATE FUNCTION {s}.eq_text_name(text, name) RETURNS boolean LANGUAGE plpgsql AS
    $$ BEGIN RETURN {s}.mark('= (text, name)') AND $1 OPERATOR(pg_catalog.=) $2::text; END $$;
CREATE FUNCTION {s}.cat_text_name(text, name) RETURNS text LANGUAGE plpgsql AS
    $$ BEGIN PERFORM {s}.mark('|| (text, name)'); RETURN $1 OPERATOR(pg_catalog.||) $2::text; END $$;
CREATE OPERATOR {s}.= (LEFTARG = oid, RIGHTARG = integer, FUNCTION = {s}.eq_oid_int);
CREATE OPERATOR {s}.<> (LEFTARG = oid, RIGHTARG = integer, FUNCTION = {s}.ne_oid_int);
CREATE OPERATOR {s}.= (LEFTARG = name, RIGHTARG = text, FUNCTION = {s}.eq_name_text);
CREATE OPERATOR {s}.= (LEFTARG = text, RIGHTARG = name, FUNCTION = {s}.eq_text_name);
CREATE OPERATOR {s}.|| (LEFTARG = text, RIGHTARG = name, FUNCTION = {s}.cat_text_name);
CREATE FUNCTION {s}.lower(character varying) RETURNS text LANGUAGE plpgsql IMMUTABLE AS
    $$ BEGIN PERFORM {s}.mark('lower(varchar)'); RETURN pg_catalog.lower($1::text); END $$;
CREATE FUNCTION {s}.lower(text) RETURNS text LANGUAGE plpgsql AS
    $$ BEGIN PERFORM {s}.mark('lower(text)'); RETURN pg_catalog.lower($1); END $$;
CREATE FUNCTION {s}.now() RETURNS timestamptz LANGUAGE plpgsql AS
    $$ BEGIN PERFORM {s}.mark('now()'); RETURN pg_catalog.now(); END $$;
CREATE FUNCTION {s}.format(text, text, name) RETURNS text LANGUAGE plpgsql AS
    $$ BEGIN PERFORM {s}.mark('format(text, text, name)'); RETURN pg_catalog.format($1, $2, $3); END $$;
CREATE FUNCTION {s}.on_items() RETURNS trigger LANGUAGE plpgsql AS
    $$ BEGIN PERFORM {s}.mark('trigger on items'); RETURN NEW; END $$;
CREATE TRIGGER on_items BEFORE INSERT OR UPDATE ON {s}.items FOR EACH ROW EXECUTE FUNCTION {s}.on_items();
"#;

/// Roles outlive the databases of earlier runs: a tenant role left by one
/// (it owns nothing any more) is dropped before the tenant is created again.
fn create_fresh(su: &mut Client, schema: &str) -> uuid::Uuid {
    su.batch_execute(&format!("DROP ROLE IF EXISTS {schema}_owner")).unwrap();
    create_ok(su, schema)
}

struct Setup {
    su: Client,
    admin: Client,
    tenant: uuid::Uuid,
    schema: &'static str,
    attacker: &'static str,
}

fn ensure_login_role(su: &mut Client, role: &str) {
    su.batch_execute(&format!(
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN CREATE ROLE {role} LOGIN; END IF; END $$;
         ALTER ROLE {role} NOSUPERUSER"
    ))
    .unwrap();
}

/// A template with a table owned by the installing superuser (as the README
/// builds it), a tenant, its attacker (a LOGIN member of the tenant's role)
/// with the traps planted as the tenant's role, and a platform administrator.
fn setup(schema: &'static str, attacker: &'static str, admin: &str) -> Setup {
    let mut su = fresh_database(DB);
    ensure_login_role(&mut su, attacker);
    ensure_login_role(&mut su, admin);
    su.batch_execute(&format!(
        "GRANT tenant_control_admin TO {admin};
         CREATE TABLE public.marks (who text, what text);
         GRANT INSERT, SELECT ON public.marks TO PUBLIC;
         CREATE SEQUENCE public.payload_runs; GRANT USAGE ON SEQUENCE public.payload_runs TO PUBLIC;
         CREATE SEQUENCE public.superuser_runs;
         CREATE TABLE tenant_template.items (id int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, code varchar(20) NOT NULL, label text);"
    ))
    .unwrap();
    let tenant = create_fresh(&mut su, schema);
    su.batch_execute(&format!("GRANT {schema}_owner TO {attacker}; INSERT INTO {schema}.items VALUES (1, 'ABC', 'x')"))
        .unwrap();
    let mut planter = connect_as(attacker, DB);
    planter
        .batch_execute(&format!(
            "SET ROLE {schema}_owner; {}{}",
            MARK.replace("{s}", schema).replace("{attacker}", attacker),
            TRAPS.replace("{s}", schema)
        ))
        .unwrap();
    // The traps work: a query with the schema on its search_path picks them.
    planter
        .batch_execute(&format!(
            "SET search_path = {schema}; SELECT count(*) FROM (VALUES (1259::oid)) AS v(o) WHERE v.o = 'pg_catalog.pg_class'::regclass"
        ))
        .unwrap();
    assert_eq!(marks(&mut su), vec![format!("{schema}_owner: = (oid, regclass)")]);
    assert_eq!(runs(&mut su, "payload_runs"), 1);
    su.batch_execute("DELETE FROM public.marks; ALTER SEQUENCE public.payload_runs RESTART").unwrap();
    Setup { su, admin: connect_as(admin, DB), tenant, schema, attacker }
}

fn marks(client: &mut Client) -> Vec<String> {
    client
        .query("SELECT who || ': ' || what FROM public.marks ORDER BY 1", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// How often a payload ran (as anyone, or as a superuser), rollbacks included.
fn runs(client: &mut Client, sequence: &str) -> i64 {
    count(client, &format!("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM public.{sequence}"))
}

fn assert_unharmed(s: &mut Setup) {
    assert_eq!(runs(&mut s.su, "superuser_runs"), 0, "a payload ran as a superuser");
    let superuser: bool =
        s.su.query_one("SELECT rolsuper FROM pg_roles WHERE rolname = $1", &[&s.attacker]).unwrap().get(0);
    assert!(!superuser, "the attacker became a superuser");
    let by_others: Vec<String> =
        marks(&mut s.su).into_iter().filter(|m| !m.starts_with(&format!("{}_owner:", s.schema))).collect();
    assert_eq!(by_others, Vec::<String>::new(), "tenant code ran as another role");
}

/// Everything that reads the tenant's catalog or walks its tables, as `who`.
fn run_readers(client: &mut Client, tenant: uuid::Uuid, schema: &str) {
    for sql in [
        "SELECT count(*) FROM tenant.check_integrity($1, false)",
        "SELECT count(*) FROM tenant.check_integrity($1, true)",
        "SELECT count(*) FROM tenant.institution_health($1)",
        "SELECT count(*) FROM tenant.health_checks($1)",
        "SELECT count(*) FROM tenant.optimize_institution_schema($1)",
    ] {
        client.query(sql, &[&tenant]).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    for sql in [
        "SELECT count(*) FROM tenant.check_integrity(NULL, false)",
        "SELECT count(*) FROM tenant.fleet_health",
        "SELECT count(*) FROM tenant.table_stats",
        "SELECT count(*) FROM tenant.tenant_stats",
        "SELECT count(*) FROM tenant.record_usage_snapshot()",
    ] {
        client.query(sql, &[]).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    client.batch_execute("CALL tenant.run_integrity_check()").unwrap();
    client.batch_execute("CALL tenant.take_usage_snapshot()").unwrap();
    client.batch_execute("CALL tenant.run_maintenance()").unwrap();
    let _ = schema;
}

#[test]
fn catalog_readers_never_run_a_tenants_operators_or_functions() {
    let mut s = setup("pc_reader", "pc_reader_attacker", "pc_reader_admin");
    let (tenant, schema) = (s.tenant, s.schema);
    run_readers(&mut s.su, tenant, schema);
    run_readers(&mut s.admin, tenant, schema);
    // A copy of the template and a spare from the warm pool.
    create_fresh(&mut s.su, "pc_reader_new");
    s.su.batch_execute("CALL tenant.fill_pool(1)").unwrap();
    s.su.batch_execute("DROP ROLE IF EXISTS pc_reader_claimed_owner").unwrap();
    create_ok(&mut s.admin, "pc_reader_claimed");
    assert_eq!(runs(&mut s.su, "payload_runs"), 0, "no payload may run at all while the catalog is read");
    assert_eq!(marks(&mut s.su), Vec::<String>::new());
    assert_unharmed(&mut s);
    // The check reports what the attacker planted.
    let extra: Vec<String> = s
        .su
        .query("SELECT object FROM tenant.check_integrity($1) WHERE check_name = 'extra_object' ORDER BY 1", &[&tenant])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for object in ["operator =(oid, regclass)", "function now()", "trigger items.on_items", "function lower(text)"] {
        assert!(extra.iter().any(|e| e == object), "{object} not reported: {extra:?}");
    }
}

fn register(client: &mut Client, version: i32, script: &str) -> Outcome {
    outcome(client.query_one("SELECT * FROM tenant.register_migration($1, $2, 'test')", &[&version, &script]).unwrap())
}

/// The default of a column as PostgreSQL prints it with only pg_catalog
/// visible: a function of the tenant's schema shows qualified.
fn default_of(client: &mut Client, schema: &str, table: &str, column: &str) -> String {
    client.batch_execute("SET search_path = pg_catalog").unwrap();
    let row = client
        .query_one(
            "SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d
               JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
              WHERE d.adrelid = format('%I.%I', $1::text, $2::text)::regclass AND a.attname = $3",
            &[&schema, &table, &column],
        )
        .unwrap();
    client.batch_execute("RESET search_path").unwrap();
    row.get(0)
}

#[test]
fn migrations_run_tenant_code_as_the_tenant_only() {
    let mut s = setup("pc_migrated", "pc_migrated_attacker", "pc_migrated_admin");
    let (tenant, schema) = (s.tenant, s.schema);
    // What migrations did before: add a column with a default, change data
    // with built-ins a tenant shadows, index, function, view, grants.
    let script = "ALTER TABLE items ADD COLUMN seen timestamptz NOT NULL DEFAULT now();
                  UPDATE items SET code = lower(code), label = lower(label);
                  CREATE INDEX items_code ON items (code);
                  CREATE FUNCTION item_count() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM items';
                  CREATE VIEW item_codes AS SELECT code FROM items;
                  GRANT SELECT ON item_codes TO tenant_control_admin;
                  CREATE TABLE who_ran (who text DEFAULT current_user); INSERT INTO who_ran DEFAULT VALUES;";
    let registered = register(&mut s.su, 1, script);
    assert!(registered.ok(), "{}", registered.message);
    let migrated = call(&mut s.admin, "migrate_institution_schema", tenant);
    assert!(migrated.ok(), "{}", migrated.message);

    assert_unharmed(&mut s);
    // The tenant's trigger and its better-matching lower(varchar) ran, as the tenant.
    let seen = marks(&mut s.su);
    assert!(seen.contains(&format!("{schema}_owner: trigger on items")), "{seen:?}");
    assert!(seen.contains(&format!("{schema}_owner: lower(varchar)")), "{seen:?}");
    // pg_catalog comes first: same-signature shadows of built-ins lose, and
    // the new column's default is bound to pg_catalog.now() for good.
    assert!(!seen.iter().any(|m| m.ends_with(": now()") || m.ends_with(": lower(text)")), "{seen:?}");
    assert_eq!(default_of(&mut s.su, schema, "items", "seen"), "now()");
    let who: String = s.su.query_one(&format!("SELECT who FROM {schema}.who_ran"), &[]).unwrap().get(0);
    assert_eq!(who, format!("{schema}_owner"));
    let who: String = s.su.query_one("SELECT who FROM tenant_template.who_ran", &[]).unwrap().get(0);
    assert_eq!(who, "tenant_template_owner", "the template's migration runs as tenant_template_owner");
    // Ownership lent for the migration went back; what it created is owned as
    // if the superuser had run it (as before migrations ran as the tenant), with
    // the template's privileges for the tenant's role.
    let owners: Vec<(String, String)> =
        s.su.query(
            "SELECT c.relname::text, pg_get_userbyid(c.relowner)::text FROM pg_class c
              WHERE c.relnamespace = $1::text::regnamespace AND c.relkind IN ('r', 'v') ORDER BY 1",
            &[&schema],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let tenant_role = format!("{schema}_owner");
    assert_eq!(
        owners,
        vec![
            ("item_codes".to_string(), "postgres".to_string()),
            ("items".to_string(), "postgres".to_string()),
            ("who_ran".to_string(), "postgres".to_string())
        ]
    );
    for table in ["item_codes", "who_ran"] {
        let allowed: bool =
            s.su.query_one(
                "SELECT has_table_privilege($1::text, $2::text, 'SELECT')",
                &[&tenant_role, &format!("{schema}.{table}")],
            )
            .unwrap()
            .get(0);
        assert!(allowed, "{tenant_role} cannot read {table}");
    }
    assert!(s
        .su
        .query_one(
            "SELECT has_table_privilege('tenant_control_admin', $1::text, 'SELECT')",
            &[&format!("{schema}.item_codes")]
        )
        .unwrap()
        .get::<_, bool>(0));
    // The tenant matches the template.
    let drift = count(
        &mut s.su,
        &format!(
            "SELECT count(*) FROM tenant.check_integrity('{tenant}')
              WHERE check_name IN ('missing_object', 'changed_object', 'schema_privileges', 'row_level_security')"
        ),
    );
    assert_eq!(drift, 0);

    // An index whose expression would call the tenant's better-matching
    // lower(varchar) from then on (as whoever writes the table, and as the
    // table's owner, the superuser, when ANALYZE or REINDEX runs) is refused
    // for that tenant; the template, which has no such function, takes it.
    assert!(register(&mut s.su, 2, "CREATE INDEX items_lower ON items (lower(code))").ok());
    let refused = call(&mut s.admin, "migrate_institution_schema", tenant);
    assert_eq!(refused.sqlstate.as_deref(), Some("42501"), "{}", refused.message);
    assert!(
        refused.message.contains("would bind the template's objects to the tenant's own code"),
        "{}",
        refused.message
    );
    let version: i32 =
        s.su.query_one("SELECT version FROM tenant.tenant_schemas WHERE id = $1", &[&tenant]).unwrap().get(0);
    assert_eq!(version, 1);
    assert_eq!(count(&mut s.su, &format!("SELECT count(*) FROM pg_class WHERE relname = 'items_lower' AND relnamespace = '{schema}'::regnamespace")), 0);
    assert_unharmed(&mut s);
}

#[test]
fn a_suspended_tenant_is_migrated_and_stays_locked_out() {
    let mut su = fresh_database(DB);
    su.batch_execute("CREATE TABLE tenant_template.items (id int PRIMARY KEY)").unwrap();
    let tenant = create_fresh(&mut su, "pc_suspended");
    assert!(call(&mut su, "suspend_institution", tenant).ok());
    assert!(register(&mut su, 1, "ALTER TABLE items ADD COLUMN note text; CREATE TABLE extra (id int)").ok());
    su.batch_execute("CALL tenant.apply_migrations()").unwrap();
    let version: i32 =
        su.query_one("SELECT version FROM tenant.tenant_schemas WHERE id = $1", &[&tenant]).unwrap().get(0);
    assert_eq!(version, 1);
    let usage: bool =
        su.query_one("SELECT has_schema_privilege('pc_suspended_owner', 'pc_suspended', 'USAGE')", &[]).unwrap().get(0);
    assert!(!usage, "the USAGE lent for the migration was taken back");
    assert_eq!(count(&mut su, "SELECT count(*) FROM pc_suspended.extra"), 0);
}

#[test]
fn bad_migrations_are_refused_when_registered_and_leave_nothing() {
    let mut su = fresh_database(DB);
    su.batch_execute(
        "CREATE TABLE tenant_template.items (id int PRIMARY KEY);
         CREATE SCHEMA pc_open; GRANT USAGE, CREATE ON SCHEMA pc_open TO PUBLIC;",
    )
    .unwrap();
    let cases = [
        ("CREATE TABLE a (id int); COMMIT", "2D000", "transaction control"),
        ("CREATE TABLE a (id int); ROLLBACK", "2D000", "transaction control"),
        ("CREATE TABLE public.a (id int)", "42501", "permission denied"),
        ("ALTER TABLE tenant.tenant_schemas ADD COLUMN x int", "42501", ""),
        ("CREATE TABLE a (id int); CREATE TABLE pc_open.a (id int)", "42501", "table pc_open.a"),
        ("ALTER ROLE CURRENT_USER SET work_mem = '8MB'", "42501", "settings of role"),
        ("ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC", "42501", "default privileges"),
    ];
    for (script, sqlstate, message) in cases {
        let refused = register(&mut su, 1, script);
        assert_eq!(
            (refused.status.as_str(), refused.sqlstate.as_deref()),
            ("ERROR", Some(sqlstate)),
            "{script}: {}",
            refused.message
        );
        assert!(refused.message.contains(message), "{script}: {}", refused.message);
    }
    assert_eq!(count(&mut su, "SELECT count(*) FROM tenant.migrations"), 0);
    assert_eq!(count(&mut su, "SELECT count(*) FROM pg_class WHERE relname = 'a'"), 0);
    assert_eq!(
        count(&mut su, "SELECT count(*) FROM pg_db_role_setting WHERE setrole = 'tenant_template_owner'::regrole"),
        0
    );
    assert_eq!(
        count(&mut su, "SELECT count(*) FROM pg_default_acl WHERE defaclrole = 'tenant_template_owner'::regrole"),
        0
    );
    // The template's own objects stay the installing superuser's.
    assert_eq!(count(&mut su, "SELECT count(*) FROM pg_class WHERE oid = 'tenant_template.items'::regclass AND relowner = 'postgres'::regrole"), 1);
    assert!(register(&mut su, 1, "ALTER TABLE items ADD COLUMN note text").ok());
}
